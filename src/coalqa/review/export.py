"""What a review produces: the reviewed training file, an evaluation reference set, and notes for ``coalqa train``.

* :func:`export_training`: approved and edited pairs (edits applied), minus every pair of a chunk set aside for
  evaluation, each with its ``review`` provenance (pair id, decision, reviewer, time, the log's SHA-256, the original
  text of an edited pair); a ``<out>.summary.json`` beside it names the chunks file (so ``coalqa train`` records it)
  and the counts.
* :func:`export_eval`: approved/edited pairs of chosen documents or chunks (with feedback only: every confirmed
  correction) as a ``coalqa eval`` reference set (JSON
  Lines: ``id``, ``question``, ``reference_answer``, ``key_facts`` — the answer's quantities with a unit that its
  clause states inside a sentence, as written in the answer (:func:`clause_support`: never bare, clause, section,
  list or heading numbers) —, ``source_doc``, ``source_locator``, ``source_span`` — the clause sentence(s) stating
  them, verbatim); a pair without such a quantity is left out and counted; the chosen chunks are recorded in the
  review log as set aside, so training exports leave them out.
* :func:`review_provenance` / :func:`training_note`: what ``coalqa train`` writes into its run card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256, write_json_atomic, write_text_atomic
from coalqa.numbers import quantity_spans, same_quantity, unsupported_quantities
from coalqa.review.log import APP, ReviewLog, log_path_for, now_iso
from coalqa.review.pairs import SENTENCE, ReviewSet


def _log_sha(rs: ReviewSet) -> str | None:
    return file_sha256(rs.log.path) if rs.log.path.is_file() else None


def reviewed_rows(rs: ReviewSet, exclude_unsupported: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The approved/edited pairs as training rows, and counts ``{"approved", "edited", "set_aside", "left",
    "unsupported", "excluded_unsupported"}`` plus ``"unsupported_pairs"``: ``[{"pair_id", "locator", "numbers"}]`` of
    the pairs whose answer (as reviewed) states quantities its clause does not
    (:func:`coalqa.numbers.unsupported_quantities`; an edit the reviewer confirmed so, or an approved flagged pair).
    Such rows carry ``review["unsupported"]``; ``exclude_unsupported`` leaves them out instead (counted)."""
    rows: list[dict[str, Any]] = []
    counts: dict[str, Any] = {"approved": 0, "edited": 0, "set_aside": 0, "left": 0, "unsupported": 0,
                              "excluded_unsupported": 0, "unsupported_pairs": []}
    log_sha = _log_sha(rs)
    for p in rs.pairs:
        status, rec = rs.state(p)
        if status not in ("approved", "edited"):
            counts["left"] += 1
            continue
        if p.chunk_id in rs.log.set_aside:
            counts["set_aside"] += 1
            continue
        question, answer = rs.current_text(p, rec)
        chunk = rs.chunks.get(p.chunk_id) or {}
        unsupported = ([q.text for q in unsupported_quantities(answer, [chunk["text"]])] if chunk else [])
        if unsupported:
            counts["unsupported_pairs"].append({"pair_id": p.id, "doc": p.doc, "locator": p.locator,
                                                "numbers": unsupported})
            if exclude_unsupported:
                counts["excluded_unsupported"] += 1
                continue
            counts["unsupported"] += 1
        counts[status] += 1
        review = {"pair_id": p.id, "decision": status, "reviewer": rec.get("reviewer"), "time": rec.get("time"),
                  "log": str(rs.log.path), "log_sha256": log_sha, "origin": p.origin}
        if status == "edited":
            review["original"] = {"input": p.question, "output": p.answer}
        if unsupported:
            review["unsupported"] = unsupported
        rows.append({"input": question, "output": answer, "chunk_id": p.chunk_id or None,
                     "chunk_sha": chunk.get("sha"), "source": p.doc, "locator": p.locator, "review": review})
    return rows, counts


