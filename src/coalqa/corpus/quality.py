"""Signs that a text was extracted garbled: used by the fidelity report (whole documents) and by the PDF
reader to decide which pages to OCR (one page at a time)."""

from __future__ import annotations

import re
import statistics

_SENTENCE_PUNCT = re.compile(r"[。；;，,！!？?]")


def suspicious(text: str) -> list[str]:
    """Reasons ``text`` (one paragraph per line) looks garbled, ``[]`` when none: median line length ≤ 2
    characters over 5+ lines (one glyph per line), no sentence punctuation in 100+ characters, replacement
    characters (``\ufffd``, pdfminer's ``(cid:N)``)."""
    lines = text.split("\n")
    out = []
    median = statistics.median(len(line) for line in lines) if lines else 0
    if len(lines) >= 5 and median <= 2:
        out.append(f"median line length {median:g} characters (text placed glyph by glyph?)")
    if len(text) >= 100 and not _SENTENCE_PUNCT.search(text):
        out.append("no sentence punctuation in the text")
    bad = text.count("\ufffd") + len(re.findall(r"\(cid:\d+\)", text))
    if bad:
        out.append(f"{bad} replacement character(s) (unmapped glyphs or a wrong encoding)")
    return out
