"""Recording decisions: one pair, a bulk action over a view, and undo — each durable when it returns.

Optimistic versioning: a save names the version of the pair's decisions it was based on (``base_version``, from the
page); when the log holds another (someone decided meanwhile, in this server or another on the same log), nothing is
written and :class:`~coalqa.review.log.Conflict` carries the decision in force, for the page to show.
"""

from __future__ import annotations

import uuid

from coalqa.errors import CoalqaError
from coalqa.numbers import unsupported_quantities
from coalqa.review.log import APP, DECISIONS, Conflict, ReviewLog, now_iso
from coalqa.review.pairs import Pair, ReviewSet

MAX_TEXT = 4000  # characters of an edited question/answer, a reason or a note


class ViewChanged(CoalqaError):
    """A bulk action confirmed for one number of pairs while the view now holds another."""


class UnconfirmedNumbers(CoalqaError):
    """An edited answer states quantities its clause does not (``numbers``, as written), and the reviewer has not
    confirmed exactly those: nothing was written. The page asks, naming them, and saves again with
    ``confirm_unsupported=numbers``."""

    def __init__(self, numbers: list[str]) -> None:
        super().__init__(f"the edited answer states {'、'.join(numbers)}, which its clause does not state; "
                         "confirm these numbers explicitly to save the edit")
        self.numbers = numbers


def unsupported_in(rs: ReviewSet, p: Pair, answer: str) -> list[str]:
    """Quantities of ``answer`` (as written) that the clause of ``p`` does not state — the same check as the
    ``number`` flag and the grounded answers (:func:`coalqa.numbers.unsupported_quantities`); ``[]`` without a clause."""
    chunk = rs.chunks.get(p.chunk_id)
    return [q.text for q in unsupported_quantities(answer, [chunk["text"]])] if chunk else []