def export_training(rs: ReviewSet, out: Path, exclude_unsupported: bool = False) -> dict[str, Any]:
    """Write the reviewed training file ``out`` (a JSON list, ``coalqa train --data`` reads it) and its summary.

    Returns the counts of :func:`reviewed_rows`. Raises CoalqaError when no pair is approved yet.
    """
    rows, counts = reviewed_rows(rs, exclude_unsupported)
    if not rows:
        excluded = counts["excluded_unsupported"]
        raise CoalqaError(f"no approved or edited pairs to export yet ({counts['set_aside']} set aside for eval"
                          f"{f', {excluded} left out for unsupported numbers' if excluded else ''}): "
                          f"review them first with `coalqa review {rs.qa_path} --chunks {rs.chunks_path}`")
    write_json_atomic(out, rows)
    stem = out.with_suffix("") if out.suffix == ".json" else out
    summary_counts = {k: v for k, v in counts.items() if k != "unsupported_pairs"}
    write_json_atomic(Path(f"{stem}.summary.json"), {
        "chunks_file": {"path": str(Path(rs.chunks_path).resolve()), "sha256": file_sha256(rs.chunks_path)},
        "review": {"qa_file": str(rs.qa_path), "log": str(rs.log.path), "log_sha256": _log_sha(rs), **summary_counts,
                   "unsupported_pairs": counts["unsupported_pairs"], "reviewers": rs.log.reviewers(), "app": APP,
                   "time": now_iso()},
    })
    return counts


def _in_running_text(text: str, start: int) -> bool:
    """Is the quantity at ``start`` of ``text`` inside a sentence, rather than opening a line (where a heading or list
    number stands)? Line breaks are real ones or the literal ``\\n`` some sources hold."""
    line = text[:start].replace("\\n", "\n").rsplit("\n", 1)[-1]
    return line.strip(" \t\u3000") != ""


def clause_support(answer: str, clause: str) -> list[tuple[str, int, int]]:
    """The key facts of ``answer`` and where ``clause`` states them: ``[(fact, start, end)]``, ``start:end`` the
    clause's quantity span that supports the fact (stated twice: the one in the sentence sharing most character
    bigrams with the answer), facts in answer order, each once.

    A key fact is a quantity of the answer (:func:`coalqa.numbers.quantity_spans`, as written in the answer) that

    * has a unit or measure word for every number it holds (``11h``, ``10m～15m``, ``3次``, ``40%``): a bare number
      is a clause, section, list or standard number far more often than a fact (``1``, ``3.1``), so it never counts;
    * is stated by the clause, with a unit too (:func:`coalqa.numbers.same_quantity`, ``11小时`` = ``11h``; a bare
      ``1`` in the clause does not support ``1日``), *inside a sentence*: an
      occurrence that opens a line is a heading or list number (``3.3瓦斯抽放`` reads as 3.3 W, ``3.12排放`` as 3.12
      排) and supports nothing.
    """
    clause_spans = [(s, e, qs) for s, e, qs in quantity_spans(clause) if _in_running_text(clause, s)]
    # where the clause states a fact twice, the occurrence in the sentence most like the answer supports it
    grams = {answer[i:i + 2] for i in range(len(answer) - 1)}
    share = {}
    for m in SENTENCE.finditer(clause):
        own = {m.group(0)[i:i + 2] for i in range(len(m.group(0)) - 1)}
        share[m.start(), m.end()] = len(own & grams) / max(len(own), 1)

    def likeness(start: int) -> float:
        return next((v for (a, b), v in share.items() if a <= start < b), 0.0)

    clause_spans.sort(key=lambda span: -likeness(span[0]))
    out: list[tuple[str, int, int]] = []
    for s, e, qs in quantity_spans(answer):
        text = answer[s:e]
        if any(not q.unit for q in qs) or any(text == f for f, _, _ in out):
            continue
        for cs, ce, cqs in clause_spans:
            if all(any(p.unit and same_quantity(q, p) for p in cqs) for q in qs):
                out.append((text, cs, ce))
                break
    return out


