"""The evaluation itself, as a Python API (used by ``coalqa eval`` and ``coalqa demo``).

>>> refs = load_references("../shared/eval/dev.jsonl")
>>> model = start_eval_model("output/deepseek-coal-safety-20250101-120000", EvalConfig())
>>> preds = generate_predictions(refs, model, EvalConfig())
>>> report = evaluate(refs, preds, EvalConfig(), label="tuned")
>>> write_report(report, "report")          # report.json + report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.ask.config import AskConfig
from coalqa.errors import CoalqaError
from coalqa.eval.config import EvalConfig
from coalqa.eval.data import match_predictions
from coalqa.eval.report import build_report, score_items
from coalqa.jsonio import write_json_atomic

if TYPE_CHECKING:
    from rich.console import Console

    from coalqa.ask.inference import LoadedModel
    from coalqa.chat_model import ChatModel
    from coalqa.retrieval.index import Index


def start_eval_model(
    peft_model: str | Path | None,
    config: AskConfig,
    *,
    no_adapter: bool = False,
    console: Console | None = None,
    index: Index | None | bool = True,
) -> ChatModel:
    """What is being evaluated, started by :func:`coalqa.chat_model.start_model` (every check; notes printed once on
    ``console``):

    * ``peft_model`` alone: the fine-tuned model (base, prompt format and 4-bit as it was trained).
    * ``peft_model`` + ``no_adapter``: that adapter's base model *without* the adapter, prompted with
      the adapter's own prompt format and precision — the fair "before fine-tuning" run.
    * ``no_adapter`` + ``config.model_name_or_path``: a base model with the default prompt format and no system prompt.

    ``config.system_prompt`` replaces the system prompt in every case (``""``: none); ``config.dtype``: ``auto`` (by
    the hardware, :func:`coalqa.hardware.choose_dtype`), ``bfloat16`` or ``float32``. ``index``: as
    :func:`coalqa.chat_model.start_model` (answers grounded on it).

    Raises:
        CoalqaError: neither an adapter nor a base model was given, or loading fails.
    """
    from coalqa.chat_model import start_model

    if peft_model is None and not no_adapter:
        raise CoalqaError(
            "nothing to evaluate: pass --peft_model DIR, --no-adapter (with --model_name_or_path), or --predictions FILE"
        )
    if peft_model is None and not config.model_name_or_path:
        raise CoalqaError("--no-adapter needs --model_name_or_path (or --peft_model DIR to use that adapter's base)")
    return start_model(peft_model, config, use_adapter=not no_adapter, console=console, index=index)


def load_eval_model(
    peft_model: str | Path | None = None,
    *,
    no_adapter: bool = False,
    model_name_or_path: str | None = None,
    load_in_4bit: bool | None = None,
    dtype: str = "auto",
    system_prompt: str | None = None,
) -> LoadedModel:
    """:func:`start_eval_model` without an index or a console, for the Python API: the
    :class:`coalqa.ask.LoadedModel` (its notes in ``.notes``)."""
    config = AskConfig(model_name_or_path=model_name_or_path, load_in_4bit=load_in_4bit, dtype=dtype,
                       system_prompt=system_prompt)
    return start_eval_model(peft_model, config, no_adapter=no_adapter, index=None).loaded


def generate_predictions(
    references: list[dict[str, Any]], model: ChatModel, config: EvalConfig, *, progress: bool = True,
    save_to: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Answer every reference question with ``model`` (:meth:`coalqa.chat_model.ChatModel.answer`: grounded
    through :func:`coalqa.grounding.answer_grounded` when it has an index, else plain).

    Args:
        save_to: JSON file rewritten after every batch with the answers so far (partial work kept
            if the run is interrupted) and at the end with all of them.

    Returns:
        the ask results (``question``, ``answer``, ``reasoning``, ``tokens``, ``seconds``,
        ``finished_reasoning``; grounded: also ``citations``, ``evidence``, ``unsupported_numbers``, ...) with each
        reference's ``id`` added — the ``--predictions`` format.
    """
    from coalqa.ask import AskConfig

    ask_config = AskConfig.model_validate(config.model_dump(include=set(AskConfig.model_fields)))
    done: dict[int, dict[str, Any]] = {}

    def save(indices: list[int], results: list[dict[str, Any]]) -> None:
        for i, res in zip(indices, results):
            done[i] = {"id": references[i]["id"], **res}
        if save_to is not None:
            write_json_atomic(save_to, [done[i] for i in sorted(done)])

    model.answer([r["question"] for r in references], ask_config, progress=progress, on_batch=save)
    return [done[i] for i in range(len(references))]


