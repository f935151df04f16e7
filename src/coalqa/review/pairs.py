"""The set under review: QA pairs with their clauses, automatic flags, and each pair's status from the review log.

A pair's id (:func:`pair_id`) is derived from what it was generated as — its chunk id, original question and
original answer — so it stays the same across runs, edits (stored in the log, never in the QA file) and re-chunking.

Status (:data:`STATUSES`) of a pair, from its decision in force (:meth:`coalqa.review.log.ReviewLog.latest`):
``pending`` (none, all undone, or ``skip``), ``approved``, ``edited`` (approved with a corrected question or answer),
``rejected``, or ``stale``: the decision rests on a clause whose content hash (``chunk_sha``) the current chunks file
no longer has (the regulation was changed or the chunk removed): it is back to be reviewed, with the old and the new
clause text shown side by side.

Flags (:data:`FLAGS`), computed when the set is loaded with the same checks ``coalqa generate`` applies:
``number`` (the answer states a quantity its clause does not: :func:`coalqa.numbers.unsupported_quantities`),
``language`` (answer and clause in different languages: :func:`coalqa.generate.validate.text_language`),
``duplicate`` (a near or exact duplicate of an earlier question: :func:`coalqa.generate.dedup.make_deduper`),
``no_clause`` (the pair names no chunk, or one the chunks file lacks), ``stale``, ``ocr_low`` (the clause was read by
OCR with a line under 0.9 confidence, or none recorded: :func:`low_ocr_confidence`; risky, sorted with unsupported
numbers), ``ocr`` (read by OCR with confidence ≥ 0.9: its text may still hold misread characters) and ``eval`` (its
chunk is set aside for evaluation).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coalqa.corpus import read_chunks
from coalqa.errors import CoalqaError
from coalqa.numbers import quantity_spans, same_quantity, unsupported_quantities
from coalqa.review.log import ReviewLog

STATUSES = ("pending", "approved", "edited", "rejected", "stale")
FLAGS = ("number", "language", "duplicate", "no_clause", "stale", "ocr_low", "ocr", "eval")
RISK = {"stale": 16, "number": 8, "no_clause": 8, "ocr_low": 8, "language": 4, "duplicate": 2, "ocr": 1}
REJECT_REASONS = ("数值错误", "责任主体错误", "问题误读条款", "答案不完整", "与条款无关", "重复", "其他")
SENTENCE = re.compile(r"[^。；;！!？?\n]+[。；;！!？?]?")


def pair_id(chunk_id: Any, question: str, answer: str) -> str:
    """Stable id of a QA pair: 16 hex digits of SHA-256 over its chunk id, original question and original answer."""
    payload = json.dumps([str(chunk_id or ""), question, answer], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Pair:
    """One QA pair under review (``question``/``answer`` as in the QA file; edits live in the review log)."""

    id: str
    row: int  # 1-based position in the QA file (feedback items: 0)
    question: str
    answer: str
    chunk_id: str
    doc: str
    locator: str
    origin: str = "qa"  # "qa" or "feedback"
    extra: dict = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    unsupported: list[str] = field(default_factory=list)


def read_chunk_table(path: str | Path) -> dict[str, dict]:
    """The chunks of a ``coalqa corpus`` chunks.jsonl by id: ``{id, source, title, locator, heading, text, sha, ocr,
    ocr_confidence}``.

    ``ocr`` is True for chunks read from scanned pages, ``ocr_confidence`` then the lowest recognition confidence
    (0–1) of its lines (``None`` otherwise, or when the file does not say). Raises what
    :func:`coalqa.corpus.read_chunks` raises.
    """
    return {c.id: {"id": c.id, "source": c.source, "title": c.title, "locator": c.locator, "heading": c.heading,
                   "text": c.text, "sha": c.sha, "ocr": bool(c.ocr),
                   "ocr_confidence": c.ocr_confidence if c.ocr else None} for c in read_chunks(path)}


def low_ocr_confidence(chunk: dict) -> bool:
    """Was ``chunk`` read by OCR with a line under :data:`coalqa.corpus.ocr.LOW_CONFIDENCE` (0.9, the threshold of
    the corpus fidelity report), or with no confidence recorded? Such clause text may hold misread numbers."""
    from coalqa.corpus.ocr import LOW_CONFIDENCE

    conf = chunk.get("ocr_confidence")
    return bool(chunk.get("ocr")) and (conf is None or conf < LOW_CONFIDENCE)


def support_sentences(answer: str, clause: str) -> list[tuple[int, int, float]]:
    """Sentences of ``clause`` that support ``answer``: ``[(start, end, score)]``, indices into ``clause``.

    A sentence supports the answer when at least half of its character bigrams occur in the answer, or a quarter of
    them and it states one of the answer's quantities. ``score`` is the bigram share (0–1, +0.5 for a shared quantity).
    """
    grams = {answer[i:i + 2] for i in range(len(answer) - 1)}
    answer_q = [q for _, _, qs in quantity_spans(answer) for q in qs]
    out = []
    for m in SENTENCE.finditer(clause):
        text = m.group(0).strip()
        if len(text) < 4:
            continue
        own = {text[i:i + 2] for i in range(len(text) - 1)}
        share = len(own & grams) / len(own)
        shared_q = any(same_quantity(a, b) for _, _, qs in quantity_spans(text) for b in qs for a in answer_q)
        if share >= 0.5 or (share >= 0.25 and shared_q):
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            out.append((start, start + len(text), round(share + (0.5 if shared_q else 0), 3)))
    return out


def number_marks(answer: str, clause: str | None) -> tuple[list[list], list[list]]:
    """Quantities to highlight: ``(answer_marks, clause_marks)``, each ``[[start, end, supported], ...]``.

    An answer quantity is ``supported`` when the clause states it (unit-aware, :func:`coalqa.numbers.same_quantity`);
    a clause quantity is marked ``supported`` when the answer states it too.
    """
    a_spans = quantity_spans(answer)
    c_spans = quantity_spans(clause) if clause else []
    c_q = [q for _, _, qs in c_spans for q in qs]
    a_q = [q for _, _, qs in a_spans for q in qs]
    a_marks = [[s, e, all(any(same_quantity(q, p) for p in c_q) for q in qs)] for s, e, qs in a_spans]
    c_marks = [[s, e, any(same_quantity(q, p) for q in qs for p in a_q)] for s, e, qs in c_spans]
    return a_marks, c_marks


class ReviewSet:
    """QA pairs (and feedback items) with their chunks and the review log; what the app and exports work from.

    Args:
        qa_path: the QA file (``coalqa generate`` output or any format ``coalqa train`` reads); ``None`` with
            feedback items only.
        chunks_path: the chunks.jsonl the pairs were generated from (or a re-chunked one: changed clauses go stale).
        log: the review log (:func:`coalqa.review.log.log_path_for` beside the QA file).
        feedback: feedback items (:func:`coalqa.review.feedback.feedback_pairs`), reviewed like pairs.
        flags: compute the automatic flags (:data:`FLAGS`; the near-duplicate check is most of the load time: ~19 s
            of ~20 s for 10,500 pairs on a shared 2-core machine). Only the page shows them: ``coalqa review status``
            and ``export`` pass ``False`` (statuses, counts and exports do not depend on flags).

    Raises:
        CoalqaError: unreadable QA or chunks file (file and row named).
    """

    def __init__(self, qa_path: Path | None, chunks_path: Path, log: ReviewLog, feedback: list[Pair] | None = None,
                 progress=None, flags: bool = True) -> None:
        from coalqa.train.data import read_qa_file

        self.qa_path, self.chunks_path, self.log = qa_path, chunks_path, log
        self.chunks = read_chunk_table(chunks_path)
        self.pairs: list[Pair] = []
        rows = read_qa_file(qa_path) if qa_path is not None else []
        seen: dict[str, int] = {}
        for n, row in enumerate(rows, 1):
            cid = str(row.get("chunk_id") or "")
            pid = pair_id(cid, row["input"], row["output"])
            if pid in seen:  # the same pair twice in the file: keep both, apart
                seen[pid] += 1
                pid = f"{pid}-{seen[pid]}"
            else:
                seen[pid] = 1
            chunk = self.chunks.get(cid)
            self.pairs.append(Pair(pid, n, row["input"], row["output"], cid,
                                   str(row.get("source") or (chunk or {}).get("source") or "（未注明来源）"),
                                   str(row.get("locator") or (chunk or {}).get("locator") or ""),
                                   extra={k: v for k, v in row.items() if k not in ("input", "output")}))
        self.pairs += feedback or []
        self.by_id = {p.id: p for p in self.pairs}
        self.flagged = flags
        if flags:
            self._flag(progress)

    def _flag(self, progress=None) -> None:
        from coalqa.generate.dedup import (
            make_deduper,  # here: datasketch (MinHash) alone takes ~1.7 s to import
        )
        from coalqa.generate.validate import text_language

        seen = make_deduper()
        for i, p in enumerate(self.pairs):
            chunk = self.chunks.get(p.chunk_id)
            if chunk is None:
                p.flags.add("no_clause")
            else:
                p.unsupported = [q.text for q in unsupported_quantities(p.answer, [chunk["text"]])]
                if p.unsupported:
                    p.flags.add("number")
                a, c = text_language(p.answer), text_language(chunk["text"])
                if a and c and a != c:
                    p.flags.add("language")
                if chunk["ocr"]:
                    p.flags.add("ocr_low" if low_ocr_confidence(chunk) else "ocr")
            if p.origin == "qa" and seen(p.question, p.answer):
                p.flags.add("duplicate")
            if progress and i % 500 == 0:
                progress(i, len(self.pairs))

    # status --------------------------------------------------------------------------------------------------------
    def state(self, p: Pair) -> tuple[str, dict | None]:
        """``(status, decision in force)`` of a pair (see the module docstring)."""
        rec = self.log.latest(p.id)
        if rec is None or rec.get("decision") == "skip":
            return "pending", rec
        chunk = self.chunks.get(p.chunk_id)
        if p.chunk_id and (chunk["sha"] if chunk else None) != rec.get("chunk_sha"):
            return "stale", rec  # its clause changed or went away since (decided without a clause: stays so)
        return {"approve": "approved", "edit": "edited", "reject": "rejected"}[rec["decision"]], rec

    def flags(self, p: Pair, status: str | None = None) -> list[str]:
        """The pair's flags now, in :data:`FLAGS` order (``stale`` and ``eval`` depend on the log).

        Raises CoalqaError on a set loaded with ``flags=False`` (its flags were never computed)."""
        if not self.flagged:
            raise CoalqaError("this review set was loaded without its flags (ReviewSet(..., flags=False))")
        stale = (status or self.state(p)[0]) == "stale"
        aside = p.chunk_id in self.log.set_aside
        if not (p.flags or stale or aside):
            return []
        out = set(p.flags) | ({"stale"} if stale else set()) | ({"eval"} if aside else set())
        return [f for f in FLAGS if f in out]

    def current_text(self, p: Pair, rec: dict | None) -> tuple[str, str]:
        """``(question, answer)`` as reviewed: the edit in force, else the original."""
        if rec and rec.get("decision") == "edit" and rec.get("edited"):
            return rec["edited"].get("question", p.question), rec["edited"].get("answer", p.answer)
        return p.question, p.answer

    def counts(self) -> dict[str, Any]:
        """``{"status": {status: n}, "docs": {doc: {status: n}}, "total", "set_aside_pairs"}``."""
        status = dict.fromkeys(STATUSES, 0)
        docs: dict[str, dict[str, int]] = {}
        aside = 0
        for p in self.pairs:
            s, _ = self.state(p)
            status[s] += 1
            d = docs.setdefault(p.doc, dict.fromkeys(STATUSES, 0))
            d[s] += 1
            aside += p.chunk_id in self.log.set_aside
        return {"status": status, "docs": docs, "total": len(self.pairs), "set_aside_pairs": aside}

    def view(self, status: str = "", doc: str = "", flag: str = "", q: str = "", sort: str = "") -> list[tuple[Pair, str]]:
        """Pairs matching every filter given (status, document, flag, text in question/answer/locator), with their
        status; ``sort="risky"`` puts the riskiest first (stale, unsupported numbers, …, then file order)."""
        q = q.strip().casefold()
        out = []
        for p in self.pairs:
            s, rec = self.state(p)
            if status and s != status or doc and p.doc != doc:
                continue
            if flag and flag not in self.flags(p, s):
                continue
            if q:
                question, answer = self.current_text(p, rec)
                if q not in question.casefold() and q not in answer.casefold() and q not in p.locator.casefold():
                    continue
            out.append((p, s))
        if sort == "risky":
            out.sort(key=lambda ps: -sum(RISK.get(f, 0) for f in self.flags(ps[0], ps[1])))
        return out

    def detail(self, p: Pair) -> dict[str, Any]:
        """Everything the page shows for one pair (JSON-ready): texts, clause, highlights, flags, decision, history."""
        status, rec = self.state(p)
        question, answer = self.current_text(p, rec)
        chunk = self.chunks.get(p.chunk_id)
        a_marks, c_marks = number_marks(answer, chunk["text"] if chunk else None)
        out: dict[str, Any] = {
            "id": p.id, "row": p.row, "origin": p.origin, "question": question, "answer": answer,
            "original": {"question": p.question, "answer": p.answer}, "doc": p.doc, "locator": p.locator,
            "status": status, "flags": self.flags(p, status), "unsupported": p.unsupported,
            "decision": rec, "version": self.log.version(p.id),
            "history": [{k: r.get(k) for k in ("decision", "reviewer", "time", "reason", "version")}
                        for r in self.log.stacks.get(p.id, [])][-5:],
            "chunk": chunk, "answer_numbers": a_marks, "clause_numbers": c_marks,
            "support": [[s, e] for s, e, _ in support_sentences(answer, chunk["text"])] if chunk else [],
            "extra": p.extra if p.origin == "feedback" else {},
        }
        if status == "stale" and rec is not None:
            old = self.log.clauses.get(str(rec.get("chunk_sha"))) or {}
            out["stale"] = {"old_text": old.get("text"), "old_locator": old.get("locator"),
                            "new_text": chunk["text"] if chunk else None, "decided": rec.get("decision")}
        return out

    def summary(self, p: Pair, status: str) -> list:
        """The compact row of a pair in a view: ``[id, status, doc, locator, flags]``."""
        return [p.id, status, p.doc, p.locator, self.flags(p, status)]


def check_pair_exists(rs: ReviewSet, pid: str) -> Pair:
    """The pair with id ``pid``. Raises CoalqaError when the set has none."""
    p = rs.by_id.get(pid)
    if p is None:
        raise CoalqaError(f"no pair {pid!r} in {rs.qa_path}")
    return p
