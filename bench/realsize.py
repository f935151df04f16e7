"""Same-size rehearsal of the real run on this machine: Qwen2.5-Coder-1.5B-Instruct, DeepSeek-R1-Distill-Qwen-1.5B's
architecture and size (28 blocks, hidden 1536, 12 heads, 2 KV heads, FFN 8960), built from its hash-pinned PyPI wheels
(``coalqa.offline.prepare_standin``). Long (an hour or more on 2 CPU cores) and heavy (up to ~12 GB RAM): not a test.

Stages, each in a child process of its own so that each peak RSS is its own (``os.wait4``'s ``ru_maxrss``):

1. ``build``: fetch the 22 wheels (~1.1 GB), join and check the GGUF, convert once to a bfloat16 folder;
2. ``load_4bit``: ``coalqa.modeling.load_model(load_in_4bit=True)``: NF4, double quantisation, compute dtype ``auto``;
3. ``train``: ``coalqa train`` with the seed recipe (``configs/deepseek-r1-distill-qwen-1.5b.yaml``: QLoRA r=64,
   α=16, dropout 0.1, the seven projections, gradient checkpointing) at batch 4 × ``--max_length`` 512,
   ``--steps`` optimizer steps of one micro-batch each (no accumulation), on clause-generator QA pairs of the real
   corpus: seconds per step (between logged steps in ``train_log.jsonl``, so the first, warm-up step is not timed),
   tokens per step, and what the seed's 6 epochs would take at that speed;
4. ``export``: ``coalqa export --format gguf`` of that adapter (merge in float32 + check + llama.cpp's converter):
   time and file sizes;
5. ``answer``: ``coalqa eval --no-adapter --index`` of the base on the eval set (grounded, greedy, ``--context_k``
   clauses, ``--max_new_tokens``): key-fact recall, unsupported-number rate, seconds per question.

    nice -n 10 python bench/realsize.py [--stages build,load_4bit,train,export,answer] [--work runs/realsize]

Prints one line per stage and a Markdown table at the end; writes ``<work>/realsize.json``. The machine, load average
and compute dtype are printed with the figures (a shared machine makes every time an upper bound).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STANDIN = "qwen2.5-coder-1.5b-instruct"
SEED_PRESET = REPO / "configs" / "deepseek-r1-distill-qwen-1.5b.yaml"
STAGES = ("build", "load_4bit", "train", "export", "answer")


def child(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (output to ``log``); returns seconds, peak RSS in GB (the child and the children it waited for).

    Raises:
        SystemExit: the command failed (the log's tail is printed).
    """
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd[:4])} … failed (exit {code}); see {log}:\n{tail}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2)}


def folder_gb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e9, 2)


