"""Benchmark: pairs/s of ``coalqa generate`` at concurrency 1 and 8 against a 200 ms local LLM server.

Usage: ``python bench/generate_concurrency.py [--chunks 32] [--latency 0.2]``. Uses chunks of the real
corpus (``../shared/corpus/coal-safety`` through ``coalqa.corpus``), the ``openai`` provider with a fake
key, and the scripted server of ``tests/llm_server.py`` (three pairs per chunk). Goal: ratio ≥ 7×.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety")
    args = ap.parse_args()
    docs, _ = load_documents([args.corpus])
    chunks = [asdict(c) for d in docs for c in split_into_chunks(d, max_chars=1500)][: args.chunks]
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-real-key"
    rates = {}
    with LLMServer(latency=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        for conc in (1, 8):
            cfg = GenerateConfig(provider="openai", model="bench", base_url=srv.url, concurrency=conc)
            t0 = time.perf_counter()
            summary = run_generate(chunks, Path(tmp) / f"c{conc}.json", cfg, console=Console(file=io.StringIO()))
            secs = time.perf_counter() - t0
            rates[conc] = summary["pairs"]["kept"] / secs
            print(f"concurrency {conc}: {len(chunks)} chunks, {summary['pairs']['kept']} pairs in {secs:.2f} s "
                  f"→ {rates[conc]:.1f} pairs/s")
    print(f"speed-up 8 vs 1: {rates[8] / rates[1]:.2f}× (goal ≥ 7×; server latency {args.latency * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
