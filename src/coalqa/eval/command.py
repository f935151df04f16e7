"""``coalqa eval``: score answers against references; compare two runs.

    coalqa eval --references ../shared/eval/dev.jsonl --peft_model output/deepseek-coal-safety-… -o tuned
    coalqa eval --references ../shared/eval/dev.jsonl --peft_model output/deepseek-coal-safety-… --no-adapter -o base
    coalqa eval --references ../shared/eval/dev.jsonl --predictions results.json -o report
    coalqa eval --compare base.json tuned.json -o comparison
    coalqa eval --references ../shared/eval/dev.jsonl --peft_model DIR --index INDEX_DIR -o grounded   # + citations
    coalqa eval --references ../shared/eval/dev.jsonl --index INDEX_DIR --retrieval_only -o retrieval  # no model
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from coalqa.config import config_options, load_config
from coalqa.errors import CoalqaError
from coalqa.eval.config import EvalConfig
from coalqa.eval.data import load_predictions, load_references
from coalqa.eval.report import (
    METRICS,
    comparison_paths,
    load_report,
    report_paths,
    write_comparison,
    write_report,
)
from coalqa.paths import check_outputs

if TYPE_CHECKING:
    from coalqa.retrieval.index import Index


def summary_table(report: dict[str, Any]) -> Table:
    """A rich table of a report's averages: one row per metric, one column per scope (all, then each group), so that
    it stays readable at 80 columns however many metrics a grounded run adds."""
    scopes = [("all", report["overall"])] + list(report.get("groups", {}).items())
    keys = [k for k in METRICS if any(s.get(k) is not None for _, s in scopes)]
    table = Table(title=f"coalqa eval: {report['label']}  (ROUGE/BLEU tokens: {report['tokenization']})")
    table.add_column("metric")
    for name, s in scopes:
        table.add_column(f"{name} (n={s['n']})", justify="right")
    for k in keys:
        table.add_row(METRICS[k], *("–" if s.get(k) is None else f"{s[k]:.3f}" for _, s in scopes))
    table.add_row("key facts found", *(f"{s['facts_found']}/{s['facts_total']}" for _, s in scopes))
    table.add_row("empty answers", *(str(s["empty_answers"]) for _, s in scopes))
    table.add_row("cut at the token limit", *(str(s.get("cut_answers", 0)) for _, s in scopes))
    return table


@config_options(EvalConfig, bool_style="value")
def eval_command(
    references: Annotated[Path | None, typer.Option("--references", "-r", help="Eval set (JSON lines: id, question, reference_answer, key_facts, …) or a QA file (QAdata_all.json format).")] = None,
    peft_model: Annotated[Path | None, typer.Option("--peft_model", help="Adapter folder from `coalqa train`: generate the answers with it.")] = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Evaluate the base model without the adapter (with --peft_model: its base and prompt format).")] = False,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Score existing answers (`coalqa ask --output_file` output) instead of generating.")] = None,
    compare: Annotated[tuple[Path, Path] | None, typer.Option("--compare", help="Two reports (e.g. base.json tuned.json): side-by-side table + bar chart.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report path stem: writes STEM.json and STEM.md (compare: STEM.md and STEM.png).")] = Path("report"),
    retrieval_only: Annotated[bool, typer.Option("--retrieval_only", help="With --index: score retrieval alone (recall@1/3/5/10 and MRR of each reference's source clause); no model.")] = False,
    label: Annotated[str | None, typer.Option("--label", help="Name of this run in reports (default: base / the adapter folder / the predictions file).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with EvalConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Score answers: character ROUGE-L, BLEU-4 and key-fact recall (+ optional LLM judge).

    Answers come from --predictions, or are generated here with --peft_model / --no-adapter
    (greedy by default). Writes STEM.json (every item) and STEM.md; --compare A.json B.json writes a
    side-by-side table and a bar chart instead.
    """
    console = Console(stderr=True)
    if compare:
        paths = comparison_paths(output)
        check_outputs("eval", inputs={"--compare": compare, "--config": config},
                      outputs={"the comparison (--output)": paths["md"], "the chart (--output)": paths["png"]})
        reports = [load_report(p) for p in compare]
        md_path, png_path, text = write_comparison(reports, output)
        console.print(Markdown(text))
        console.print(f"wrote {md_path} and {png_path}", highlight=False)
        return
    cfg = load_config(EvalConfig, config, overrides)
    if references is None:
        raise CoalqaError("--references FILE is required (e.g. ../shared/eval/dev.jsonl), or use --compare A.json B.json")
    if predictions is not None and (peft_model is not None or no_adapter):
        raise CoalqaError("give either --predictions FILE or a model to answer with (--peft_model / --no-adapter), not both")
    paths = report_paths(output)
    check_outputs(
        "eval",
        inputs={"--references": references, "--predictions": predictions, "--peft_model": peft_model,
                "--model_name_or_path": cfg.model_name_or_path, "--config": config, "--index": cfg.index},
        outputs={"the report (--output)": paths["json"], "the Markdown report (--output)": paths["md"],
                 **({} if predictions is not None else {"the answers file (--output)": paths["predictions"]})},
    )
    refs = load_references(references)
    if cfg.limit:
        refs = refs[: cfg.limit]
    from coalqa.chat_model import load_index_for

    generating = predictions is None and not retrieval_only
    index = load_index_for(peft_model if generating else None, cfg, use_adapter=not no_adapter)  # before the model
    if retrieval_only:
        from coalqa.eval.grounding import write_retrieval_report

        if index is None:
            raise CoalqaError("--retrieval_only scores an index: give --index INDEX_DIR (from `coalqa index`)")
        if predictions is not None or peft_model is not None or no_adapter:
            raise CoalqaError("--retrieval_only runs no model: leave out --predictions, --peft_model and --no-adapter")
        json_path, md_path, _ = write_retrieval_report(refs, index, output, references_file=str(references))
        # the Markdown report holds the strict and support figures and the misses with their top hit
        console.print(md_path.read_text(encoding="utf-8").split("\n", 2)[2].strip(), highlight=False, markup=False,
                      soft_wrap=True)
        console.print(f"wrote {json_path} and {md_path}", highlight=False)
        return
    meta: dict[str, Any] = {"references": str(references)}
    if predictions is not None:
        from coalqa.eval.run import evaluate

        preds = load_predictions(predictions)
        meta["predictions"] = str(predictions)
        label = label or predictions.stem
        report = evaluate(refs, preds, cfg, label=label, source=str(predictions), meta=meta, index=index)
        json_path, md_path = write_report(report, output)
    else:
        report = _answer_and_score(refs, peft_model, no_adapter, cfg, index, output, label, meta, console)
        json_path, md_path = paths["json"], paths["md"]
    console.print(summary_table(report))
    console.print(f"wrote {json_path} and {md_path}", highlight=False)