def key_facts(answer: str, clause: str) -> list[str]:
    """The key facts of ``answer`` that ``clause`` states (rules: :func:`clause_support`), as written in the answer."""
    return [f for f, _, _ in clause_support(answer, clause)]


def source_span(answer: str, clause: str) -> str | None:
    """The clause sentence(s) that state the answer's key facts: the verbatim stretch of ``clause`` from the first
    sentence holding one to the last (sentences end at 。；！？ or a line break); ``None`` when there is no key fact."""
    support = clause_support(answer, clause)
    if not support:
        return None
    sentences = [(m.start(), m.end()) for m in SENTENCE.finditer(clause)]
    held = [(a, b) for a, b in sentences if any(a <= s < b for _, s, _ in support)]
    start, end = min(a for a, _ in held), max(b for _, b in held)
    return clause[start:end].strip().removesuffix("\\n").strip()


def export_eval(rs: ReviewSet, out: Path, *, docs: list[str], chunk_ids: list[str], reviewer: str) -> dict[str, Any]:
    """Write the approved/edited pairs of the chunks chosen (by document name or chunk id) as an eval reference set
    (JSON Lines) and record those chunks as set aside in the review log.

    A pair whose answer states no key fact its clause supports (:func:`clause_support`: no quantity with a unit, only
    clause or heading numbers) is left out: an eval item without key facts cannot measure the numbers a safety answer
    must get right. So is a pair whose answer states a number its clause does not (an edit confirmed against the
    clause, :func:`coalqa.numbers.unsupported_quantities`): a reference answer must agree with the clause it cites.
    Their chunks are still set aside (training never sees the clauses chosen for evaluation).

    Returns ``{"references": n written, "no_key_facts": [pair ids left out], "unsupported": [{"pair_id", "locator",
    "numbers"}] left out, "chunks": set-aside chunk count}``.

    Raises:
        CoalqaError: nothing chosen, a document or chunk id not in the set, or no approved pair among them.
    """
    if not docs and not chunk_ids and rs.qa_path is not None:
        raise CoalqaError("--as_eval needs --doc NAME or --chunk ID (which clauses to keep out of training)")
    known_docs = {p.doc for p in rs.pairs}
    for d in docs:
        if d not in known_docs:
            raise CoalqaError(f"--doc {d!r}: no pair comes from that document; documents: {', '.join(sorted(known_docs))}")
    for c in chunk_ids:
        if c not in rs.chunks:
            raise CoalqaError(f"--chunk {c!r} is not in {rs.chunks_path}")
    chosen = {c for c in chunk_ids} | {p.chunk_id for p in rs.pairs if p.doc in docs and p.chunk_id}
    if not docs and not chunk_ids:  # feedback only: the clauses of the confirmed corrections
        chosen = {p.chunk_id for p in rs.pairs if p.chunk_id in rs.chunks}
    refs, no_facts, unsupported, decided = [], [], [], set()
    for p in rs.pairs:
        status, rec = rs.state(p)
        if p.chunk_id not in chosen or p.chunk_id not in rs.chunks or status not in ("approved", "edited"):
            continue
        decided.add(p.chunk_id)
        chunk = rs.chunks[p.chunk_id]
        question, answer = rs.current_text(p, rec)
        wrong = [q.text for q in unsupported_quantities(answer, [chunk["text"]])]
        if wrong:
            unsupported.append({"pair_id": p.id, "locator": p.locator, "numbers": wrong})
            continue
        facts = key_facts(answer, chunk["text"])
        if not facts:
            no_facts.append(p.id)
            continue
        refs.append({"id": f"review-{p.id}", "question": question, "reference_answer": answer,
                     "key_facts": facts, "source_doc": chunk["source"],
                     "source_locator": chunk["locator"], "source_span": source_span(answer, chunk["text"]), "chunk_id": p.chunk_id,
                     "review": {"pair_id": p.id, "decision": status, "reviewer": rec.get("reviewer")}})
    if not refs:
        raise CoalqaError(f"no approved or edited pairs with a key fact among the {len(chosen)} chunk(s) chosen "
                          f"({len(no_facts)} approved pair(s) state no quantity their clause supports, "
                          f"{len(unsupported)} state numbers their clause does not)")
    write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in refs))
    used = decided
    rs.log.append(lambda log: [{"type": "set_aside", "chunk_id": c, "chunk_sha": rs.chunks[c]["sha"],
                                "output": str(out), "reviewer": reviewer, "time": now_iso(), "app": APP}
                               for c in sorted(used) if c not in log.set_aside])
    return {"references": len(refs), "no_key_facts": no_facts, "unsupported": unsupported, "chunks": len(used)}


