"""Grounding scores for ``coalqa eval --index``: retrieval recall@k and MRR, citation accuracy, unsupported numbers.

A chunk is a **source** of a reference when it comes from the reference's ``source_doc`` (file name) and holds its
``source_span`` (both NFKC-normalised, casefolded, whitespace removed). For each reference with both fields:

* ``retrieval_rank`` — rank of the first source chunk among the index's top 10 for the question (``None``: not
  there); recall@k = share of references ranked ≤ k; MRR = mean of 1/rank (0 when not found). This **strict** hit
  is what citation accuracy needs;
* ``support_rank`` — the same for the first **supporting** chunk, from any document (:func:`supports`): the
  regulations repeat rules (规程 and 规范, two editions of one standard), and a chunk of another regulation that
  states the same rule supports the answer as well, though citing it is not citing the reference's source;
* ``citation_correct`` — the answer's citations include a source chunk (an abstention cites nothing: wrong); needs
  the index (``--index``) to read the cited clauses, else ``None``;
* ``unsupported_numbers`` — numbers in the answer that no cited clause states (from the prediction, made by
  :func:`coalqa.grounding.answer_grounded`); the unsupported-number rate is the share of answered items
  (abstentions left out) with at least one;
* ``evidence_key_fact_recall`` — key facts found in the quoted evidence, reported apart from the answer's own
  key-fact recall (evidence is shown beside the answer, never counted as the answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.eval.metrics import find_key_facts, normalize_for_matching

if TYPE_CHECKING:
    from coalqa.retrieval.index import Index

RECALL_AT = (1, 3, 5, 10)
SUPPORT_OVERLAP = 0.5  # share of the source span's character bigrams a key-fact-holding chunk must also hold
SUPPORT_NOTE = (
    "a chunk from any document supports a reference when it holds the reference's source_span (both in the number "
    "check's canonical form, coalqa.numbers.canonical_text, punctuation dropped) or states every key fact and holds "
    f"at least {SUPPORT_OVERLAP:.0%} of the span's character bigrams (the same rule in other words)"
)


def is_source(chunk: dict, ref: dict) -> bool:
    """Whether ``chunk`` (``source``, ``text``) is a source chunk of reference ``ref`` (``source_doc``, ``source_span``)."""
    span = normalize_for_matching(ref.get("source_span") or "")
    doc = ref.get("source_doc") or ""
    return bool(span and doc) and Path(chunk.get("source") or "").name == Path(doc).name and span in normalize_for_matching(chunk.get("text") or "")


def _canonical(text: str) -> str:
    import re

    from coalqa.numbers import canonical_text

    return re.sub(r"[^\w.%‰℃~/]+", "", canonical_text(text))


def supports(chunk: dict, ref: dict) -> bool:
    """Whether ``chunk`` (``text``), from any document, supports reference ``ref`` (``source_span``, ``key_facts``):
    it holds the span, or states every key fact in a passage about the same thing (see :data:`SUPPORT_NOTE`).

    The bigram overlap keeps out chunks that merely share the numbers: a key fact ``11h`` alone is found in many
    clauses; one that also holds half the span's wording states the same rule.
    """
    span = _canonical(ref.get("source_span") or "")
    text = _canonical(chunk.get("text") or "")
    if span and span in text:
        return True
    facts = [f for f in ref.get("key_facts") or [] if normalize_for_matching(f)]
    if not facts or not span:
        return False
    _, missed = find_key_facts(chunk.get("text") or "", facts)
    if missed:
        return False
    grams = {span[i:i + 2] for i in range(len(span) - 1)}
    return bool(grams) and sum(g in text for g in grams) / len(grams) >= SUPPORT_OVERLAP


def retrieval_ranks(index: Index, references: list[dict], k: int = 10) -> dict[str, int | None]:
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


def ranked_references(index, references: list[dict], k: int = 10) -> list[dict]:
    """For each reference with ``source_doc`` and ``source_span``: ``{"id", "question", "source_doc",
    "source_locator", "rank", "support_rank", "hits"}`` — the strict and the support rank (1-based, ``None`` when
    not in the top ``k``) and the top ``k`` hits (``rank chunk_id source title locator score``)."""
    items = []
    for ref in references:
        if not (ref.get("source_doc") and ref.get("source_span")):
            continue
        hits = index.search(ref["question"], k)
        items.append({"id": ref["id"], "question": ref["question"], "source_doc": ref["source_doc"],
                      "source_locator": ref.get("source_locator"),
                      "rank": next((h["rank"] for h in hits if is_source(h, ref)), None),
                      "support_rank": next((h["rank"] for h in hits if supports(h, ref)), None),
                      "hits": [{k: h[k] for k in ("rank", "chunk_id", "source", "title", "locator", "score")} for h in hits]})
    return items


def misses_table(items: list[dict]) -> list[str]:
    """Markdown rows (header included) of the items whose source chunk is not ranked first, with their top hit."""
    lines = ["| id | strict rank | support rank | source | top hit |", "|---|---:|---:|---|---|"]
    for i in items:
        if i["rank"] == 1:
            continue
        top = i["hits"][0] if i["hits"] else None
        lines.append(f"| {i['id']} | {i['rank'] or '–'} | {i['support_rank'] or '–'} | {i['source_doc']} "
                     f"{i['source_locator'] or ''} | " + (f"{top['source']} {top['locator']}" if top else "–") + " |")
    return lines


def retrieval_summary(ranks: dict[str, int | None]) -> dict[str, Any]:
    """``{"n", "recall@1", "recall@3", "recall@5", "recall@10", "mrr"}`` of :func:`retrieval_ranks`' output."""
    n = len(ranks)
    out: dict[str, Any] = {"n": n}
    for k in RECALL_AT:
        out[f"recall@{k}"] = sum(1 for r in ranks.values() if r is not None and r <= k) / n if n else None
    out["mrr"] = sum(1 / r for r in ranks.values() if r) / n if n else None
    return out


