"""``coalqa export`` on the tiny Qwen2 + R1 tokenizer, with adapters trained by real short ``coalqa train`` runs
(one on a 4-bit NF4 base, one on a full-precision base); GGUF written by llama.cpp's own converter."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
import torch
import yaml
from conftest import train_adapter
from typer.testing import CliRunner

from coalqa.ask import AskConfig, answer, load_model
from coalqa.cli import app
from coalqa.errors import CoalqaError
from coalqa.export import llamacpp, vllm
from coalqa.export.merge import CHECK_QUESTIONS, save_dtype_for
from coalqa.export.run import check_disk
from coalqa.offline import R1_BOS_ID, R1_EOS_ID
from coalqa.template import encode_prompt, render_prompt

QA = [
    ("主要通风机多久检查一次？", "每月至少检查1次。"),
    ("井下爆破工作必须由谁担任？", "专职爆破工。"),
    ("矿灯应当保证最少连续正常使用多长时间？", "11h。"),
    ("采掘工作面的进风流中，氧气浓度不低于多少？", "20%。"),
]
# fp32 compute and a fp32 file: the merge must reproduce base + adapter to float32 rounding (measured ~6e-7)
LOGIT_TOLERANCE = 1e-4
TOKENS = 16


def _train(work: Path, base: Path, use_4bit: bool) -> Path:
    rows = [{"input": q, "output": a, "chunk_id": f"c{i}", "source": "s.txt", "locator": "第1条"} for i, (q, a) in enumerate(QA)]
    return train_adapter(work, base, rows, use_4bit=use_4bit)


@pytest.fixture(scope="module")
def adapter_4bit(tmp_path_factory, tiny_qwen2_dir) -> Path:
    return _train(tmp_path_factory.mktemp("train-4bit"), tiny_qwen2_dir, use_4bit=True)


@pytest.fixture(scope="module")
def adapter_fp(tmp_path_factory, tiny_qwen2_dir) -> Path:
    return _train(tmp_path_factory.mktemp("train-fp"), tiny_qwen2_dir, use_4bit=False)


def _export(args: list[str]):
    return CliRunner().invoke(app, ["export", *args])


@pytest.fixture(scope="module")
def export_all(tmp_path_factory, adapter_4bit) -> Path:
    """Everything exported from the 4-bit-trained adapter, the converter fetched from PyPI as by default."""
    out = tmp_path_factory.mktemp("export") / "all"
    result = _export(["--peft_model", str(adapter_4bit), "-o", str(out), "--check_tokens", str(TOKENS)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def export_fp(tmp_path_factory, adapter_fp) -> Path:
    """Exported on a CPU taken for one with native bf16 (``COALQA_CPU_BF16=1``): ``auto`` must still check in float32."""
    from coalqa.hardware import cpu_native_bf16

    out = tmp_path_factory.mktemp("export") / "fp"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COALQA_CPU_BF16", "1")
        cpu_native_bf16.cache_clear()
        try:
            result = _export(["--peft_model", str(adapter_fp), "-o", str(out), "--format", "merged",
                              "--check_tokens", str(TOKENS)])
        finally:
            cpu_native_bf16.cache_clear()
    assert result.exit_code == 0, result.output
    return out


def _refused(result, *words: str) -> None:
    """The command stopped with a CoalqaError (exit 2 and one red line under `coalqa`) naming ``words``."""
    assert isinstance(result.exception, CoalqaError), result.output
    for word in words:
        assert word in str(result.exception), str(result.exception)


def _report(out: Path) -> dict:
    return json.loads((out / "export_report.json").read_text(encoding="utf-8"))


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def _independent_check(adapter: Path, merged: Path) -> tuple[float, list[dict], list[dict]]:
    """Base + adapter as `coalqa ask` loads it vs the merged folder loaded with plain transformers (no peft)."""
    from transformers import AutoModelForCausalLM

    ref = load_model(adapter)
    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    assert type(plain).__name__ == "Qwen2ForCausalLM"
    assert not any("lora" in name for name in plain.state_dict())
    assert getattr(plain.config, "quantization_config", None) is None
    worst = 0.0
    for q in CHECK_QUESTIONS + [q for q, _ in QA]:
        ids = encode_prompt(ref.tokenizer, q, ref.fmt)
        worst = max(worst, float((_logits(ref.model, ids) - _logits(plain, ids)).abs().max()))
    greedy = AskConfig(temperature=0, max_new_tokens=TOKENS, batch_size=1)
    from dataclasses import replace

    mine = replace(ref, model=plain, adapter=None)
    questions = [q for q, _ in QA]
    return worst, answer(ref, questions, greedy, progress=False), answer(mine, questions, greedy, progress=False)


# ----------------------------------------------------------------------------------------- merged


@pytest.mark.slow
def test_merged_from_4bit_adapter_matches_base_plus_adapter(adapter_4bit, export_all) -> None:
    merged = export_all / "merged"
    report = _report(export_all)["merged"]
    assert report["method"] == "dequantize-then-merge" and report["base_loaded_in_4bit"] is True
    assert report["save_dtype"] == "float32"  # auto keeps the tiny base's own dtype
    check = report["check"]
    assert check["prompts"] == len(CHECK_QUESTIONS) and check["greedy_same"] == check["prompts"]
    assert 0 <= check["max_abs_logit_diff"] < LOGIT_TOLERANCE
    worst, expected, got = _independent_check(adapter_4bit, merged)
    assert worst < LOGIT_TOLERANCE
    assert [r["answer"] for r in got] == [r["answer"] for r in expected]
    assert [r["reasoning"] for r in got] == [r["reasoning"] for r in expected]


@pytest.mark.slow
def test_dequantize_then_merge_beats_merging_onto_the_original_base(adapter_4bit, export_all, tiny_qwen2_dir) -> None:
    """What the issue measured: merging a QLoRA adapter onto the unquantized base drifts from what was trained."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = load_model(adapter_4bit)
    naive = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32),
                                      str(adapter_4bit)).merge_and_unload().eval()
    ours = AutoModelForCausalLM.from_pretrained(export_all / "merged", dtype=torch.float32).eval()
    ids = encode_prompt(ref.tokenizer, CHECK_QUESTIONS[0], ref.fmt)
    target = _logits(ref.model, ids)
    naive_diff = float((_logits(naive, ids) - target).abs().max())
    ours_diff = float((_logits(ours, ids) - target).abs().max())
    assert ours_diff * 100 < naive_diff


