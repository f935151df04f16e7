"""Benchmark: questions/s of ``coalqa ask`` answering one by one vs in batches of 8 (left padding).

Usage: ``python bench/ask_batch.py [--questions 32] [--max_new_tokens 64] [--model DIR]``. Questions are
the ``question`` fields of ``../shared/eval/dev.jsonl`` (30 items; cycled to reach ``--questions``).
Default model: the tiny Qwen2 stand-in with the rebuilt R1-Distill tokenizer (9.8M parameters, random
weights: it never emits EOS, so every answer is exactly ``--max_new_tokens`` tokens in both modes and
the comparison is like for like). Greedy decoding; a warm-up question runs first. Also reports whether
the batched answers equal the one-by-one answers. Goal: ratio ≥ 4×.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from coalqa.ask import AskConfig, answer, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--model", help="base model folder or Hub id (default: build the tiny Qwen2 stand-in)")
    ap.add_argument("--peft_model", help="adapter folder (optional)")
    ap.add_argument("--eval_file", type=Path, default=REPO.parent / "shared" / "eval" / "dev.jsonl")
    args = ap.parse_args()

    items = [json.loads(line)["question"] for line in args.eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = list(itertools.islice(itertools.cycle(items), args.questions))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None and args.peft_model is None:
            from coalqa.offline import build_tiny_qwen2

            model = str(build_tiny_qwen2(Path(tmp) / "tiny-qwen2"))
        loaded = load_model(args.peft_model, model_name_or_path=model)
        cfg = AskConfig(temperature=0, max_new_tokens=args.max_new_tokens)
        answer(loaded, questions[:1], cfg, progress=False)  # warm-up
        runs = {}
        for bs in (1, args.batch_size):
            t0 = time.perf_counter()
            results = answer(loaded, questions, cfg.model_copy(update={"batch_size": bs}), progress=False)
            seconds = time.perf_counter() - t0
            runs[bs] = (seconds, results)
            tokens = sum(r["tokens"] for r in results)
            print(f"batch_size {bs:>2}: {len(questions)} questions in {seconds:6.1f} s = {len(questions) / seconds:6.2f} q/s, "
                  f"{tokens / seconds:7.1f} generated tokens/s")
    (s1, r1), (sb, rb) = runs[1], runs[args.batch_size]
    same = sum(a["answer"] == b["answer"] and a["reasoning"] == b["reasoning"] for a, b in zip(r1, rb))
    print(f"speed-up batch {args.batch_size} vs one by one: {s1 / sb:.2f}x (goal >= 4x)")
    print(f"batched answers equal to one-by-one answers: {same}/{len(questions)}")
    print(f"model: {loaded.base} ({loaded.dtype}, device {loaded.model.device}), max_new_tokens {args.max_new_tokens}, "
          f"torch threads {__import__('torch').get_num_threads()}", file=sys.stderr)


if __name__ == "__main__":
    main()
