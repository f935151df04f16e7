"""The append-only checkpoint: one JSON line per finished (or failed) chunk, durable at once.

Line 1 is a header naming what produced the records (provider, model, prompt version, pair and
length settings); resuming with different settings is refused rather than mixing datasets.
Every later line is a chunk record ``{"chunk_id", "text_sha", "status": "done"|"failed",
"pairs", "problems", "usage", "error", "raw"}``; the last record of a chunk wins. A ``kill -9``
can leave at most a torn last line, which is skipped on reading and fenced off with a newline
before the next append.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError

log = logging.getLogger("coalqa.generate")


def text_sha(text: str) -> str:
    """Short content hash of a chunk's text (a changed chunk is regenerated, not reused)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_checkpoint(path: Path) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, int]]:
    """Return ``(header, {chunk_id: last record}, tokens summed over every record)``.

    A missing file gives ``(None, {}, {})``.
    """
    header, records, tokens = None, {}, {}
    if not path.exists():
        return header, records, tokens
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping a torn line (an interrupted write); that chunk will be redone", path, n)
                continue
            if rec.get("type") == "header":
                header = header or rec
            elif "chunk_id" in rec:
                records[rec["chunk_id"]] = rec
                for k, v in (rec.get("usage") or {}).items():
                    tokens[k] = tokens.get(k, 0) + int(v)
    return header, records, tokens


def check_header(path: Path, found: dict[str, Any] | None, wanted: dict[str, Any]) -> None:
    """Raise :class:`CoalqaError` if the checkpoint was made with different generation settings."""
    if found is None:
        return
    diff = [f"{k}: {found.get(k)!r} → {v!r}" for k, v in wanted.items() if k != "type" and found.get(k) != v]
    if diff:
        raise CoalqaError(
            f"checkpoint {path} was made with other settings ({'; '.join(diff)}). Rerun with the same "
            "settings to resume, or pass another --checkpoint (or delete this one) to start afresh"
        )


def open_checkpoint(path: Path, header: dict[str, Any], durable: bool = True) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """Open ``path`` for appending; returns ``(append(record), close())``.

    ``append`` is thread-safe and writes one line, flushed and — when ``durable`` — fsync'd
    before it returns. The header is written when the file is new or empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+b")
    lock = threading.Lock()
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":  # torn last line from a killed run: fence it off
            f.write(b"\n")
    else:
        f.write(json.dumps(header, ensure_ascii=False).encode("utf-8") + b"\n")

    def append(record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        with lock:
            f.write(line)
            f.flush()
            if durable:
                os.fsync(f.fileno())

    def close() -> None:
        with lock:
            f.flush()
            os.fsync(f.fileno())
            f.close()

    return append, close