@pytest.mark.slow
def test_merged_from_full_precision_adapter_matches(adapter_fp, export_fp) -> None:
    report = _report(export_fp)
    assert report["formats"] == ["merged"] and not (export_fp / "gguf").exists() and not (export_fp / "vllm").exists()
    assert report["merged"]["method"] == "merge" and report["merged"]["base_loaded_in_4bit"] is False
    assert report["merged"]["compute_dtype"] == "float32"  # the check's dtype, though auto computes in bf16 here
    assert report["merged"]["check"]["greedy_same"] == len(CHECK_QUESTIONS)
    assert report["merged"]["check"]["max_abs_logit_diff"] < LOGIT_TOLERANCE
    worst, expected, got = _independent_check(adapter_fp, export_fp / "merged")
    assert worst < LOGIT_TOLERANCE
    assert [r["answer"] for r in got] == [r["answer"] for r in expected]


@pytest.mark.slow
def test_merged_folder_carries_tokenizer_template_and_serving_defaults(adapter_4bit, export_all) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    merged = export_all / "merged"
    tok = AutoTokenizer.from_pretrained(merged)
    adapter_tok = AutoTokenizer.from_pretrained(adapter_4bit)
    assert tok.chat_template == adapter_tok.chat_template and tok.get_vocab() == adapter_tok.get_vocab()
    gen = GenerationConfig.from_pretrained(merged)
    assert gen.do_sample is True and gen.temperature == 0.6 and gen.top_p == 0.95
    assert gen.eos_token_id in (R1_EOS_ID, [R1_EOS_ID]) and gen.bos_token_id == R1_BOS_ID
    recorded = yaml.safe_load((adapter_4bit / "train_config.yaml").read_text(encoding="utf-8"))
    saved = json.loads((merged / "coalqa_prompt_format.json").read_text(encoding="utf-8"))["prompt_format"]
    assert saved["system_prompt"] == recorded["system_prompt"] and saved["template"] == recorded["template"]
    assert (merged / "train_config.yaml").read_bytes() == (adapter_4bit / "train_config.yaml").read_bytes()
    assert json.loads((merged / "config.json").read_text())["dtype"] == "float32"
    weights = sorted(merged.glob("*.safetensors")) + [export_all / "vllm" / "adapter" / "adapter_model.safetensors"]
    for f in weights + [export_all / "export_report.json"]:  # readable like config.json, not 0o600
        assert f.stat().st_mode & 0o777 == (merged / "config.json").stat().st_mode & 0o777, f


