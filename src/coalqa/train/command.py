"""``coalqa train --data QAdata_all.json [--config FILE.yaml] [--<setting> VALUE ...]``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from coalqa.config import config_options, load_config
from coalqa.train.config import TrainConfig


@config_options(TrainConfig, bool_style="value")
def train(
    config: Path | None = typer.Option(None, "--config", help="YAML file with TrainConfig settings; flags override it"),
    *,
    overrides: dict,
) -> None:
    """Fine-tune a LoRA adapter (QLoRA by default) on QA pairs; writes output/deepseek-coal-safety-<time>/."""
    from coalqa.train.trainer import run

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    settings = load_config(TrainConfig, config, overrides)
    console = Console(stderr=True)
    result = run(settings)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    if result.interrupted:
        console.print(f"[yellow]interrupted[/]: checkpoint saved; continue with "
                      f"`coalqa train --config {result.run_dir / 'train_config.yaml'} "
                      f"--resume_from_checkpoint {result.run_dir}`")
        raise typer.Exit(130)
    console.print(f"[bold green]adapter saved[/] → {result.run_dir}  (see run_card.md, loss_curve.png)")
