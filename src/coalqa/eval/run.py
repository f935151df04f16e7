"""The evaluation itself, as a Python API (used by ``coalqa eval`` and ``coalqa demo``).

>>> refs = load_references("../shared/eval/dev.jsonl")
>>> loaded = load_eval_model(peft_model="output/deepseek-coal-safety-20250101-120000")
>>> preds = generate_predictions(refs, loaded, EvalConfig())
>>> report = evaluate(refs, preds, EvalConfig(), label="tuned")
>>> write_report(report, "report")          # report.json + report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.eval.config import EvalConfig
from coalqa.eval.data import match_predictions
from coalqa.eval.report import build_report, score_items
from coalqa.jsonio import write_json_atomic


def load_eval_model(
    peft_model: str | Path | None = None,
    *,
    no_adapter: bool = False,
    model_name_or_path: str | None = None,
    load_in_4bit: bool | None = None,
    dtype: str = "auto",
    system_prompt: str | None = None,
):
    """Load what is being evaluated, through :func:`coalqa.ask.load_model`.

    * ``peft_model`` alone: the fine-tuned model (base, prompt format and 4-bit as it was trained).
    * ``peft_model`` + ``no_adapter``: that adapter's base model *without* the adapter, prompted with
      the adapter's own prompt format and precision — the fair "before fine-tuning" run.
    * ``no_adapter`` + ``model_name_or_path``: a base model with the default prompt format and no system prompt.

    ``system_prompt`` replaces the system prompt in every case (``""``: none).

    ``dtype``: ``auto`` (by the hardware, :func:`coalqa.hardware.choose_dtype`), ``bfloat16`` or ``float32``.

    Returns:
        ``coalqa.ask.LoadedModel``.

    Raises:
        CoalqaError: neither an adapter nor a base model was given, or loading fails.
    """
    from coalqa.ask import load_model

    if peft_model is None and not no_adapter:
        raise CoalqaError(
            "nothing to evaluate: pass --peft_model DIR, --no-adapter (with --model_name_or_path), or --predictions FILE"
        )
    if peft_model is None and not model_name_or_path:
        raise CoalqaError("--no-adapter needs --model_name_or_path (or --peft_model DIR to use that adapter's base)")
    return load_model(peft_model, model_name_or_path=model_name_or_path, load_in_4bit=load_in_4bit,
                      dtype=dtype, use_adapter=not no_adapter, system_prompt=system_prompt)


def generate_predictions(
    references: list[dict[str, Any]], loaded, config: EvalConfig, *, progress: bool = True,
    save_to: str | Path | None = None, index=None,
) -> list[dict[str, Any]]:
    """Answer every reference question with ``loaded`` through :func:`coalqa.ask.answer`, or, with ``index`` (a
    loaded :class:`coalqa.retrieval.Index`), grounded through :func:`coalqa.grounding.answer_grounded`.

    Args:
        save_to: JSON file rewritten after every batch with the answers so far (partial work kept
            if the run is interrupted) and at the end with all of them.

    Returns:
        the ask results (``question``, ``answer``, ``reasoning``, ``tokens``, ``seconds``,
        ``finished_reasoning``; grounded: also ``citations``, ``evidence``, ``unsupported_numbers``, ...) with each
        reference's ``id`` added — the ``--predictions`` format.
    """
    from coalqa.ask import AskConfig, answer
    from coalqa.grounding import answer_grounded

    ask_config = AskConfig.model_validate(config.model_dump(include=set(AskConfig.model_fields)))
    done: dict[int, dict[str, Any]] = {}

    def save(indices: list[int], results: list[dict[str, Any]]) -> None:
        for i, res in zip(indices, results):
            done[i] = {"id": references[i]["id"], **res}
        if save_to is not None:
            write_json_atomic(save_to, [done[i] for i in sorted(done)])

    questions = [r["question"] for r in references]
    if index is not None:
        answer_grounded(loaded, index, questions, ask_config, progress=progress, on_batch=save)
    else:
        answer(loaded, questions, ask_config, progress=progress, on_batch=save)
    return [done[i] for i in range(len(references))]


def evaluate(
    references: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    config: EvalConfig | None = None,
    *,
    label: str = "run",
    source: str = "predictions",
    meta: dict[str, Any] | None = None,
    index=None,
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