@pytest.mark.slow
def test_ask_answers_from_the_merged_folder_as_the_adapter_does(adapter_4bit, export_all) -> None:
    q = QA[1][0]
    common = ["--question", q, "--temperature", "0", "--max_new_tokens", "12", "--show_think"]
    with_adapter = CliRunner().invoke(app, ["ask", "--peft_model", str(adapter_4bit), *common])
    # a process of its own: transformers warns once per process, and the merged folder's generation_config.json
    # (temperature 0.6, top_p 0.95) must not make greedy decoding warn that those flags are ignored
    merged = subprocess.run([sys.executable, "-m", "coalqa.cli", "ask", "--model_name_or_path", str(export_all / "merged"),
                             "--no-adapter", *common], capture_output=True, text=True, timeout=300, check=False)
    assert with_adapter.exit_code == 0, with_adapter.output
    assert merged.returncode == 0, merged.stderr
    assert "coalqa_prompt_format.json" in merged.stderr  # prompted as trained (system prompt, template)
    assert "generation flags are not valid" not in merged.stderr
    assert merged.stdout.strip() and merged.stdout == with_adapter.stdout


def test_save_dtype_rule() -> None:
    from transformers import Qwen2Config

    assert save_dtype_for(Qwen2Config(dtype="bfloat16"))[0] == "bfloat16"
    assert save_dtype_for(Qwen2Config(dtype="float32"))[0] == "float32"
    assert save_dtype_for(Qwen2Config(dtype="float16"))[0] == "bfloat16"  # never float16 (Qwen2 overflows)
    assert save_dtype_for(Qwen2Config(dtype="float32"), "bfloat16") == ("bfloat16", "bfloat16 as requested")


# ------------------------------------------------------------------------------------------- GGUF


@pytest.mark.slow
def test_gguf_metadata_read_back(adapter_4bit, export_all) -> None:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    (path,) = (export_all / "gguf").glob("*.gguf")
    assert path.name == "coal-safety-f16.gguf"
    reader = GGUFReader(str(path))
    field = lambda key: reader.fields[key].contents()
    assert field("general.architecture") == "qwen2"
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "deepseek-r1-qwen"
    assert field("tokenizer.ggml.eos_token_id") == R1_EOS_ID and field("tokenizer.ggml.bos_token_id") == R1_BOS_ID
    assert field("tokenizer.chat_template") == AutoTokenizer.from_pretrained(adapter_4bit).chat_template
    assert {t.tensor_type.name for t in reader.tensors} >= {"F16"}
    report = _report(export_all)["gguf"]
    assert report["problems"] == [] and report["chat_template_matches"] is True
    assert report["converter"].startswith(f"PyPI llama-cpp-python=={llamacpp.PINNED['version']}")
    assert report["q4_k_m_command"] == f"llama-quantize {path} {path.with_name('coal-safety-Q4_K_M.gguf')} Q4_K_M"


@pytest.mark.slow
def test_converter_leaves_the_projects_gguf_package_alone(export_all) -> None:
    """The converter's own gguf-py is used in its child process only: the installed gguf and pip stay intact."""
    import gguf

    site = Path(gguf.__file__).resolve()
    installed = distribution("gguf")
    assert Path(installed.locate_file("gguf/__init__.py")).resolve() == site  # the dist pip installed, not a copy
    assert any(str(f) == "gguf/__init__.py" for f in installed.files or [])
    converter_root = llamacpp.find_converter(None).root
    assert converter_root not in site.parents
    probe = subprocess.run([sys.executable, "-c", "import gguf, sys; print(gguf.__file__)"], capture_output=True, text=True, check=False)
    assert Path(probe.stdout.strip()).resolve() == site
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_converter_source_errors(tmp_path) -> None:
    with pytest.raises(CoalqaError, match="not found"):
        llamacpp.find_converter(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CoalqaError, match="no convert_hf_to_gguf.py"):
        llamacpp.find_converter(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "convert_hf_to_gguf.py").write_text("", encoding="utf-8")
    with pytest.raises(CoalqaError, match="conversion, gguf-py/gguf"):
        llamacpp.find_converter(broken)


