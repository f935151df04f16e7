"""The review log: an append-only JSON Lines file of review decisions, durable before they are acknowledged.

One JSON object per line, each with a ``type``:

* ``decision``: ``pair_id``, ``decision`` (``approve``/``reject``/``edit``/``skip``, or ``undo`` that takes back the
  pair's latest decision, naming it in ``undoes``), ``version`` (the pair's decision counter after this line: 1, 2, …),
  ``edited`` (``{"question", "answer"}`` of an edit), ``reason`` and ``note`` (text), ``reviewer``, ``time`` (UTC,
  ISO 8601), ``chunk_id`` and ``chunk_sha`` (the content hash of the clause the reviewer saw), ``app`` (coalqa
  version), ``batch`` (id shared by the lines of one bulk action);
* ``clause``: a clause's text the first time a decision rests on it (``chunk_sha``, ``chunk_id``, ``source``,
  ``title``, ``locator``, ``text``), so a clause later changed or removed can be shown beside its new text;
* ``set_aside``: a chunk set aside for evaluation by ``coalqa review export --as_eval`` (``chunk_id``, ``chunk_sha``,
  ``output``, ``reviewer``, ``time``): training exports leave its pairs out;
* ``torn``: written when the log was found ending in an unfinished line (a crash in mid-write); it names that line
  (``line``), which is then skipped on every read instead of being an error.

Durability: each append is one ``write`` on an ``O_APPEND`` descriptor followed by ``fsync`` (and an ``fsync`` of the
folder when the file is created) before :meth:`ReviewLog.append` returns, so a decision the page shows as saved
survives a kill -9 or a power cut. Writers take an exclusive ``flock`` and first read what other processes appended
since, so two ``coalqa review`` servers on one log see each other's decisions and versions. The file is created with
the mode the umask gives a new file (never world-writable unless the umask allows it).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from coalqa import __version__
from coalqa.errors import CoalqaError

DECISIONS = ("approve", "reject", "edit", "skip")
APP = f"coalqa {__version__}"


def log_path_for(qa_path: str | Path) -> Path:
    """The review log beside a QA file: ``QAdata_all.json`` → ``QAdata_all.review.jsonl``."""
    qa_path = Path(qa_path)
    stem = qa_path.with_suffix("") if qa_path.suffix in (".json", ".jsonl") else qa_path
    return Path(f"{stem}.review.jsonl")


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds (``2026-12-06T07:01:02.345Z``)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Conflict(Exception):
    """A save based on an old version of a pair's decisions: someone else decided meanwhile.

    Attributes: ``pair_id``, ``version`` (the pair's current version), ``current`` (its latest decision record, or
    ``None`` when its decisions were all undone).
    """

    def __init__(self, pair_id: str, version: int, current: dict | None) -> None:
        super().__init__(f"pair {pair_id} changed meanwhile (now version {version})")
        self.pair_id, self.version, self.current = pair_id, version, current


@dataclass
class ReviewLog:
    """The decisions of one review log, as read so far, and the means to append to it.

    Attributes:
        path: the log file (it may not exist yet).
        stacks: ``pair_id`` → its decision records in force, oldest first (an ``undo`` pops the latest).
        versions: ``pair_id`` → its decision counter (lines written for it).
        clauses: ``chunk_sha`` → the ``clause`` record of that text.
        set_aside: ``chunk_id`` → its ``set_aside`` record.
        records: every decision record in file order (``undo`` included).
        torn: ``(line number, bytes)`` of unfinished lines found and closed (one per crash in mid-write).
        torn_tail: ``(line number, bytes)`` of an unfinished last line not yet closed, else ``None``.
    """

    path: Path
    stacks: dict[str, list[dict]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    clauses: dict[str, dict] = field(default_factory=dict)
    set_aside: dict[str, dict] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    torn: list[tuple[int, int]] = field(default_factory=list)
    torn_tail: tuple[int, int] | None = None
    _offset: int = 0
    _lines: int = 0
    _known_torn: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: str | Path) -> ReviewLog:
        """Read the log at ``path`` (a missing file is an empty log).

        Raises:
            CoalqaError: a line other than the last is not a JSON object and no ``torn`` record names it (the log
                was edited by hand or damaged: file and line named), or the file cannot be read.
        """
        log = cls(Path(path))
        if log.path.exists():
            try:
                with log.path.open("rb") as f:
                    log._read_from(f)
            except OSError as e:
                raise CoalqaError(f"cannot read the review log {log.path}: {e}") from e
        return log

    # reading -----------------------------------------------------------------------------------------------------
    def _read_from(self, f) -> None:
        """Apply the complete lines after ``_offset`` in ``f``; an unfinished last line is left unread and noted in
        ``torn_tail`` (it was never acknowledged: its write had not returned)."""
        f.seek(self._offset)
        data = f.read()
        self.torn_tail = None
        if not data:
            return
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the data ends with a newline
        parsed: list[tuple[int, dict | None, bytes]] = []
        for raw in lines:
            self._lines += 1
            self._offset += len(raw) + 1
            record = _parse(raw)
            if record is not None and record.get("type") == "torn":
                self._known_torn.add(int(record.get("line", 0)))
            parsed.append((self._lines, record, raw))
        for line, record, raw in parsed:
            if line in self._known_torn:
                self.torn.append((line, len(raw)))
            elif record is not None:
                self._apply(record)
            elif raw.strip():
                raise CoalqaError(f"{self.path}: line {line} is not a JSON object ({raw[:60]!r}…); the review log is "
                                  "append-only: restore it from a backup or remove that line by hand")
        if tail:
            self.torn_tail = (self._lines + 1, len(tail))

    def _apply(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "decision":
            pid = str(record.get("pair_id"))
            self.versions[pid] = max(self.versions.get(pid, 0), int(record.get("version") or 0))
            stack = self.stacks.setdefault(pid, [])
            if record.get("decision") == "undo":
                if stack:
                    stack.pop()
            else:
                stack.append(record)
            self.records.append(record)
        elif kind == "clause":
            self.clauses.setdefault(str(record.get("chunk_sha")), record)
        elif kind == "set_aside":
            self.set_aside[str(record.get("chunk_id"))] = record

    # state -------------------------------------------------------------------------------------------------------
    def latest(self, pair_id: str) -> dict | None:
        """The decision in force for a pair (the latest not undone), or ``None`` (never decided, or all undone)."""
        stack = self.stacks.get(pair_id)
        return stack[-1] if stack else None

    def version(self, pair_id: str) -> int:
        """The pair's decision counter (0: never decided); a save must carry it as ``base_version``."""
        return self.versions.get(pair_id, 0)

    def reviewers(self) -> list[str]:
        """Names of everyone with a decision in force, sorted."""
        return sorted({str(s[-1].get("reviewer")) for s in self.stacks.values() if s})

    def undo_target(self, reviewer: str) -> list[dict]:
        """The latest action of ``reviewer`` still in force: one decision, or every line of one bulk action.

        Returns ``[]`` when there is nothing to undo. An action counts as in force while each of its lines is still
        its pair's latest decision.
        """
        for i in range(len(self.records) - 1, -1, -1):
            rec = self.records[i]
            if rec.get("reviewer") != reviewer or rec.get("decision") == "undo":
                continue
            group = [rec]
            if rec.get("batch"):
                group = [r for r in self.records if r.get("batch") == rec["batch"] and r.get("decision") != "undo"]
            live = [r for r in group if self.latest(r["pair_id"]) is r]
            if live:
                return live
        return []

    def refresh(self) -> None:
        """Read what other processes (another ``coalqa review`` on the same log, an ``export --as_eval``) appended
        since; a no-op when the file has not grown. An unfinished last line stays unread until it is finished."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._offset:
            return
        with self._lock, self.path.open("rb") as f:
            self._read_from(f)

    # writing -----------------------------------------------------------------------------------------------------
    def append(self, make) -> list[dict]:
        """Append records durably and apply them; returns them.

        ``make(log)`` is called under the writer lock, after what other processes appended has been read, and returns
        the records to write (it may raise :class:`Conflict` or :class:`CoalqaError` to write nothing). The records
        are written in one ``write`` and ``fsync``'d before this returns.

        Raises:
            CoalqaError: the log cannot be written (disk full, permissions: the message names the file).
        """
        with self._lock:
            created = not self.path.exists()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as e:
                raise CoalqaError(f"cannot write the review log {self.path}: {e}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if created:
                    _fsync_dir(self.path.parent)
                with os.fdopen(os.dup(fd), "rb") as f:
                    self._read_from(f)
                prefix = b""
                if self.torn_tail is not None:  # an unfinished line left by a crash: close it and say so
                    line, size = self.torn_tail
                    prefix = b"\n" + _dump({"type": "torn", "line": line, "bytes": size, "time": now_iso(), "app": APP})
                    self._known_torn.add(line)
                    self.torn.append((line, size))
                    self._lines += 2  # the torn line, now ended, and the note naming it
                    self._offset += size + len(prefix)
                    self.torn_tail = None
                records = make(self)
                if not records and not prefix:
                    return []
                data = prefix + b"".join(_dump(r) for r in records)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                except OSError as e:
                    raise CoalqaError(f"cannot write the review log {self.path}: {e}") from e
                for r in records:
                    self._apply(r)
                self._lines += len(records)
                self._offset += len(data) - len(prefix)
                return records
            finally:
                os.close(fd)  # closing releases the flock


def _parse(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _dump(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