def qa_pairs(work: Path, docs: Path) -> tuple[Path, Path]:
    """Chunks (300 characters, the demo's size) and clause-generator QA pairs of the real corpus, built once."""
    chunks, qa = work / "chunks.jsonl", work / "QAdata_clause.json"
    cli = [sys.executable, "-m", "coalqa.cli"]
    if not chunks.is_file():
        child([*cli, "corpus", str(docs), "-o", str(chunks), "--max_chars", "300"], work / "corpus.log")
    if not qa.is_file():
        child([*cli, "generate", str(chunks), "-o", str(qa), "--provider", "clause"], work / "generate.log")
    return chunks, qa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "realsize", help="working folder (reused)")
    parser.add_argument("--docs", type=Path, default=SHARED / "corpus" / "coal-safety", help="regulations")
    parser.add_argument("--references", type=Path, default=SHARED / "eval" / "dev.jsonl", help="eval set")
    parser.add_argument("--steps", type=int, default=2, help="QLoRA optimizer steps (batch 4, no accumulation)")
    parser.add_argument("--max_length", type=int, default=512, help="tokens per training example")
    parser.add_argument("--questions", type=int, default=30, help="eval questions answered grounded")
    parser.add_argument("--context_k", type=int, default=1, help="clauses per grounded prompt")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="tokens per answer")
    args = parser.parse_args()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if args.steps < 2:
        parser.error("--steps must be at least 2 (seconds per step are timed between logged steps)")
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    from coalqa.hardware import choose_dtype
    from coalqa.offline import STANDINS, cache_dir

    spec = STANDINS[STANDIN]
    folder = cache_dir() / spec.folder
    dtype = choose_dtype("auto")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; compute dtype auto → "
          f"{dtype.name} ({dtype.reason}); load average {os.getloadavg()[0]:.2f}", flush=True)
    results_path = work / "realsize.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    py, cli = sys.executable, [sys.executable, "-m", "coalqa.cli"]

    def done(stage: str, figures: dict) -> None:
        figures["load_average"] = round(os.getloadavg()[0], 2)
        results[stage] = figures
        results_path.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
        print(f"{stage}: {json.dumps(figures, ensure_ascii=False)}", flush=True)

    if "build" in stages:
        r = child([py, "-c", f"from coalqa.offline import prepare_standin; prepare_standin({STANDIN!r})"], work / "build.log")
        done("build", r | {"folder": str(folder), "folder_gb": folder_gb(folder), "gguf_bytes": spec.gguf_size})
    if "load_4bit" in stages:
        code = (f"import time; t = time.monotonic(); from coalqa.modeling import load_base_model as load_model; "
                f"m = load_model({str(folder)!r}, load_in_4bit=True); "
                f"print('memory_footprint_gb', m.get_memory_footprint() / 1e9, 'seconds', time.monotonic() - t)")
        r = child([py, "-c", code], work / "load_4bit.log")
        line = [ln for ln in (work / "load_4bit.log").read_text(encoding="utf-8").splitlines() if ln.startswith("memory_footprint_gb")]
        done("load_4bit", r | ({"model_footprint_gb": round(float(line[-1].split()[1]), 2)} if line else {}))
    run_dir = work / "train" / "realsize"
    if "train" in stages:
        _, qa = qa_pairs(work, args.docs)
        pairs = len(json.loads(qa.read_text(encoding="utf-8")))
        r = child([*cli, "train", "--config", str(SEED_PRESET), "--model_name_or_path", str(folder), "--data", str(qa),
                   "--output_dir", str(run_dir.parent), "--run_name", run_dir.name, "--max_steps", str(args.steps),
                   "--max_length", str(args.max_length), "--gradient_accumulation_steps", "1", "--val_ratio", "0",
                   "--logging_steps", "1", "--save_steps", "100000", "--eval_steps", "100000"], work / "train.log")
        log = [json.loads(ln) for ln in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
        steps = [e for e in log if "loss" in e]
        times = [b["time"] - a["time"] for a, b in itertools.pairwise(steps)]  # the first step (warm-up) is not timed
        per_step = sum(times) / len(times) if times else float("nan")
        tokens = steps[-1].get("num_tokens", float("nan")) / len(steps)
        seed_steps = 6 * math.ceil(pairs / 16)  # seed: 6 epochs, batch 4 × accumulation 4
        done("train", r | {"steps": len(steps), "s_per_step_batch4": round(per_step, 1), "tokens_per_step": round(tokens),
                           "pairs": pairs, "seed_optimizer_steps": seed_steps,
                           "seed_6_epochs_hours": round(seed_steps * 4 * per_step / 3600, 1), "losses": [e["loss"] for e in steps]})
    if "export" in stages:
        out = work / "export"
        r = child([*cli, "export", "--peft_model", str(run_dir), "--output_dir", str(out), "--overwrite", "--format", "gguf"],
                  work / "export.log")
        ggufs = sorted(out.rglob("*.gguf"))
        done("export", r | {"output_gb": folder_gb(out), "gguf": {g.name: round(g.stat().st_size / 1e9, 2) for g in ggufs}})
    if "answer" in stages:
        chunks, _ = qa_pairs(work, args.docs)
        index = work / "index"
        if not (index / "index.json").is_file():
            child([*cli, "index", str(chunks), "-o", str(index)], work / "index.log")
        stem = work / "eval-base-grounded"
        r = child([*cli, "eval", "-r", str(args.references), "--no-adapter", "--model_name_or_path", str(folder),
                   "--index", str(index), "--context_k", str(args.context_k), "--temperature", "0",
                   "--max_new_tokens", str(args.max_new_tokens), "--limit", str(args.questions), "-o", str(stem)],
                  work / "answer.log")
        overall = json.loads(Path(f"{stem}.json").read_text(encoding="utf-8"))["overall"]
        done("answer", r | {"questions": args.questions, "s_per_question": round(r["seconds"] / args.questions, 1),
                            "overall": overall})

    print("\n| stage | time | peak RSS | figures |\n|---|---:|---:|---|")
    for stage in STAGES:
        if stage in results:
            f = dict(results[stage])
            print(f"| {stage} | {f.pop('seconds'):.0f} s | {f.pop('peak_rss_gb'):.1f} GB | "
                  f"{', '.join(f'{k} {v}' for k, v in f.items() if k != 'losses')} |")
    print(f"\n(written to {results_path}; the machine may be shared: times are upper bounds)")


if __name__ == "__main__":
    main()