@pytest.mark.slow
def test_checkout_given_with_llama_cpp_is_used(export_all, tmp_path) -> None:
    tree = llamacpp.find_converter(None).root  # the pinned tree, as a user's checkout would look
    conv = llamacpp.find_converter(tree)
    assert conv.root == tree and conv.source.startswith("llama.cpp at")


@pytest.mark.slow
def test_q8_0_gguf(adapter_fp, export_fp, tmp_path) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "q8.gguf"
    llamacpp.convert(llamacpp.find_converter(None), export_fp / "merged", out, "q8_0")
    meta = llamacpp.read_metadata(out)
    assert meta["tensor_types"].get("Q8_0", 0) >= 14  # the 14 projection matrices of the 2 layers
    assert llamacpp.check_metadata(meta, "qwen2", AutoTokenizer.from_pretrained(adapter_fp)) == []


@pytest.mark.slow
def test_metadata_check_names_each_problem(adapter_4bit) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapter_4bit)
    good = {"architecture": "qwen2", "tokenizer_model": "gpt2", "pre_tokenizer": "deepseek-r1-qwen",
            "chat_template": tok.chat_template, "eos_token_id": R1_EOS_ID, "bos_token_id": R1_BOS_ID}
    assert llamacpp.check_metadata(good, "qwen2", tok) == []
    bad = {**good, "architecture": "llama", "pre_tokenizer": "default", "chat_template": None, "eos_token_id": 0}
    problems = " | ".join(llamacpp.check_metadata(bad, "qwen2", tok))
    for word in ("architecture 'llama'", "pre-tokenizer 'default'", "chat template", "EOS id 0"):
        assert word in problems


# ----------------------------------------------------------------------------------------- Ollama


@pytest.mark.slow
def test_modelfile_matches_the_adapters_training(adapter_4bit, export_all) -> None:
    text = (export_all / "gguf" / "Modelfile").read_text(encoding="utf-8")
    recorded = yaml.safe_load((adapter_4bit / "train_config.yaml").read_text(encoding="utf-8"))
    assert "FROM ./coal-safety-f16.gguf\n" in text and (export_all / "gguf" / "coal-safety-f16.gguf").is_file()
    assert f'SYSTEM """{recorded["system_prompt"]}"""' in text
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert "<｜User｜>{{ .Content }}" in template
    assert template.endswith('{{- if and $last (ne .Role "assistant") }}<｜Assistant｜><think>\n{{ end }}\n{{- end }}')
    for stop in ("<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"):
        assert f'PARAMETER stop "{stop}"' in text
    assert "PARAMETER temperature 0.6\n" in text and "PARAMETER top_p 0.95\n" in text
    # the training prompt the template must reproduce (less the BOS llama.cpp adds)
    tok = load_model(adapter_4bit).tokenizer
    from coalqa.template import PromptFormat

    fmt = PromptFormat(**{k: recorded[k] for k in PromptFormat.model_fields})
    assert render_prompt(tok, "Q", fmt) == f"{tok.bos_token}{fmt.system_prompt}<｜User｜>Q<｜Assistant｜><think>\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("go") is None, reason="needs Go to execute Ollama's text/template")