def grounding_fields(item: dict, prediction: dict, index: Index) -> dict[str, Any]:
    """Per-item grounding fields for the report (see the module docstring)."""
    citations = prediction.get("citations") or []
    # judging a citation needs the cited clause's text, which only the index holds (citations carry ids and locators)
    judgeable = index is not None and bool(item.get("source_doc") and item.get("source_span"))
    cited = [c for c in (index.chunk(x.get("chunk_id")) for x in citations) if c is not None] if judgeable else []
    evidence_text = "\n".join(e.get("text", "") for e in prediction.get("evidence") or [])
    found, missed = find_key_facts(evidence_text, item.get("key_facts") or [])
    return {
        "abstained": bool(prediction.get("abstained")),
        "citations": citations,
        "evidence": prediction.get("evidence") or [],
        "unsupported_numbers": prediction.get("unsupported_numbers") or [],
        "citation_correct": any(is_source(c, item) for c in cited) if judgeable else None,
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


def write_retrieval_report(references: list[dict], index: Index, stem: str | Path, **meta: Any) -> tuple[Path, Path, dict]:
    """Score retrieval alone (``coalqa eval --index DIR --retrieval_only -o STEM``): write ``STEM.json`` (summary and,
    per reference, the rank of its source chunk and the top 10 hits) and ``STEM.md``; returns both paths and the summary.
    """
    import time

    from coalqa.jsonio import write_json_atomic, write_text_atomic

    stem = Path(stem)
    if stem.suffix in (".json", ".md"):
        stem = stem.with_suffix("")
    items = ranked_references(index, references, 10)
    summary = retrieval_summary({i["id"]: i["rank"] for i in items})
    support = retrieval_summary({i["id"]: i["support_rank"] for i in items})
    report = {"coalqa_eval_retrieval": 2, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "index": str(index.path),
              "index_fingerprint": index.fingerprint, **meta, "retrieval": summary, "retrieval_support": support,
              "support_rule": SUPPORT_NOTE, "items": items}
    fmt = lambda v: "–" if v is None else f"{v:.3f}"
    lines = [f"# coalqa eval: retrieval over `{index.path}`", "",
             ("strict: a hit comes from the reference's source_doc and holds its source_span (citation accuracy); "
              f"support: {SUPPORT_NOTE}."), "",
             "| hit | n | " + " | ".join(k for k in summary if k != "n") + " |", "|---|---:|" + "---:|" * (len(summary) - 1)]
    for name, s in (("strict", summary), ("support", support)):
        lines.append(f"| {name} | {s['n']} | " + " | ".join(fmt(v) for k, v in s.items() if k != "n") + " |")
    lines += ["", "Questions whose source chunk is not ranked first:", "", *misses_table(items)]
    md_path, json_path = Path(f"{stem}.md"), Path(f"{stem}.json")
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    write_json_atomic(json_path, report)
    return json_path, md_path, summary
