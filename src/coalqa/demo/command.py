"""``coalqa demo``: the command line of :func:`coalqa.demo.run.run_demo` (flags declared once, by :class:`DemoConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from coalqa.config import config_options
from coalqa.demo.config import REAL_PRESET, DemoConfig, split_config
from coalqa.demo.run import run_demo
from coalqa.paths import check_outputs


@config_options(DemoConfig, bool_style="flag")
def demo(
    config: Annotated[Path | None, typer.Option("--config", help=f"YAML with DemoConfig and/or TrainConfig settings (e.g. {REAL_PRESET}).")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run the whole pipeline on real regulations: chunk → QA pairs → LoRA → answers before/after → eval table.

    Offline and on CPU by default (stand-in model Qwen2.5-Coder-0.5B-Instruct, ~19 min on 2 cores); every
    step is cached in --work_dir and reused on a rerun.
    """
    cfg, preset = split_config(config, overrides)
    check_outputs("demo", inputs={"--docs": cfg.docs, "--references": cfg.references, "--config": config,
                                  "--model_name_or_path": cfg.model_name_or_path},
                  output_dirs={"--work_dir": cfg.work_dir})
    run_demo(cfg, preset)
