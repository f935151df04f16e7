"""The shared config layer: defaults < YAML < CLI flags, clear errors, generated typer options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from coalqa.config import ConfigError, config_options, dump_config, load_config


class ToyConfig(BaseModel):
    lora_rank: int = Field(64, description="LoRA rank")
    learning_rate: float = 2e-4
    use_4bit: bool = True
    template: Literal["chat", "plain"] = "chat"
    target_modules: list[str] = ["q_proj", "v_proj"]
    name: str | None = None


def test_precedence_defaults_yaml_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("lora_rank: 8\nlearning_rate: 0.001\n", encoding="utf-8")
    cfg = load_config(ToyConfig, f, {"learning_rate": 0.5, "lora_rank": None})
    assert cfg.lora_rank == 8 and cfg.learning_rate == 0.5 and cfg.use_4bit is True


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("lora_rnk: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*lora_rnk"):
        load_config(ToyConfig, f)


def test_wrong_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lora_rank"):
        load_config(ToyConfig, None, {"lora_rank": "many"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(ToyConfig, tmp_path / "nope.yaml")


def test_dump_roundtrip(tmp_path: Path) -> None:
    cfg = ToyConfig(lora_rank=4, name="中文")
    dump_config(cfg, tmp_path / "out.yaml")
    assert load_config(ToyConfig, tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize("bool_style", ["value", "flag"])
def test_generated_options(tmp_path: Path, bool_style: str) -> None:
    app = typer.Typer()
    seen: dict = {}

    @app.command()
    @config_options(ToyConfig, bool_style=bool_style)
    def cmd(data: Path = typer.Option(..., "--data"), overrides: dict | None = None) -> None:
        seen["cfg"] = load_config(ToyConfig, None, overrides)
        seen["data"] = data

    off = ["--use_4bit", "false"] if bool_style == "value" else ["--no-use_4bit"]
    args = ["--data", "x.json", "--lora_rank", "16", "--template", "plain", "--target_modules", "a, b", *off]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.lora_rank, cfg.use_4bit, cfg.template, cfg.target_modules) == (16, False, "plain", ["a", "b"])
    assert cfg.learning_rate == 2e-4 and seen["data"] == Path("x.json")
    bad = CliRunner().invoke(app, ["--data", "x", "--template", "nope"])
    assert bad.exit_code != 0


def test_dashed_spelling_is_accepted(tmp_path: Path) -> None:
    from coalqa.cli import app as coalqa_app

    doc = tmp_path / "规定.txt"
    article = "为了保障煤矿安全生产，防止事故，保护职工生命安全，制定本规定。" * 2
    doc.write_text(f"第一条{article}\n第二条{article}\n", encoding="utf-8")
    for flag in ("--max_chars", "--max-chars"):
        out = tmp_path / f"chunks{flag}.jsonl"
        result = CliRunner().invoke(coalqa_app, ["corpus", str(doc), "-o", str(out), flag, "100"])
        assert result.exit_code == 0, result.output
        assert out.read_text(encoding="utf-8").count("\n") == 2  # 100 chars: each ~66-char article its own chunk
