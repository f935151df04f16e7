"""The evaluation itself, as a Python API (used by ``coalqa eval`` and ``coalqa demo``).

>>> refs = load_references("../shared/eval/dev.jsonl")
>>> loaded = load_eval_model(peft_model="output/deepseek-coal-safety-20250101-120000")
>>> preds = generate_predictions(refs, loaded, EvalConfig())
>>> report = evaluate(refs, preds, EvalConfig(), label="tuned")
>>> write_report(report, "report")          # report.json + report.md
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from coalqa.errors import CoalqaError
from coalqa.eval.config import EvalConfig
from coalqa.eval.data import match_predictions
from coalqa.eval.report import build_report, score_items
from coalqa.template import PromptFormat


def adapter_train_config(peft_model: str | Path) -> dict[str, Any]:
    """The ``train_config.yaml`` saved beside an adapter (see the train stage's contract).

    Raises:
        CoalqaError: the folder or its ``train_config.yaml`` is missing or unreadable.
    """
    path = Path(peft_model) / "train_config.yaml"
    if not path.is_file():
        raise CoalqaError(f"{path} not found: --peft_model must be a folder written by `coalqa train`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CoalqaError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise CoalqaError(f"{path}: expected a mapping of training settings")
    return data


def load_eval_model(
    peft_model: str | Path | None = None,
    *,
    no_adapter: bool = False,
    model_name_or_path: str | None = None,
    load_in_4bit: bool | None = None,
):
    """Load what is being evaluated, through :func:`coalqa.ask.load_model`.

    * ``peft_model`` alone: the fine-tuned model (base, prompt format and 4-bit as it was trained).
    * ``peft_model`` + ``no_adapter``: that adapter's base model *without* the adapter, prompted with
      the adapter's own prompt format and precision — the fair "before fine-tuning" run.
    * ``no_adapter`` + ``model_name_or_path``: a base model with the default prompt format.

    Returns:
        ``coalqa.ask.LoadedModel``.

    Raises:
        CoalqaError: neither an adapter nor a base model was given, or loading fails.
    """
    from coalqa.ask import load_model

    if peft_model is None and not no_adapter:
        raise CoalqaError("nothing to evaluate: pass --peft_model DIR, --no-adapter (with --model_name_or_path), or --predictions FILE")
    if not no_adapter:
        return load_model(peft_model, model_name_or_path=model_name_or_path, load_in_4bit=load_in_4bit)
    if peft_model is None:
        if not model_name_or_path:
            raise CoalqaError("--no-adapter needs --model_name_or_path (or --peft_model DIR to use that adapter's base)")
        return load_model(None, model_name_or_path=model_name_or_path, load_in_4bit=load_in_4bit)
    trained = adapter_train_config(peft_model)
    fmt = PromptFormat.model_validate({k: trained[k] for k in PromptFormat.model_fields if k in trained})
    base = model_name_or_path or trained.get("model_name_or_path")
    if not base:
        raise CoalqaError(f"{peft_model}/train_config.yaml names no model_name_or_path; pass --model_name_or_path")
    four_bit = load_in_4bit if load_in_4bit is not None else bool(trained.get("use_4bit", False))
    loaded = load_model(None, model_name_or_path=base, load_in_4bit=four_bit)
    return dataclasses.replace(loaded, fmt=fmt)


def generate_predictions(
    references: list[dict[str, Any]], loaded, config: EvalConfig, *, progress: bool = True
) -> list[dict[str, Any]]:
    """Answer every reference question with ``loaded`` through :func:`coalqa.ask.answer`.

    Returns:
        the ask results (``question``, ``answer``, ``reasoning``, ``tokens``, ``seconds``,
        ``finished_reasoning``) with each reference's ``id`` added — the ``--predictions`` format.
    """
    from coalqa.ask import AskConfig, answer

    ask_config = AskConfig(
        temperature=config.temperature, max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size, seed=config.seed,
    )
    results = answer(loaded, [r["question"] for r in references], ask_config, progress=progress)
    return [{"id": ref["id"], **res} for ref, res in zip(references, results, strict=True)]


def evaluate(
    references: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    config: EvalConfig | None = None,
    *,
    label: str = "run",
    source: str = "predictions",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` against ``references`` (optionally with the LLM judge) into a report dict.

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
    if config.judge:
        from coalqa.eval.judge import judge_items

        judge_items(items, config)
        meta["judge"] = {"provider": config.judge_provider, "model": config.judge_model}
    return build_report(items, label=label, tokenization=config.tokenization, **meta)