@pytest.mark.parametrize("template", ["chat", "plain"])
def test_modelfile_template_renders_the_training_prompt_in_go(adapter_4bit, tmp_path, template) -> None:
    """Run the TEMPLATE through Go's text/template (what Ollama uses) and compare with the training prompt,
    with a system prompt and an earlier turn."""
    from coalqa.export.ollama import template_for
    from coalqa.template import PromptFormat

    tok = load_model(adapter_4bit).tokenizer
    fmt = PromptFormat(template=template, system_prompt="系统提示")
    go_template, _ = template_for(tok, fmt)
    expected = render_prompt(tok, "第二问", fmt, [("第一问", "第一答")])
    expected = expected.removeprefix(tok.bos_token) if template == "chat" else expected  # llama.cpp adds the BOS
    program = tmp_path / "render.go"
    program.write_text(
        'package main\nimport ("os"; "text/template")\n'
        'type M struct { Role, Content string }\n'
        'type D struct { System string; Messages []M }\n'
        'func main() { t := template.Must(template.New("t").Parse(os.Args[1]))\n'
        ' t.Execute(os.Stdout, D{"系统提示", []M{{"system", "系统提示"}, {"user", "第一问"}, {"assistant", "第一答"}, {"user", "第二问"}}}) }\n',
        encoding="utf-8")
    out = subprocess.run(["go", "run", str(program), go_template], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GO111MODULE": "off"}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


@pytest.mark.slow
def test_modelfile_refuses_a_chat_template_it_cannot_reproduce(adapter_4bit) -> None:
    from transformers import AutoTokenizer

    from coalqa.export.ollama import PLAIN_TEMPLATE, template_for
    from coalqa.template import PromptFormat

    tok = AutoTokenizer.from_pretrained(adapter_4bit)
    assert template_for(tok, PromptFormat(template="plain"))[0] == PLAIN_TEMPLATE
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(CoalqaError, match="DeepSeek-R1-Distill's chat template and the plain format only"):
        template_for(tok, PromptFormat())


# ------------------------------------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_serve_sh_runs_the_exact_vllm_command(adapter_4bit, export_all, tmp_path, tiny_qwen2_dir) -> None:
    script = export_all / "vllm" / "serve.sh"
    assert os.stat(script).st_mode & stat.S_IXUSR
    adapter_copy = export_all / "vllm" / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "train_config.yaml"):
        assert (adapter_copy / name).read_bytes() == (adapter_4bit / name).read_bytes()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vllm").write_text('#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n',
                               encoding="utf-8")
    (fake / "vllm").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(script), "--port", "8001"], capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [
        "serve", str(tiny_qwen2_dir), "--enable-lora", "--lora-modules", f"coal-safety={adapter_copy.resolve()}",
        "--max-lora-rank", "8", "--quantization", "bitsandbytes", "--reasoning-parser", "deepseek_r1", "--port", "8001",
    ]
    env["BASE"] = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False)
    assert json.loads(run.stdout)[1] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    recorded = yaml.safe_load((adapter_4bit / "train_config.yaml").read_text(encoding="utf-8"))
    assert json.dumps(recorded["system_prompt"], ensure_ascii=False)[1:-1] in script.read_text(encoding="utf-8")
    report = _report(export_all)["vllm"]
    assert report["rank"] == 8 and report["max_lora_rank"] == 8 and report["quantization"] == "bitsandbytes"


