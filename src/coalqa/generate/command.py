"""``coalqa generate CHUNKS -o QAdata_all.json``: QA pairs from corpus chunks, by LLM or offline."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from coalqa.config import config_options, load_config
from coalqa.corpus import read_chunks
from coalqa.errors import CoalqaError
from coalqa.generate.config import GenerateConfig
from coalqa.paths import check_outputs


def load_chunks(path: Path) -> list[dict[str, Any]]:
    """Chunks as dicts, via ``coalqa.corpus.read_chunks`` (format and errors documented there).

    Raises:
        CoalqaError: unreadable file or rows (from the corpus reader), or duplicate chunk ids
            (resuming is keyed by id).
    """
    chunks = [c if isinstance(c, dict) else dataclasses.asdict(c) for c in read_chunks(path)]
    seen: set[str] = set()
    for c in chunks:
        if c["id"] in seen:
            raise CoalqaError(f"{path}: chunk id {c['id']!r} occurs twice; ids must be unique")
        seen.add(c["id"])
    return chunks


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    p, c, t = s["pairs"], s["chunks"], s["tokens"]["all_runs"]
    console.print(
        f"[bold green]{p['kept']}[/] pairs kept → {s['output']}  "
        f"(chunks: {c['done']} done, {c['failed']} failed, {c['reused_from_checkpoint']} reused from checkpoint"
        + (f", {c['reused_from_previous_qa']} from --previous_qa" if c.get("reused_from_previous_qa") else "")
        + f", {c['generated_this_run']} generated this run)"
    )
    reasons = ", ".join(f"{k} {v}" for k, v in p["rejected_by_reason"].items()) or "none"
    console.print(f"rejected {p['rejected']} ({reasons}); duplicates removed {p['duplicates_removed']} "
                  f"(exact {p['duplicates_by_kind']['exact']}, near {p['duplicates_by_kind']['near']})")
    console.print(f"model {s['model']} · prompt {s['prompt']['version']} · tokens {t.get('total_tokens', 0)} "
                  f"(prompt {t.get('prompt_tokens', 0)}, completion {t.get('completion_tokens', 0)}) · "
                  f"summary {s['files']['summary']}")


@config_options(GenerateConfig)
def generate(
    chunks: Path = typer.Argument(..., help="chunks.jsonl from `coalqa corpus`"),
    output: Path = typer.Option(Path("QAdata_all.json"), "-o", "--output", help="dataset to write (JSON array)"),
    config: Path | None = typer.Option(None, "--config", help="YAML file of settings (flags override it)"),
    overrides: dict | None = None,
) -> None:
    """Generate QA pairs for every chunk: resumable (rerun the same command after an interruption).

    Providers: zhipuai (ZHIPUAI_API_KEY), openai (OPENAI_API_KEY, any compatible --base_url), or
    clause (offline; the answer is the clause text verbatim). Exits 1 if some chunks failed
    (the dataset is still written; rerun to retry them).
    """
    cfg = load_config(GenerateConfig, config, overrides)
    console = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    from coalqa.generate.run import run_generate, side_paths

    side = side_paths(output, cfg)
    check_outputs(
        "generate",
        inputs={"CHUNKS": chunks, "--config": config, "--prompt": cfg.prompt, "--previous_qa": cfg.previous_qa},
        outputs={"the dataset (--output)": output, "the checkpoint": side["checkpoint"],
                 "the summary": side["summary"], "the rejects log": side["rejects"]},
    )
    summary = run_generate(load_chunks(chunks), output, cfg, console=console, chunks_path=chunks)
    _print_summary(console, summary)
    if summary["chunks"]["failed"]:
        console.print(f"[yellow]{summary['chunks']['failed']} chunk(s) failed[/]; rerun the same command to retry them "
                      f"(see failed_chunks in {summary['files']['summary']})")
        raise typer.Exit(1)
    sys.stdout.flush()
