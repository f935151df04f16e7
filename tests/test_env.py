"""``coalqa env``: a paste-able report of versions, hardware facts, the dtype auto picks, and model caches."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from coalqa.cli import app


def test_env_report_has_every_field_a_bug_report_needs():
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    out = result.output
    for library in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"):
        assert f"- {library}: " in out
    for field in ("- Python: ", "- Model: ", "- Cores: ", "- PyTorch CPU capability: ", "- Native bfloat16: ",
                  "### GPUs", "### Default compute dtype (`auto`)", "- cpu: float32 (auto: COALQA_CPU_BF16=0",
                  "- coalqa (offline stand-ins): ", "- huggingface hub: ", "- COALQA_CPU_BF16=0"):
        assert field in out, field


def test_env_json_is_machine_readable():
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.output)
    assert env["cpu"]["cores"] >= 1 and env["cpu"]["native_bf16"] is False  # conftest forces the float32 path
    assert env["default_dtype"]["cpu"]["dtype"] == "float32"
    assert env["libraries"]["torch"].startswith("2.") and isinstance(env["gpus"], list)
    assert all(c["bytes"] >= 0 for c in env["caches"].values())
