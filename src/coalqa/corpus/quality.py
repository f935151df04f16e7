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


# OCR'd pages: a page is *unusable* (left out of the chunks) when the engine was unsure of most of it, and
# *doubtful* (kept, warned) when it was unsure of a fair share of its lines. Measured on pages drawn with a CJK
# font (tests/test_corpus_ocr.py): a clean 200-dpi page reads every line at 0.95-1.0; a blurred, noisy 90-dpi
# scan reads nonsense at a median line confidence of about 0.6-0.8 with most lines under 0.9.
UNUSABLE_MEDIAN = 0.85  # median line confidence under this: the page is unusable
UNUSABLE_SHARE = 0.5  # this share of lines (or more) under the low-confidence threshold: unusable
DOUBTFUL_SHARE = 0.2  # this share (or more, at least 2 lines): doubtful


def ocr_page_verdict(lines: list[tuple[str, float]], low: float) -> tuple[str, list[str]]:
    """Judge one OCR'd page from its lines ``(text, confidence 0-1)``; ``low`` is the per-line threshold
    (:data:`coalqa.corpus.ocr.LOW_CONFIDENCE`).

    Returns ``(verdict, reasons)``: ``"ok"``, ``"doubtful"`` (a share of at least :data:`DOUBTFUL_SHARE` of
    the lines, 2 or more, under ``low``, or text that fails :func:`suspicious`: a table or contents page may
    have no sentence punctuation) or ``"unusable"`` (median confidence under :data:`UNUSABLE_MEDIAN`, at least
    :data:`UNUSABLE_SHARE` of the lines under ``low``, or garbled text with a line under ``low``); the reasons
    give the figures. A page with no lines is ``"ok"`` (nothing recognised, nothing to trust)."""
    if not lines:
        return "ok", []
    confs = sorted(c for _, c in lines)
    median = statistics.median(confs)
    under = sum(1 for c in confs if c < low)
    share = under / len(confs)
    figures = (f"median line confidence {median:.2f}, {under}/{len(confs)} line(s) under {low:g}, "
               f"lowest {confs[0]:.2f}")
    garbled = suspicious("\n".join(t for t, _ in lines))
    if median < UNUSABLE_MEDIAN or share >= UNUSABLE_SHARE or (garbled and under):
        return "unusable", [figures, *garbled]
    if (under >= 2 and share >= DOUBTFUL_SHARE) or garbled:
        return "doubtful", [figures, *garbled]
    return "ok", []
