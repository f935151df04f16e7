"""Benchmark: how far each way of merging a QLoRA adapter lands from "4-bit base + adapter", and the GGUF in llama.cpp.

Usage: ``python bench/export_merge.py [--peft_model DIR] [--rank 64] [--steps 6]``. Without ``--peft_model`` it
trains an adapter with a real short ``coalqa train`` run on the tiny Qwen2 stand-in (NF4 base, LoRA r=``--rank`` on
the 7 projections, float32 compute). Then, on the 4 fixed check prompts of ``coalqa export`` (teacher-forced on
base + adapter's greedy tokens), it prints the max and mean |Δlogit| from base + adapter of

* ``dequantize-then-merge`` (what ``coalqa export`` does), saved as float32 and rounded to bfloat16;
* merging onto the original (unquantized) base, as LLaMA-Factory does;
* ``merge_and_unload()`` on the 4-bit model (peft re-quantizes the sum);

then runs ``coalqa export`` (all formats) and, when ``llama-cpp-python`` is installed, prints how the f16 GGUF in
llama.cpp agrees with transformers (tokenization of the prompts, greedy tokens) and both speeds on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COALQA_CPU_BF16", "0")
warnings.filterwarnings("ignore")

import torch

from coalqa.ask import load_model
from coalqa.export.merge import check_prompts, eos_ids_of, greedy_and_logits

QA = [("主要通风机多久检查一次？", "每月至少检查1次。"), ("井下爆破工作必须由谁担任？", "专职爆破工。"),
      ("矿灯应当保证最少连续正常使用多长时间？", "11h。"), ("采掘工作面的进风流中，氧气浓度不低于多少？", "20%。")]


def train(work: Path, rank: int, steps: int) -> Path:
    from typer.testing import CliRunner

    from coalqa.cli import app
    from coalqa.offline import build_tiny_qwen2

    base = build_tiny_qwen2(work / "tiny-qwen2")
    data = work / "qa.json"
    data.write_text(json.dumps([{"input": q, "output": a} for q, a in QA], ensure_ascii=False), encoding="utf-8")
    args = ["train", "--data", str(data), "--model_name_or_path", str(base), "--output_dir", str(work / "runs"),
            "--use_4bit", "true", "--bnb_4bit_compute_dtype", "float32", "--max_steps", str(steps),
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--learning_rate", "1e-2",
            "--val_ratio", "0", "--lora_rank", str(rank), "--lora_alpha", "16", "--max_length", "96"]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        sys.exit(result.output)
    return next((work / "runs").iterdir())


def diff(reference: list, logits: list) -> tuple[float, float]:
    d = [(a - b).abs() for a, b in zip(reference, logits)]
    return max(float(x.max()) for x in d), sum(float(x.sum()) for x in d) / sum(x.numel() for x in d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peft_model", type=Path, help="an adapter trained on a 4-bit base (default: train one)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens per check prompt")
    args = ap.parse_args()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.peft_model or train(Path(tmp), args.rank, args.steps)
        ref = load_model(adapter)
        if not ref.load_in_4bit:
            sys.exit(f"{adapter} was not trained on a 4-bit base")
        prompts = check_prompts(ref.tokenizer, ref.fmt)
        eos = eos_ids_of(ref.tokenizer, ref.model)
        pad = ref.tokenizer.pad_token_id
        cont, target = greedy_and_logits(ref.model, prompts, args.tokens, eos, pad)
        score = lambda m: diff(target, greedy_and_logits(m, prompts, 1, eos, pad, forced=cont)[1])
        rows = []

        base4 = ref.model.unload().dequantize(dtype=torch.float32)
        merged = PeftModel.from_pretrained(base4, str(adapter)).merge_and_unload().eval()
        rows.append(("dequantize-then-merge, float32 file (coalqa export)", *score(merged)))
        rows.append(("dequantize-then-merge, bfloat16 file", *score(merged.to(torch.bfloat16).to(torch.float32))))
        del merged, base4
        original = AutoModelForCausalLM.from_pretrained(ref.base, dtype=torch.float32)
        rows.append(("merge onto the original base (LLaMA-Factory)", *score(
            PeftModel.from_pretrained(original, str(adapter)).merge_and_unload().eval())))
        again = load_model(adapter)
        rows.append(("merge_and_unload() on the 4-bit model", *score(again.model.merge_and_unload().eval())))
        print(f"adapter {adapter} (r={json.loads((Path(adapter) / 'adapter_config.json').read_text())['r']}), "
              f"{len(prompts)} prompts × {args.tokens} tokens, float32 compute; logit std "
              f"{float(torch.cat(target).std()):.3f}")
        for name, worst, mean in rows:
            print(f"  {name:<55} max |Δlogit| {worst:9.3g}   mean {mean:9.3g}")

        from coalqa.export import ExportConfig, export_model

        t0 = time.perf_counter()
        report = export_model(adapter, Path(tmp) / "export", ExportConfig(check_tokens=args.tokens), log=lambda m: None)
        print(f"coalqa export (all formats) {time.perf_counter() - t0:.1f} s; merged check: max |Δlogit| "
              f"{report['merged']['check']['max_abs_logit_diff']:.3g}, greedy identical "
              f"{report['merged']['check']['greedy_same']}/{report['merged']['check']['prompts']}")
        run = report["gguf"]["llama_cpp_run"]
        if run is None:
            print("llama-cpp-python not installed: GGUF not run")
            return
        print(f"llama.cpp on the f16 GGUF: prompts tokenized as in training {run['tokenization_same']}/{run['prompts']}, "
              f"greedy tokens as transformers {run['greedy_same']}/{run['prompts']}, leading tokens in agreement "
              f"{[i['same_prefix_tokens'] for i in run['items']]}")
        speed(Path(report["gguf"]["path"]), Path(report["merged"]["path"]), prompts, args.tokens, eos)


def speed(gguf: Path, merged: Path, prompts: list, tokens: int, eos: list[int]) -> None:
    from llama_cpp import Llama

    from coalqa.modeling import load_base_model as load_plain

    model = load_plain(merged, compute_dtype="float32")
    t0 = time.perf_counter()
    n = sum(len(c) for c in greedy_and_logits(model, prompts, tokens, eos, eos[0])[0])
    hf = n / (time.perf_counter() - t0)
    llm = Llama(model_path=str(gguf), n_ctx=256, verbose=False)
    t0, n = time.perf_counter(), 0
    for ids in prompts:
        llm.reset()
        for i, _ in enumerate(llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0)):
            n += 1
            if i + 1 >= tokens:
                break
    print(f"greedy speed on this CPU: transformers float32 {hf:.0f} tokens/s (incl. one scoring pass), "
          f"llama.cpp f16 {n / (time.perf_counter() - t0):.0f} tokens/s")
    llm.close()


if __name__ == "__main__":
    main()
