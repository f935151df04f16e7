"""Reading references and predictions, and pairing them up.

References (the questions with their expected answers) come in two formats:

* JSON Lines, one object per line, as ``../shared/eval/dev.jsonl``: ``id``, ``question``,
  ``reference_answer``, ``key_facts`` (strings the answer must contain), ``source_doc``,
  ``source_locator`` (+ anything else, carried through);
* a QA file in the ``QAdata_all.json`` format (a JSON list of ``{"input", "output", ...}``), e.g. a
  held-out split; its items get ids ``qa-0001``… and no key facts.

Predictions are the output of ``coalqa ask --output_file``: a JSON list (or JSON lines) of objects
with ``question``, ``answer``, optionally ``reasoning`` and ``id``. Only ``answer`` is scored; if it
still holds a ``</think>`` block, the text after it is the answer (:func:`coalqa.template.split_reasoning`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.eval.metrics import normalize_for_matching
from coalqa.jsonio import read_rows
from coalqa.template import THINK_CLOSE, split_reasoning


def load_references(path: str | Path) -> list[dict[str, Any]]:
    """Read references (see the module docstring) into uniform items.

    Returns:
        list of dicts with ``id``, ``question``, ``reference_answer``, ``key_facts`` (list, maybe
        empty) and every other field of the row (``source_doc``, ``source_locator``, ``group``…).

    Raises:
        CoalqaError: missing file, bad JSON, a row that is not an object or lacks its question /
            answer, a ``key_facts`` that is not a list of strings, duplicate ids (file and row named).
    """
    path = Path(path)
    items: list[dict[str, Any]] = []
    for n, (where, row) in enumerate(read_rows(path, "references"), 1):
        if not isinstance(row, dict):
            raise CoalqaError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "reference_answer" in row or "question" in row:
            question, answer = row.get("question"), row.get("reference_answer")
            item = dict(row)
            item.setdefault("id", f"line-{n}")
        elif "input" in row or "output" in row:  # QAdata_all.json format
            question, answer = row.get("input"), row.get("output")
            item = {k: v for k, v in row.items() if k not in ("input", "output")}
            item["id"] = str(row.get("id") or f"qa-{n:04d}")
        else:
            raise CoalqaError(
                f"{where}: expected keys question/reference_answer (eval set) or input/output (QA file), "
                f"got {', '.join(sorted(row)) or 'none'}"
            )
        if not isinstance(question, str) or not question.strip():
            raise CoalqaError(f"{where}: the question is missing or empty")
        if not isinstance(answer, str) or not answer.strip():
            raise CoalqaError(f"{where}: the reference answer is missing or empty")
        facts = row.get("key_facts") or []
        if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
            raise CoalqaError(f"{where}: key_facts must be a list of strings, got {facts!r}")
        item |= {"id": str(item["id"]), "question": question.strip(), "reference_answer": answer.strip(), "key_facts": facts}
        items.append(item)
    if not items:
        raise CoalqaError(f"{path}: no references in the file")
    seen: set[str] = set()
    dups = [i["id"] for i in items if i["id"] in seen or seen.add(i["id"])]  # type: ignore[func-returns-value]
    if dups:
        raise CoalqaError(f"{path}: duplicate id(s) {', '.join(sorted(set(dups)))}")
    return items


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``coalqa ask --output_file`` result (JSON list or JSON lines).

    Raises:
        CoalqaError: missing file, bad JSON, a row that is not an object or has no string ``answer``
            or neither ``id`` nor ``question`` to match it by.
    """
    path = Path(path)
    rows = []
    for where, row in read_rows(path, "predictions"):
        if not isinstance(row, dict):
            raise CoalqaError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if not isinstance(row.get("answer"), str):
            raise CoalqaError(f"{where}: expected a string 'answer' (the output of `coalqa ask --output_file`)")
        if row.get("id") is None and not isinstance(row.get("question"), str):
            raise CoalqaError(f"{where}: needs an 'id' or a 'question' to match it to a reference")
        rows.append(row)
    return rows


def answer_text(prediction: dict[str, Any]) -> tuple[str, str]:
    """``(answer, reasoning)`` of one prediction; reasoning never counts toward the scores."""
    answer, reasoning = prediction.get("answer") or "", prediction.get("reasoning") or ""
    if THINK_CLOSE in answer:
        more, answer, _ = split_reasoning(answer, opens_think=False)
        reasoning = "\n".join(r for r in (reasoning, more) if r)
    return answer.strip(), reasoning


def match_predictions(
    references: list[dict[str, Any]], predictions: list[dict[str, Any]], source: str = "predictions"
) -> list[dict[str, Any]]:
    """The prediction for each reference, in reference order: by ``id``, else by question text.

    Questions are compared after :func:`coalqa.eval.metrics.normalize_for_matching` (NFKC, no whitespace).

    Raises:
        CoalqaError: some references have no prediction (their ids are listed).
    """
    by_id = {str(p["id"]): p for p in predictions if p.get("id") is not None}
    by_question = {normalize_for_matching(p["question"]): p for p in predictions if isinstance(p.get("question"), str)}
    matched, missing = [], []
    for ref in references:
        pred = by_id.get(ref["id"]) or by_question.get(normalize_for_matching(ref["question"]))
        if pred is None:
            missing.append(ref["id"])
        matched.append(pred)
    if missing:
        shown = ", ".join(missing[:15]) + (f" … ({len(missing)} in all)" if len(missing) > 15 else "")
        raise CoalqaError(
            f"{source}: no prediction for reference(s) {shown}; predictions are matched by 'id', "
            "else by identical question text"
        )
    return matched
