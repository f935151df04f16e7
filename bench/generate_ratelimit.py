"""Benchmark: ``coalqa generate`` against a provider that allows R requests per second and answers 429 above it.

Usage: ``python bench/generate_ratelimit.py [--rate 20] [--chunks 400] [--latency 0.2] [--concurrency 16]``.
The local server of ``tests/llm_server.py`` accepts at most ``--rate`` requests in any sliding second and
answers the rest at once with 429 + ``Retry-After``/``retry-after-ms`` (Zhipu's code 1302, "concurrency too
high"); accepted requests take ``--latency`` seconds (sleeping, so neither side is CPU-bound on a shared
machine). ``--concurrency`` is far above what the limit allows (16 × 5 req/s each = 80 req/s offered at 0.2 s):
the adaptive limit (AIMD on requests in flight) must find the level itself. Goal: throughput ≥ 0.9·R with
0 failed chunks. Chunks are real corpus chunks (``../shared/corpus/coal-safety`` through ``coalqa.corpus``).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from llm_server import LLMServer
from rich.console import Console

from coalqa.corpus import load_documents, split_into_chunks
from coalqa.generate import GenerateConfig, run_generate
from coalqa.llm import make_chat_client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second the server accepts")
    ap.add_argument("--chunks", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety")
    args = ap.parse_args()
    docs, _ = load_documents([args.corpus])
    chunks = [asdict(c) for d in docs for c in split_into_chunks(d, max_chars=300)][: args.chunks]
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-real-key"
    with LLMServer(latency=args.latency, rate_limit=args.rate) as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = GenerateConfig(provider="openai", model="bench", base_url=srv.url, concurrency=args.concurrency)
        chat = make_chat_client("openai", "bench", srv.url, cfg.timeout, cfg.max_retries, retry_wait=cfg.retry_wait,
                                max_concurrency=cfg.concurrency)
        t0 = time.perf_counter()
        summary = run_generate(chunks, Path(tmp) / "QAdata_all.json", cfg, chat=chat, console=Console(file=io.StringIO()))
        secs = time.perf_counter() - t0
        ok = [r["time"] for r in srv.requests if not r["fault"]]
        span = max(ok) - min(ok) + args.latency  # first accepted request sent → last one answered
    done, failed = summary["chunks"]["done"], summary["chunks"]["failed"]
    rate = done / secs
    limit = chat.limit  # type: ignore[attr-defined]
    print(f"server limit R = {args.rate:g} requests/s, latency {args.latency * 1000:.0f} ms, --concurrency {args.concurrency}")
    print(f"{done} chunks done, {failed} failed, in {secs:.2f} s → {rate:.2f} chunks/s = {rate / args.rate:.3f}·R "
          f"(goal ≥ 0.9·R with 0 failed)")
    print(f"server side: {len(ok)} accepted requests from the first sent to the last answered in {span:.2f} s → "
          f"{len(ok) / span:.2f} requests/s = {len(ok) / span / args.rate:.3f}·R; the rest of the "
          f"{secs:.2f} s is start-up and writing the dataset")
    print(f"429 replies: {srv.limited} ({srv.limited / max(1, srv.accepted + srv.limited):.1%} of requests); "
          f"limit on requests in flight: cut {limit.cuts}×, lowest {limit.lowest:.2f}, final {limit.limit:.2f} "
          f"(R × latency = {args.rate * args.latency:.1f} in flight would just fill the limit)")


if __name__ == "__main__":
    main()
