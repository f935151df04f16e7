"""Reading JSON-list / JSON-Lines files with row-numbered errors, and writing files atomically.

Every stage's input files (QA pairs, questions, references, predictions) come either as one JSON list
or as JSON Lines, in any common encoding (detected by :func:`coalqa.textio.read_text_file`);
:func:`read_rows` reads both and says where each row sits, so errors can name the file and the row. Outputs are written through :func:`write_text_atomic` so that a killed process
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.textio import read_text_file


def read_rows(path: str | Path, what: str) -> list[tuple[str, Any]]:
    """Rows of a JSON list (file starts with ``[``) or of a JSON Lines file (blank lines skipped).

    Args:
        what: what the file is for, used in errors ("QA data", "questions", ...).

    Returns:
        ``[(where, value), ...]`` in file order; ``where`` is ``"FILE: row N"`` (JSON list, 1-based)
        or ``"FILE: line N"`` (JSON Lines, the line number).

    Raises:
        CoalqaError: the file is missing, not text, empty, not valid JSON (line and column named),
            or a JSON document that is not a list.
    """
    path = Path(path)
    text = read_text_file(path, what)
    if not text.strip():
        raise CoalqaError(f"{what} file {path} is empty")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CoalqaError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
        return [(f"{path}: row {n}", value) for n, value in enumerate(data, 1)]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}: line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise CoalqaError(
                f"{path}: line {n}: not valid JSON ({e.msg}, column {e.colno}); "
                "expected a JSON list or one JSON object per line"
            ) from e
    return rows


def umask() -> int:
    """This process's file-mode creation mask (``/proc/self/status`` on Linux, so no thread ever sees it changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(directory: bool = False) -> int:
    """The permission bits ``open()``/``mkdir`` would give a new file (``0o666``) or folder (``0o777``) under the umask."""
    return (0o777 if directory else 0o666) & ~umask()


def share_saved_weights(folder: str | Path) -> None:
    """Give the ``*.safetensors`` files under ``folder`` the mode an ordinary new file gets (usually ``0o644``).

    safetensors >= 0.8 writes through a temporary file created ``0o600`` whatever the umask (safetensors issue #782),
    so an adapter or merged model would be unreadable to the other users (a vLLM container, a service account) that
    can read the ``config.json`` beside it. Only files still at ``0o600`` are changed.
    """
    mode = new_file_mode()
    for f in Path(folder).rglob("*.safetensors"):
        if f.is_file() and (f.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
            f.chmod(mode)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via an fsync'd temporary file in the same folder + ``os.replace``.

    The file gets the mode a plain ``open(path, "w")`` would give it (the existing file's, else the umask's), not
    the temporary file's ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = (path.stat().st_mode & 0o777) if path.is_file() else new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON (non-ASCII kept) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks), for run cards and cache keys.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def append_jsonl_durable(path: str | Path, rows: list[Any]) -> None:
    """Append ``rows`` as JSON lines to ``path`` in one ``write`` on an ``O_APPEND`` descriptor, then ``fsync``.

    When this returns the lines survive a kill -9 or a power cut (the folder is ``fsync``'d too when the file is
    new). Concurrent appenders never interleave within a line (one ``write`` each, under an exclusive ``flock``). A new
    file gets the umask's mode.

    Raises:
        OSError: the file cannot be opened or written.
    """
    import fcntl

    path = Path(path)
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
            data = b"\n" + data  # a line left unfinished by a crash stays on its own line
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
