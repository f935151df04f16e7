"""chunks.jsonl: one JSON object per line with keys id, source, title, locator, text, chars (+ heading, sha; and
``ocr: true`` with ``ocr_confidence`` for a chunk read by OCR, absent otherwise)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from coalqa.corpus.chunking import Chunk
from coalqa.errors import CoalqaError

REQUIRED_KEYS = ("id", "source", "title", "locator", "text", "chars")


def write_chunks(chunks: list[Chunk], path: str | Path) -> None:
    """Write chunks as UTF-8 JSON lines (Chinese kept readable), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for chunk in chunks:
            row = asdict(chunk)
            if not chunk.ocr:
                del row["ocr"], row["ocr_confidence"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_chunks(path: str | Path) -> list[Chunk]:
    """Read a chunks.jsonl written by ``coalqa corpus``; returns the chunks in file order.

    Blank lines are skipped; unknown extra keys are ignored; ``heading`` is optional. ``sha`` is always
    recomputed from the content (a chunk edited by hand counts as changed).

    Raises:
        CoalqaError: the file is missing, a line is not a JSON object, or lacks one of the keys
            id, source, title, locator, text, chars (the message names the file and line number).
    """
    path = Path(path)
    if not path.is_file():
        raise CoalqaError(f"chunks file not found: {path} (make it with `coalqa corpus DOCS -o {path}`)")
    chunks: list[Chunk] = []
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CoalqaError(f"{path}:{n}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise CoalqaError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in REQUIRED_KEYS if k not in row]
            if missing:
                raise CoalqaError(
                    f"{path}:{n}: missing key(s) {', '.join(missing)}; expected the output of "
                    f"`coalqa corpus DOCS -o {path}` (keys {', '.join(REQUIRED_KEYS)})"
                )
            chunks.append(
                Chunk(
                    id=str(row["id"]),
                    source=str(row["source"]),
                    title=str(row["title"]),
                    locator=str(row["locator"]),
                    text=str(row["text"]),
                    chars=int(row["chars"]),
                    heading=str(row.get("heading") or ""),
                    ocr=bool(row.get("ocr", False)),
                    ocr_confidence=None if row.get("ocr_confidence") is None else float(row["ocr_confidence"]),
                )
            )
    return chunks
