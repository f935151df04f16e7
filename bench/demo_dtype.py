"""Step time of the demo's training in bfloat16 and in float32 on this machine, and the dtype ``auto`` picks.

    python bench/demo_dtype.py                 # auto's pick, then bf16 and fp32 forced (COALQA_CPU_BF16=1/0)
    python bench/demo_dtype.py --emulate_avx2  # also as a CPU without bf16 instructions (ATEN_CPU_CAPABILITY=avx2,
                                               # ONEDNN_MAX_CPU_ISA=AVX2): auto, and an explicit bf16 (1 step)

Each configuration runs in its own process (the environment variables must be set before torch starts) and trains
the demo's real stand-in (SmolLM2-135M-Instruct) on the demo's real training set with the demo's settings
(``coalqa/demo/presets/standin.yaml``) for ``--steps`` optimizer steps after one warm-up step. Printed per configuration:
the dtype chosen and why, median wall seconds and CPU seconds per step, and the demo's projected training time
(its number of steps × the median). CPU seconds are printed because wall time is only meaningful on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def prepare_demo_data(work: Path) -> tuple[Path, str]:
    """The demo's training set and base model, made by the demo's own steps (cached in ``work``)."""
    from rich.console import Console

    from coalqa.demo import DemoConfig, base_model, pick_documents, step_corpus, step_generate
    from coalqa.eval import load_references
    from coalqa.eval.references import locate_sources

    cfg = DemoConfig(work_dir=work, docs=REPO.parent / "shared/corpus/coal-safety",
                     references=REPO.parent / "shared/eval/dev.jsonl")
    work.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=True)
    refs = load_references(cfg.references)
    chunks_path, chunks, _ = step_corpus(cfg, pick_documents(cfg, refs), console)
    qa, _, _, _ = step_generate(cfg, chunks, refs, locate_sources(refs, chunks), chunks_path.stem, console)
    base, _, _ = base_model(cfg, console)
    return qa, base


def worker(data: str, base: str, dtype: str, steps: int, out_dir: str) -> None:
    """Train ``steps + 1`` steps with the demo's settings; print one JSON line with the timings."""
    from transformers import TrainerCallback

    from coalqa.config import load_config
    from coalqa.demo import STANDIN_PRESET
    from coalqa.train import TrainConfig
    from coalqa.train.trainer import prepare

    cfg = load_config(TrainConfig, STANDIN_PRESET, {
        "bnb_4bit_compute_dtype": dtype, "model_name_or_path": base, "data": data, "output_dir": out_dir,
        "run_name": f"bench-{os.getpid()}", "max_steps": steps + 1, "save_steps": 10_000, "logging_steps": 1000})
    result = prepare(cfg)
    wall, cpu = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, *args, **kwargs):
            wall.append(time.perf_counter() - self.t)
            cpu.append(time.process_time() - self.c)

    result.trainer.add_callback(Timer())
    result.trainer.train()
    tokens = [len(x["input_ids"]) for x in result.data.train]
    print("RESULT " + json.dumps({
        "dtype": result.dtype.name, "reason": result.dtype.reason, "wall": wall[1:], "cpu": cpu[1:],
        "pairs": len(tokens), "mean_tokens": sum(tokens) / len(tokens),
        "demo_steps": -(-len(tokens) // cfg.per_device_train_batch_size) * int(cfg.num_train_epochs),
    }), flush=True)


def run_config(name: str, env: dict[str, str], dtype: str, steps: int, qa: Path, base: str, out: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", dtype, "--steps", str(steps), "--data", str(qa), "--base", base,
           "--out", str(out)]
    proc = subprocess.run(cmd, env=os.environ | env | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(f"{name}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
        return None
    r = json.loads(line[len("RESULT "):])
    wall, cpu = statistics.median(r["wall"]), statistics.median(r["cpu"])
    print(f"{name:<38} {r['dtype']:<9} {wall:7.2f} s/step wall {cpu:7.2f} s/step CPU   "
          f"demo training ≈ {r['demo_steps'] * wall / 60:5.1f} min ({r['demo_steps']} steps)   [{r['reason']}]", flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration (after 1 warm-up)")
    parser.add_argument("--emulate_avx2", action="store_true", help="also run as a CPU without bf16 instructions")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-demo-dtype")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.data, args.base, args.worker, args.steps, args.out)
        return

    from coalqa.hardware import choose_dtype, cpu_model

    qa, base = prepare_demo_data(args.work)
    auto = choose_dtype("auto")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; auto picks {auto.name} ({auto.reason})")
    print(f"demo training set: {qa}; base: {base}; {args.steps} timed steps each\n")
    out = args.work / "train"
    configs = [("auto (this machine)", {}, "auto", args.steps),
               ("bf16 (COALQA_CPU_BF16=1)", {"COALQA_CPU_BF16": "1"}, "auto", args.steps),
               ("fp32 (COALQA_CPU_BF16=0)", {"COALQA_CPU_BF16": "0"}, "auto", args.steps)]
    if args.emulate_avx2:
        configs += [("emulated AVX2 CPU, auto", AVX2, "auto", args.steps),
                    ("emulated AVX2 CPU, explicit bfloat16", AVX2, "bfloat16", 1)]
    for name, env, dtype, steps in configs:
        run_config(name, env, dtype, steps, qa, base, out)


if __name__ == "__main__":
    main()
