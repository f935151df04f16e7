"""Benchmark: answers/s of ``coalqa serve`` with 8 concurrent clients vs 1 client (same prompts, greedy).

Usage: ``python bench/serve_concurrency.py [--questions 64] [--clients 8] [--max_tokens 64] [--repeat 2] [--model DIR]``.
Starts a real ``coalqa serve`` process on a free loopback port and sends the ``question`` fields of
``../shared/eval/dev.jsonl`` (cycled to ``--questions``) through the official ``openai`` client: first from one
client, one request after another, then from ``--clients`` clients at once (each one request after another),
``--repeat`` times alternating (the machine may be shared: a change in its load then hits both sides alike).
Default model: the tiny Qwen2 stand-in with the rebuilt R1-Distill tokenizer (random weights: in float32 it never
writes EOS, so every answer is ``--max_tokens`` tokens; in bfloat16 some stop earlier, the same questions in both
runs, so the comparison stays like for like; generated tokens/s is printed too), in the dtype
``auto`` picks (:mod:`coalqa.hardware`; ``COALQA_CPU_BF16=0`` forces float32), served with ``--batch_size`` =
``--clients``. A warm-up request runs first. Also reports whether the answers of both runs
are equal. Goal: ratio ≥ 3×.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max_tokens", type=int, default=64)
    ap.add_argument("--model", help="base model folder (default: build the tiny Qwen2 stand-in)")
    ap.add_argument("--peft_model", help="adapter folder (optional)")
    ap.add_argument("--eval_file", type=Path, default=REPO.parent / "shared" / "eval" / "dev.jsonl")
    args = ap.parse_args()

    import httpx
    import openai

    items = [json.loads(line)["question"] for line in args.eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = list(itertools.islice(itertools.cycle(items), args.questions))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None and args.peft_model is None:
            from coalqa.offline import build_tiny_qwen2

            model = str(build_tiny_qwen2(Path(tmp) / "tiny-qwen2"))
        port = free_port()
        cmd = [sys.executable, "-m", "coalqa.cli", "serve", "--port", str(port), "--batch_size", str(args.clients),
               "--max_new_tokens", str(args.max_tokens)]
        cmd += ["--peft_model", args.peft_model] if args.peft_model else ["--no-adapter"]
        cmd += ["--model_name_or_path", model] if model else []
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 -- the server's log for as long as it runs
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("coalqa serve did not start:\n" + (Path(tmp) / "serve.log").read_text(errors="replace"))
                time.sleep(0.5)
            client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)

            def one(q: str) -> tuple[str, int]:
                r = client.chat.completions.create(model="coalqa", messages=[{"role": "user", "content": q}],
                                                   temperature=0, max_tokens=args.max_tokens)
                m = r.choices[0].message
                return (m.model_extra or {}).get("reasoning_content", "") + "|" + (m.content or ""), r.usage.completion_tokens

            one(questions[0])  # warm-up
            runs: dict[int, list] = {1: [], args.clients: []}
            for _ in range(args.repeat):  # alternate, so a change in the machine's load hits both sides alike
                for clients in (1, args.clients):
                    share = [questions[i::clients] for i in range(clients)]
                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(clients) as pool:
                        parts = list(pool.map(lambda qs: [one(q) for q in qs], share))
                    seconds = time.perf_counter() - t0
                    answers = {q: a for qs, rs in zip(share, parts) for q, a in zip(qs, rs)}
                    runs[clients].append((seconds, answers))
                    tokens = sum(t for rs in parts for _, t in rs)
                    print(f"{clients:>2} client(s): {len(questions)} answers in {seconds:6.1f} s = "
                          f"{len(questions) / seconds:6.2f} answers/s, {tokens / seconds:7.1f} generated tokens/s")
            health = httpx.get(url + "/health").json()
        finally:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
            log_text = (Path(tmp) / "serve.log").read_text(errors="replace")
    s1, sn = sum(s for s, _ in runs[1]), sum(s for s, _ in runs[args.clients])
    a1, an = runs[1][0][1], runs[args.clients][0][1]
    same = sum(a1[q] == an[q] for q in a1)
    print(f"speed-up {args.clients} clients vs 1 (all runs): {s1 / sn:.2f}x (goal >= 3x)")
    print(f"answers equal in both runs: {same}/{len(a1)} (distinct questions)")
    print(f"server: {health['batches']} batches, largest {health['largest_batch']}, {health['completed']} answered, "
          f"max_tokens {args.max_tokens}, model {args.peft_model or model}", file=sys.stderr)
    print("server log: " + " | ".join(line for line in log_text.splitlines() if "float32" in line or "bfloat16" in line),
          file=sys.stderr)


if __name__ == "__main__":
    main()
