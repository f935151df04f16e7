"""``coalqa export``: the fine-tuned model as a merged model, a GGUF (+ Ollama Modelfile) and a vLLM launcher.

    coalqa export --peft_model output/deepseek-coal-safety-… -o export                    # everything
    coalqa export --peft_model output/deepseek-coal-safety-… -o export --format merged
    coalqa export --peft_model output/deepseek-coal-safety-… -o export --format gguf --gguf_type q8_0
    coalqa export --peft_model output/deepseek-coal-safety-… -o export --format vllm
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown

from coalqa.config import config_options, load_config
from coalqa.errors import CoalqaError
from coalqa.export.config import ExportConfig


@config_options(ExportConfig, bool_style="flag")
def export(
    peft_model: Annotated[
        Path | None, typer.Option("--peft_model", help="LoRA adapter folder written by `coalqa train` (only read).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output_dir", "-o", help="Output folder (created; must be empty unless --overwrite).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty output folder, replacing the export's own files.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with ExportConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Export an adapter for llama.cpp/Ollama (GGUF), vLLM (adapter + serve.sh) or plain transformers (merged).

    The merged model is checked against base + adapter (logit difference, greedy answers on fixed prompts), the
    GGUF's metadata is read back, and a report (export_report.json/.md) says what was written and measured.
    """
    cfg = load_config(ExportConfig, config, overrides)
    if peft_model is None:
        raise CoalqaError("give --peft_model DIR (the output folder of `coalqa train`)")
    if output_dir is None:
        raise CoalqaError("give -o OUT_DIR (a new or empty folder for the exported files)")
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    from coalqa.export.run import REPORT_JSON, REPORT_MD, export_model, report_markdown

    report = export_model(peft_model, output_dir, cfg, overwrite=overwrite, config_file=config,
                          log=lambda m: err.print(m, style="dim", markup=False))
    Console(stderr=True).print(Markdown(report_markdown(report)))
    err.print(f"report: {Path(output_dir) / REPORT_JSON} and {REPORT_MD}", markup=False)
