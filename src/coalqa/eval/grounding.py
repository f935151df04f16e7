"""Grounding scores for ``coalqa eval --index``: retrieval recall@k and MRR, citation accuracy, unsupported numbers.

A chunk is a **source** of a reference when it comes from the reference's ``source_doc`` (file name) and holds its
``source_span`` (both NFKC-normalised, casefolded, whitespace removed). For each reference with both fields:

* ``retrieval_rank`` — rank of the first source chunk among the index's top 10 for the question (``None``: not
  there); recall@k = share of references ranked ≤ k; MRR = mean of 1/rank (0 when not found);
* ``citation_correct`` — the answer's citations include a source chunk (an abstention cites nothing: wrong);
* ``unsupported_numbers`` — numbers in the answer that no cited clause states (from the prediction, made by
  :func:`coalqa.ask.grounding.answer_grounded`); the unsupported-number rate is the share of answered items
  (abstentions left out) with at least one;
* ``evidence_key_fact_recall`` — key facts found in the quoted evidence, reported apart from the answer's own
  key-fact recall (evidence is shown beside the answer, never counted as the answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coalqa.eval.metrics import find_key_facts, normalize

RECALL_AT = (1, 3, 5, 10)


def is_source(chunk: dict, ref: dict) -> bool:
    """Whether ``chunk`` (``source``, ``text``) is a source chunk of reference ``ref`` (``source_doc``, ``source_span``)."""
    span = normalize(ref.get("source_span") or "")
    doc = ref.get("source_doc") or ""
    return bool(span and doc) and Path(chunk.get("source") or "").name == Path(doc).name and span in normalize(chunk.get("text") or "")


def retrieval_ranks(index, references: list[dict], k: int = 10) -> dict[str, int | None]:
    """Reference id → rank (1-based) of its first source chunk in ``index``'s top ``k`` for its question, or ``None``.

    References without ``source_doc``/``source_span`` are left out.
    """
    ranks: dict[str, int | None] = {}
    for ref in references:
        if not (ref.get("source_doc") and ref.get("source_span")):
            continue
        hits = index.search(ref["question"], k)
        ranks[ref["id"]] = next((h["rank"] for h in hits if is_source(h, ref)), None)
    return ranks


def retrieval_summary(ranks: dict[str, int | None]) -> dict[str, Any]:
    """``{"n", "recall@1", "recall@3", "recall@5", "recall@10", "mrr"}`` of :func:`retrieval_ranks`' output."""
    n = len(ranks)
    out: dict[str, Any] = {"n": n}
    for k in RECALL_AT:
        out[f"recall@{k}"] = sum(1 for r in ranks.values() if r is not None and r <= k) / n if n else None
    out["mrr"] = sum(1 / r for r in ranks.values() if r) / n if n else None
    return out


def grounding_fields(item: dict, prediction: dict, index) -> dict[str, Any]:
    """Per-item grounding fields for the report (see the module docstring)."""
    citations = prediction.get("citations") or []
    by_id = {c["id"]: c for c in index.chunks} if index is not None else {}
    has_source = bool(item.get("source_doc") and item.get("source_span"))
    cited = [by_id.get(c.get("chunk_id")) or c for c in citations]
    evidence_text = "\n".join(e.get("text", "") for e in prediction.get("evidence") or [])
    found, missed = find_key_facts(evidence_text, item.get("key_facts") or [])
    return {
        "abstained": bool(prediction.get("abstained")),
        "citations": citations,
        "evidence": prediction.get("evidence") or [],
        "unsupported_numbers": prediction.get("unsupported_numbers") or [],
        "citation_correct": any(is_source(c, item) for c in cited if "text" in c) if has_source else None,
        "evidence_key_fact_recall": len(found) / (len(found) + len(missed)) if found or missed else None,
    }


def grounding_summary(items: list[dict], ranks: dict[str, int | None] | None) -> dict[str, Any]:
    """Averages of the grounding fields over ``items`` (+ retrieval recall@k/MRR over their ids when ``ranks``)."""
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    answered = [i for i in items if "abstained" in i and not i["abstained"]]
    judged = [i for i in items if i.get("citation_correct") is not None]
    out: dict[str, Any] = {}
    if ranks is not None:
        out |= {"retrieval": retrieval_summary({i["id"]: ranks[i["id"]] for i in items if i["id"] in ranks})}
    if any("abstained" in i for i in items):
        out |= {
            "citation_accuracy": mean([float(i["citation_correct"]) for i in judged]),
            "unsupported_number_rate": mean([float(bool(i["unsupported_numbers"])) for i in answered]),
            "abstained": sum(1 for i in items if i.get("abstained")),
            "evidence_key_fact_recall": mean([i["evidence_key_fact_recall"] for i in items
                                              if i.get("evidence_key_fact_recall") is not None]),
        }
    return out