@pytest.mark.slow
def test_vllm_only_export_of_a_full_precision_adapter(adapter_fp, tmp_path) -> None:
    out = tmp_path / "v"
    result = _export(["--peft_model", str(adapter_fp), "-o", str(out), "--format", "vllm"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "export_report.md", "vllm"]
    text = (out / "vllm" / "serve.sh").read_text(encoding="utf-8")
    assert "--quantization" not in text and "--max-lora-rank 8" in text and "--enable-lora" in text
    result = _export(["--peft_model", str(adapter_fp), "-o", str(tmp_path / "v4"), "--format", "vllm", "--vllm_4bit"])
    assert result.exit_code == 0, result.output
    assert "--quantization bitsandbytes" in (tmp_path / "v4" / "vllm" / "serve.sh").read_text(encoding="utf-8")


@pytest.mark.parametrize(("rank", "expected"), [(1, 1), (8, 8), (9, 16), (16, 16), (64, 64), (65, 128), (300, 320),
                                                 (512, 512)])
def test_max_lora_rank_rounds_up_to_vllms_set(rank, expected) -> None:
    assert vllm.max_lora_rank(rank) == expected


def test_vllm_check_lists_what_vllm_refuses() -> None:
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    good = {"peft_type": "LORA", "r": 64, "lora_alpha": 16, "target_modules": targets, "bias": "none"}
    facts, problems = vllm.check_adapter(good, ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"], "qwen2")
    assert problems == [] and facts["rank"] == 64 and facts["max_lora_rank"] == 64
    facts, _ = vllm.check_adapter({**good, "rank_pattern": {"q_proj": 100}}, [], "qwen2")
    assert facts["rank"] == 100 and facts["max_lora_rank"] == 128
    bad = {**good, "r": 600, "modules_to_save": ["lm_head"], "use_dora": True, "bias": "all",
           "target_modules": [*targets, "embed_tokens"], "init_lora_weights": "pissa"}
    problems = " | ".join(vllm.check_adapter(bad, ["base_model.model.model.embed_tokens.lora_embedding_A"], "qwen2")[1])
    for word in ("600", "modules_to_save", "DoRA", "bias", "embed_tokens", "pissa", "embedding"):
        assert word in problems
    with pytest.raises(ValueError):
        vllm.max_lora_rank(513)


# ----------------------------------------------------------------------------------------- errors


@pytest.mark.slow
def test_output_folder_must_be_empty_unless_overwrite(adapter_fp, tmp_path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = _export(["--peft_model", str(adapter_fp), "-o", str(out), "--format", "vllm"])
    _refused(result, "not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    result = _export(["--peft_model", str(adapter_fp), "-o", str(out), "--format", "vllm", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine" and (out / "vllm" / "serve.sh").is_file()


@pytest.mark.slow
def test_never_writes_into_the_adapter_folder(adapter_fp) -> None:
    before = sorted(p.name for p in adapter_fp.iterdir())
    for out in (adapter_fp / "export", adapter_fp, adapter_fp.parent):
        result = _export(["--peft_model", str(adapter_fp), "-o", str(out), "--format", "vllm", "--overwrite"])
        _refused(result, "--peft_model", "nothing was done")
    assert sorted(p.name for p in adapter_fp.iterdir()) == before


@pytest.mark.slow
def test_never_writes_into_the_base_model_folder(adapter_fp, tiny_qwen2_dir) -> None:
    before = sorted(p.name for p in tiny_qwen2_dir.iterdir())
    result = _export(["--peft_model", str(adapter_fp), "-o", str(tiny_qwen2_dir / "export"), "--format", "merged"])
    _refused(result, "the base model", "nothing was done")
    assert sorted(p.name for p in tiny_qwen2_dir.iterdir()) == before


@pytest.mark.slow
def test_missing_base_and_wrong_adapter_are_clear_errors(adapter_fp, tmp_path, tiny_qwen2_dir) -> None:
    moved = tmp_path / "adapter"
    shutil.copytree(adapter_fp, moved, ignore=shutil.ignore_patterns("checkpoint-*"))
    cfg = yaml.safe_load((moved / "train_config.yaml").read_text(encoding="utf-8"))
    cfg["model_name_or_path"] = str(tmp_path / "gone" / "base")
    (moved / "train_config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    result = _export(["--peft_model", str(moved), "-o", str(tmp_path / "o1"), "--format", "merged"])
    _refused(result, "not found", "--model_name_or_path")
    assert not (tmp_path / "o1").exists()
    result = _export(["--peft_model", str(tiny_qwen2_dir), "-o", str(tmp_path / "o2")])
    _refused(result, "not a PEFT adapter")
    result = _export(["--peft_model", str(tmp_path / "nothing"), "-o", str(tmp_path / "o3")])
    _refused(result, "adapter folder not found")


def test_too_little_disk_space_is_refused(tmp_path) -> None:
    with pytest.raises(CoalqaError, match="not enough disk space"):
        check_disk(tmp_path / "new" / "out", 1 << 60, "merged")
    check_disk(tmp_path, 1 << 20, "merged")


# ----------------------------------------------------------------------------- llama.cpp runtime


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (building it took 28 min on 2 cores; see README)")
@pytest.mark.slow
def test_gguf_runs_in_llama_cpp_like_transformers(export_all) -> None:
    """llama.cpp tokenizes the training prompts like the tokenizer, and its greedy tokens follow transformers'."""
    run = _report(export_all)["gguf"]["llama_cpp_run"]
    assert run is not None and run["prompts"] == len(CHECK_QUESTIONS)
    assert run["tokenization_same"] == run["prompts"]  # the deepseek-r1-qwen pre-tokenizer at work
    # f16 weights on a random tiny model with near-flat logits: a near-tie may flip late, never at the start
    assert all(item["same_prefix_tokens"] >= 8 for item in run["items"]), run["items"]
    assert run["greedy_same"] >= run["prompts"] - 1
