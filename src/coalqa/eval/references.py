"""Matching eval references to the text they quote: which chunk holds an item's ``source_span``, whether a training
answer overlaps those spans, and training pairs turned into references (the demo's recitation check).

Text is compared after :func:`coalqa.eval.metrics.normalize_for_matching` (NFKC, no whitespace), as key facts are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.eval.metrics import normalize_for_matching


def documents_holding(docs: Path, references: list[dict[str, Any]], max_docs: int | None,
                      references_file: Path) -> list[Path]:
    """``[docs]`` when ``max_docs`` is ``None``, else the ``max_docs`` smallest files under ``docs`` that are the
    ``source_doc`` of an item of ``references`` (ties by name).

    Raises:
        CoalqaError: ``docs`` does not exist, or none of its files is a ``source_doc`` of ``references_file``.
    """
    from coalqa.corpus.readers import iter_files

    if not docs.exists():
        raise CoalqaError(f"documents not found: {docs} (pass --docs DIR with your regulations)")
    files, _ = iter_files([docs])
    if max_docs is None:
        return [docs]
    wanted = {r.get("source_doc") for r in references}
    holding = sorted((f for f in files if f.name in wanted), key=lambda f: (f.stat().st_size, f.name))
    if not holding:
        raise CoalqaError(f"none of the documents in {docs} is the source_doc of an item in {references_file}")
    return holding[:max_docs]


def locate_sources(references: list[dict[str, Any]], chunks: list[dict[str, Any]]) -> dict[str, int]:
    """Eval item id → index of the chunk holding its ``source_span`` (same ``source_doc``); missing if none."""
    by_doc: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        by_doc.setdefault(c.get("source", ""), []).append(i)
    found = {}
    for ref in references:
        span = normalize_for_matching(ref.get("source_span") or "")
        if not span:
            continue
        for i in by_doc.get(ref.get("source_doc", ""), []):
            if span in normalize_for_matching(chunks[i]["text"]):
                found[ref["id"]] = i
                break
    return found


def training_subset(chunks: list[dict[str, Any]], references: list[dict[str, Any]], sources: dict[str, int],
                    holdout_every: int, neighbours: int) -> tuple[list[dict], list[int], dict[str, list[str]]]:
    """Split the located ``references`` (``sources``: :func:`locate_sources`) into trained and held-out items.

    Returns:
        ``(trained items, sorted indices of the chunks to train on, chunk id → normalised eval spans it holds)``: every
        item but each ``holdout_every``-th is trained, on its source chunk and ``neighbours`` chunks either side (same
        document); the indices are empty when no item was located.
    """
    trained = [r for k, r in enumerate(references) if r["id"] in sources and k % holdout_every != holdout_every - 1]
    picked: set[int] = set()
    spans: dict[str, list[str]] = {}
    for ref in trained:
        i = sources[ref["id"]]
        spans.setdefault(chunks[i]["id"], []).append(normalize_for_matching(ref["source_span"]))
        for j in range(i - neighbours, i + neighbours + 1):
            if 0 <= j < len(chunks) and chunks[j].get("source") == chunks[i].get("source"):
                picked.add(j)
    return trained, sorted(picked), spans


def overlaps_span(output: str, chunk_text: str, spans: list[str]) -> bool:
    """Whether a clause answer overlaps one of the eval spans (normalised) in that chunk.

    The answer's pieces (a fact answer joins a list's lead sentence and the item with ``：``) are located
    in the chunk text; a piece found nowhere is ignored, an answer with no piece found is kept.
    """
    text = normalize_for_matching(chunk_text)
    found = False
    for piece in normalize_for_matching(output).rstrip("。").split(":"):
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
