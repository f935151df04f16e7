"""Matching eval references to the text they quote: which chunk holds an item's ``source_span``, whether a training
answer overlaps those spans, and training pairs turned into references (the demo's recitation check).

Text is compared after :func:`coalqa.eval.metrics.normalize` (NFKC, no whitespace), as key facts are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coalqa.eval.metrics import normalize


def locate_sources(references: list[dict[str, Any]], chunks: list[dict[str, Any]]) -> dict[str, int]:
    """Eval item id → index of the chunk holding its ``source_span`` (same ``source_doc``); missing if none."""
    by_doc: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        by_doc.setdefault(c.get("source", ""), []).append(i)
    found = {}
    for ref in references:
        span = normalize(ref.get("source_span") or "")
        if not span:
            continue
        for i in by_doc.get(ref.get("source_doc", ""), []):
            if span in normalize(chunks[i]["text"]):
                found[ref["id"]] = i
                break
    return found


def overlaps_span(output: str, chunk_text: str, spans: list[str]) -> bool:
    """Whether a clause answer overlaps one of the eval spans (normalised) in that chunk.

    The answer's pieces (a fact answer joins a list's lead sentence and the item with ``：``) are located
    in the chunk text; a piece found nowhere is ignored, an answer with no piece found is kept.
    """
    text = normalize(chunk_text)
    found = False
    for piece in normalize(output).rstrip("。").split(":"):
        start = text.find(piece)
        if not piece or start < 0:
            continue
        found = True
        for span in spans:
            s = text.find(span)
            if s >= 0 and s < start + len(piece) and start < s + len(span):
                return True
    return not found


def seen_references(qa_path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` training QA pairs with distinct answers, as eval references (ids ``seen-01``…).

    Returns:
        dicts with ``id``, ``question`` (the training input), ``reference_answer`` (the training output)
        and ``key_facts``: the numbers the training answer states (:func:`coalqa.generate.clause.quantities`),
        so that the check asks "did it learn the numbers?", not only "did it learn the wording?".
    """
    from coalqa.generate.clause import quantities

    rows, answers = [], set()
    for row in json.loads(qa_path.read_text(encoding="utf-8")):
        if row["output"] not in answers and len(rows) < n:
            answers.add(row["output"])
            rows.append({"id": f"seen-{len(rows) + 1:02d}", "question": row["input"],
                         "reference_answer": row["output"], "key_facts": quantities(row["output"])})
    return rows