def review_provenance(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a training run records about review: ``{"pairs", "approved", "edited", "reviewers", "logs":
    [{"path", "sha256"}]}`` from the rows' ``review`` fields (written by :func:`export_training`); ``None`` when no row
    was reviewed."""
    reviewed = [r["review"] for r in rows if isinstance(r.get("review"), dict)]
    if not reviewed:
        return None
    logs = {(str(r.get("log")), str(r.get("log_sha256"))) for r in reviewed}
    return {"pairs": len(reviewed), "of": len(rows),
            "approved": sum(r.get("decision") == "approved" for r in reviewed),
            "edited": sum(r.get("decision") == "edited" for r in reviewed),
            "reviewers": sorted({str(r.get("reviewer")) for r in reviewed}),
            "logs": [{"path": p, "sha256": s} for p, s in sorted(logs)]}


def training_note(data_path: str | Path, rows: list[dict[str, Any]]) -> str | None:
    """A warning when ``data_path`` has a review log beside it and some of its pairs are unreviewed, rejected or
    stale; ``None`` when there is no log or every pair is approved.

    Staleness is judged against the chunks file named in the QA file's ``*.summary.json`` (``coalqa generate``
    writes it), else against each row's own ``chunk_sha``.
    """
    from coalqa.review.pairs import pair_id

    log_path = log_path_for(data_path)
    if not log_path.is_file():
        return None
    log = ReviewLog.open(log_path)
    current: dict[str, str] = {}
    data_path = Path(data_path)
    stem = data_path.with_suffix("") if data_path.suffix == ".json" else data_path
    summary = Path(f"{stem}.summary.json")
    try:
        chunks_file = json.loads(summary.read_text(encoding="utf-8")).get("chunks_file") if summary.is_file() else None
        if chunks_file and Path(chunks_file["path"]).is_file():
            from coalqa.corpus import read_chunks

            current = {c.id: c.sha for c in read_chunks(chunks_file["path"])}
    except (OSError, ValueError, KeyError, TypeError, CoalqaError):
        current = {}
    counts = {"unreviewed": 0, "rejected": 0, "stale": 0}
    for row in rows:
        cid = str(row.get("chunk_id") or "")
        rec = log.latest(pair_id(cid, row["input"], row["output"]))
        if rec is None or rec.get("decision") == "skip":
            counts["unreviewed"] += 1
        elif cid and rec.get("chunk_sha") != current.get(cid, row.get("chunk_sha")):
            counts["stale"] += 1
        elif rec.get("decision") == "reject":
            counts["rejected"] += 1
    if not any(counts.values()):
        return None
    return (f"{data_path} has a review log ({log_path}): {counts['unreviewed']} of {len(rows)} pairs unreviewed, "
            f"{counts['stale']} stale (their clause changed since review), {counts['rejected']} rejected — and all "
            f"are trained on here; train on the reviewed pairs instead: coalqa review export {data_path} --chunks "
            f"CHUNKS.jsonl -o reviewed.json")