def _clean(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CoalqaError(f"{what} must be text")
    if len(value) > MAX_TEXT:
        raise CoalqaError(f"{what} is {len(value)} characters, at most {MAX_TEXT}")
    return value.strip()


def _record(rs: ReviewSet, p: Pair, log: ReviewLog, decision: str, reviewer: str, *, edited=None, reason="", note="",
            batch=None, undoes=None, written: set | None = None, unsupported=None) -> list[dict]:
    """The lines for one decision on ``p``: a ``clause`` snapshot first when its text is new to the log (and not in
    ``written``, the snapshots of the same write, which this adds to)."""
    chunk = rs.chunks.get(p.chunk_id)
    out = []
    written = set() if written is None else written
    if chunk is not None and chunk["sha"] not in log.clauses and chunk["sha"] not in written:
        written.add(chunk["sha"])
        out.append({"type": "clause", "chunk_sha": chunk["sha"], "chunk_id": chunk["id"], "source": chunk["source"],
                    "title": chunk["title"], "locator": chunk["locator"], "text": chunk["text"]})
    rec = {"type": "decision", "pair_id": p.id, "decision": decision, "version": log.version(p.id) + 1,
           "reviewer": reviewer, "time": now_iso(), "chunk_id": p.chunk_id,
           "chunk_sha": chunk["sha"] if chunk else None, "app": APP}
    if edited:
        rec["edited"] = edited
    if unsupported:
        rec["unsupported"] = unsupported  # numbers the reviewer confirmed though the clause does not state them
    if reason:
        rec["reason"] = reason
    if note:
        rec["note"] = note
    if batch:
        rec["batch"] = batch
    if undoes is not None:
        rec["undoes"] = undoes
    return out + [rec]


def decide(rs: ReviewSet, pid: str, decision: str, base_version: int, reviewer: str, *, question=None, answer=None,
           reason=None, note=None, confirm_unsupported=None) -> dict:
    """Record ``decision`` on pair ``pid``; returns the decision record written (durable).

    ``edit`` needs ``question`` and/or ``answer`` (an edit is an approval of the corrected pair); ``reject`` needs a
    ``reason``. An edited answer that states quantities its clause does not (:func:`unsupported_in`) is saved only
    when ``confirm_unsupported`` names exactly those numbers; the record then keeps them (``"unsupported"``).

    Raises:
        Conflict: ``base_version`` is not the pair's current version.
        UnconfirmedNumbers: an edit with unsupported numbers not confirmed (or others confirmed).
        CoalqaError: unknown pair or decision, missing edit text or reason, text too long.
    """
    p = rs.by_id.get(pid)
    if p is None:
        raise CoalqaError(f"no pair {pid!r} in this review set")
    if decision not in DECISIONS:
        raise CoalqaError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    reason, note = _clean(reason, "the reason"), _clean(note, "the note")
    edited = None
    if decision == "edit":
        q, a = _clean(question, "the question"), _clean(answer, "the answer")
        if not q or not a:
            raise CoalqaError("an edit needs a non-empty question and answer")
        if q == p.question and a == p.answer:
            decision = "approve"  # nothing changed: a plain approval
        else:
            edited = {"question": q, "answer": a}
    unsupported = unsupported_in(rs, p, edited["answer"]) if edited else []
    confirmed = confirm_unsupported if isinstance(confirm_unsupported, list) else []
    if unsupported and sorted(map(str, confirmed)) != sorted(unsupported):
        raise UnconfirmedNumbers(unsupported)
    if decision == "reject" and not reason:
        raise CoalqaError("a rejection needs a reason")

    def make(log: ReviewLog) -> list[dict]:
        if int(base_version) != log.version(pid):
            raise Conflict(pid, log.version(pid), log.latest(pid))
        return _record(rs, p, log, decision, reviewer, edited=edited, reason=reason, note=note,
                       unsupported=unsupported)

    return rs.log.append(make)[-1]


def bulk(rs: ReviewSet, pairs: list[Pair], decision: str, reviewer: str, expected: int, *, reason=None,
         note=None) -> list[dict]:
    """Approve or reject every pair of ``pairs`` not already in that state, as one action (one ``batch`` id, one
    write); returns the decision records.

    Raises:
        ViewChanged: the number of pairs that would change is not ``expected`` (the count the reviewer confirmed).
        CoalqaError: ``decision`` is not approve/reject, or a rejection without a reason.
    """
    if decision not in ("approve", "reject"):
        raise CoalqaError("bulk decisions are approve or reject")
    reason, note = _clean(reason, "the reason"), _clean(note, "the note")
    if decision == "reject" and not reason:
        raise CoalqaError("a rejection needs a reason")
    already = ("approved", "edited") if decision == "approve" else ("rejected",)
    batch = uuid.uuid4().hex[:12]

    def make(log: ReviewLog) -> list[dict]:
        todo = [p for p in pairs if rs.state(p)[0] not in already]
        if len(todo) != int(expected):
            raise ViewChanged(f"the view changed: {len(todo)} pair(s) would change, not the {expected} confirmed; "
                              "reload and confirm again")
        out, written = [], set()
        for p in todo:
            out += _record(rs, p, log, decision, reviewer, reason=reason, note=note, batch=batch, written=written)
        return out

    return [r for r in rs.log.append(make) if r["type"] == "decision"]


def undo(rs: ReviewSet, reviewer: str) -> list[dict]:
    """Take back ``reviewer``'s latest action still in force (one decision or one bulk action); returns the ``undo``
    records written (``[]``: nothing to undo). Each pair returns to its decision before (or to pending)."""

    def make(log: ReviewLog) -> list[dict]:
        out = []
        for rec in log.undo_target(reviewer):
            p = rs.by_id.get(rec["pair_id"])
            if p is not None:
                out += _record(rs, p, log, "undo", reviewer, undoes=rec["version"])
        return [r for r in out if r["type"] == "decision"]

    return rs.log.append(make)
