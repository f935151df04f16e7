"""Reading text files a user brings, in whatever encoding they were saved: the one place that detects it.

Chinese users' files come as UTF-8, UTF-8 with a BOM (Windows Notepad), GBK/GB18030 (Excel and older Windows
tools; CoalQA's own published QA file is GBK) or UTF-16 (some Office exports). Every text input goes through
:func:`decode_text`: regulation documents (``coalqa corpus``), QA data, questions, references, predictions,
prompt files and YAML settings (through :func:`read_text_file`).

Detection order: a byte-order mark wins, then strict UTF-8, then ``charset-normalizer``'s best guess, where a
GB2312/GBK guess is decoded as its superset GB18030.
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path

from charset_normalizer import from_bytes

from coalqa.errors import CoalqaError

_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "hz_gb_2312", "cp936"}
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


class UndecodableText(ValueError):
    """Bytes that are binary or match no known text encoding; the message is the reason."""


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode the bytes of a text file, detecting the encoding; returns ``(text, encoding)``.

    ``encoding`` names what was used: ``"utf-8"``, ``"utf-8 with BOM"``, ``"utf-16"``, ``"gb18030"``, …
    A BOM is not part of ``text``.

    Raises:
        UndecodableText: the bytes look binary or match no encoding.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data.decode(enc), enc.replace("-sig", " with BOM")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise UndecodableText("binary content, not text in any known encoding")
    enc = best.encoding.lower()
    if enc in _GB_FAMILY:
        enc = "gb18030"
    try:
        text = data.decode(enc)
    except (UnicodeDecodeError, LookupError) as e:
        raise UndecodableText(f"binary content, not text ({e})") from e
    bad = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Co", "Cs") and ch not in "\r\n\t\f")
    if bad > max(2, len(text) // 200):
        raise UndecodableText(f"binary content, not text ({bad} control characters when read as {enc})")
    return text, enc


def read_text_file(path: str | Path, what: str) -> str:
    """The text of ``path`` in its detected encoding (:func:`decode_text`; a BOM is dropped).

    Args:
        what: what the file is for, used in errors ("QA data", "questions", "prompt", ...).

    Raises:
        CoalqaError: the file is missing or unreadable, or its bytes are not text (the message names
            the ``what`` file and the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise CoalqaError(f"{what} file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CoalqaError(f"cannot read {what} file {path}: {e.strerror or e}") from e
    try:
        return decode_text(data)[0]
    except UndecodableText as e:
        raise CoalqaError(f"cannot read {what} file {path} as text: {e}") from e