def _answer_and_score(refs: list[dict[str, Any]], peft_model: Path | None, no_adapter: bool, cfg: EvalConfig,
                      index: Index | None, output: Path, label: str | None, meta: dict[str, Any],
                      console: Console) -> dict[str, Any]:
    """Start the model (:func:`coalqa.eval.run.start_eval_model`), answer every reference with it (saved beside the
    report) and score the answers (:func:`coalqa.eval.run.run_eval`); returns the report."""
    from coalqa.eval.run import run_eval, start_eval_model

    model = start_eval_model(peft_model, cfg, no_adapter=no_adapter, console=console, index=index)
    console.print(f"compute dtype {model.loaded.dtype} ({model.loaded.dtype_reason})", highlight=False)
    label = label or ("base" if no_adapter else Path(peft_model).name)
    console.print(f"answering {len(refs)} questions with {label} (greedy)" if cfg.temperature == 0 else
                  f"answering {len(refs)} questions with {label} (temperature {cfg.temperature})", highlight=False)
    pred_path = report_paths(output)["predictions"]
    meta = meta | {"generation": cfg.model_dump(include={"temperature", "max_new_tokens", "seed"}),
                   **({"grounding": cfg.grounding_settings()} if index is not None else {})}
    report, _ = run_eval(refs, model, cfg, output, label=label, predictions_file=pred_path, meta=meta,
                         source=str(pred_path))
    console.print(f"saved the answers to {pred_path}", highlight=False)
    return report