def run_eval(
    references: list[dict[str, Any]], model: ChatModel, config: EvalConfig, output: str | Path, *,
    label: str, predictions_file: str | Path, meta: dict[str, Any], source: str = "predictions",
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The evaluation entry point of ``coalqa eval`` and the demo: answer ``references`` with ``model`` (saved to
    ``predictions_file`` as they come), score them (:func:`evaluate`, grounded on ``model.index`` when set) and write
    ``output``.json/.md (:func:`coalqa.eval.report.write_report`).

    ``meta`` (``references``, ``generation``, ``grounding``, ...) goes into the report with ``predictions`` and
    ``model`` (:meth:`coalqa.ask.LoadedModel.describe`) added.

    Returns:
        ``(report, predictions)``.
    """
    from coalqa.eval.report import write_report

    preds = generate_predictions(references, model, config, progress=progress, save_to=predictions_file)
    first = {k: meta[k] for k in ("references",) if k in meta}
    meta = first | {"predictions": str(predictions_file), "model": model.loaded.describe()} | meta
    report = evaluate(references, preds, config, label=label, source=source, meta=meta, index=model.index)
    write_report(report, output)
    return report, preds


def evaluate(
    references: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    config: EvalConfig | None = None,
    *,
    label: str = "run",
    source: str = "predictions",
    meta: dict[str, Any] | None = None,
    index: Index | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` against ``references`` (optionally with the LLM judge) into a report dict.

    Grounded predictions (with ``citations``) also get the fields of :func:`coalqa.eval.grounding.grounding_fields`
    (citation accuracy, unsupported numbers, evidence key facts); with ``index`` the report adds retrieval recall@k
    and MRR (``report["retrieval"]``) and each item its ``retrieval_rank``. Key-fact recall is always of the
    answer text alone.

    Args:
        source: where the predictions came from, for error messages.
        meta: extra report fields (``references``, ``predictions``, ``model``...).

    Returns:
        the report dict of :func:`coalqa.eval.report.build_report`.

    Raises:
        CoalqaError: a reference has no prediction; the judge is on but its key is unset.
    """
    config = config or EvalConfig()
    meta = dict(meta or {})
    matched = match_predictions(references, predictions, source)
    items = score_items(references, matched, config.tokenization)
    from coalqa.eval.grounding import grounding_fields, ranked_references, retrieval_summary

    for item, pred in zip(items, matched):
        if "citations" in pred:
            item |= grounding_fields(item, pred, index)
    if index is not None:
        ranked = {r["id"]: r for r in ranked_references(index, references)}
        for item in items:
            item["retrieval_rank"] = ranked[item["id"]]["rank"] if item["id"] in ranked else None
            item["retrieval_support_rank"] = ranked[item["id"]]["support_rank"] if item["id"] in ranked else None
        meta |= {"index": str(index.path), "retrieval": retrieval_summary({i: r["rank"] for i, r in ranked.items()}),
                 "retrieval_support": retrieval_summary({i: r["support_rank"] for i, r in ranked.items()})}
    if config.judge:
        from coalqa.eval.judge import judge_items

        judge_items(items, config)
        meta["judge"] = {"provider": config.judge_provider, "model": config.judge_model}
    return build_report(items, label=label, tokenization=config.tokenization, **meta)
