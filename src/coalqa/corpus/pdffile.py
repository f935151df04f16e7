"""Read a PDF into paragraphs with pdfplumber (pdfminer.six's layout-aware character positions).

pdfplumber places every character by its coordinates, so text drawn one glyph at a time (common for
CJK) still forms lines. The lines are then turned back into the paragraphs of the original:

* **Page furniture removed**: a line in the top or bottom 10 % of a page that repeats (digits ignored) on
  at least half of the pages (at least 2), or that is only a page number (``3``, ``- 3 -``, ``第3页``,
  ``第 3 页 共 10 页``, ``3/10``, ``Page 3 of 10``), is a header, footer or page number. Removed lines
  are returned so the fidelity report can account for their numbers.
* **Hard wraps re-flowed**: a line that reaches the right edge of the text block continues on the next
  line (also across a page break) unless the next line is indented (a new paragraph) or the line ends a
  sentence and the next one opens an article, clause or item (``第X条``, ``6.2.1``, ``（一）``, ``1.``).
  A line that opens with a quantity (``2.2m。``, ``30%，``: :func:`coalqa.numbers.starts_with_quantity`)
  continues a line that does not end a sentence even when that one stops short of the edge (a layout engine
  moves a number with its unit to the next line whole). Lines are joined without a space (a space between
  two Latin letters).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from coalqa.numbers import starts_with_quantity

_PAGE_NUMBER = re.compile(
    r"^[-—–_\s]*(?:第\s*)?\d{1,4}\s*(?:页)?\s*(?:(?:/|／|共|of)\s*\d{1,4}\s*页?)?[-—–_\s]*$"
    r"|^\s*(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?\s*$",
    re.IGNORECASE,
)
_OPENS_UNIT = re.compile(
    r"^\s*(?:第[零〇一二三四五六七八九十百千两\d]+[编章节条]|(?:\d+|[A-Z])(?:[.．]\d+)+|[（(][一二三四五六七八九十\d]+[)）]"
    r"|[一二三四五六七八九十]+、|\d+[.．、)）](?!\d)|[a-z][)）]|附\s*录)"
)
_SENTENCE_END = "。！？!?；;：:"
_BAND = 0.10  # top/bottom share of a page where headers and footers live


@dataclass
class _Line:
    text: str
    x0: float
    x1: float
    top: float
    bottom: float
    size: float
    page: int
    band: bool  # in the page's top or bottom band


class PdfError(Exception):
    """The PDF cannot be read (damaged, encrypted); the message is the reason."""


def _page_lines(page, number: int) -> list[_Line]:
    out = []
    for ln in page.extract_text_lines(layout=False, strip=True, return_chars=True):
        text = ln["text"].strip()
        if not text:
            continue
        sizes = [c.get("size", 0) for c in ln.get("chars", []) if c.get("size")]
        size = statistics.median(sizes) if sizes else 10.0
        band = ln["top"] < page.height * _BAND or ln["bottom"] > page.height * (1 - _BAND)
        out.append(_Line(text, ln["x0"], ln["x1"], ln["top"], ln["bottom"], size, number, band))
    return out


def _furniture(pages: list[list[_Line]]) -> set[int]:
    """ids of lines that are running headers/footers or page numbers (see the module docstring)."""
    key = lambda t: re.sub(r"\d+", "#", re.sub(r"\s+", "", t))  # noqa: E731
    seen: dict[str, set[int]] = {}
    for n, lines in enumerate(pages):
        for ln in lines:
            if ln.band:
                seen.setdefault(key(ln.text), set()).add(n)
    repeated = {k for k, on in seen.items() if len(pages) >= 2 and len(on) >= max(2, len(pages) / 2)}
    out = set()
    for lines in pages:
        edge = [ln for ln in lines if ln.band]
        for ln in edge:
            if key(ln.text) in repeated or _PAGE_NUMBER.match(ln.text):
                out.add(id(ln))
    return out


def _joins(a: _Line, b: _Line, left: float, right: float) -> bool:
    """Does line ``b`` continue the paragraph of line ``a`` (``a`` was hard-wrapped)?"""
    wrapped = a.x1 >= right - 1.5 * a.size
    indented = b.x0 > left + 0.8 * b.size
    new_unit = a.text[-1] in _SENTENCE_END and _OPENS_UNIT.match(b.text) is not None
    quantity = a.text[-1] not in _SENTENCE_END and starts_with_quantity(b.text)
    return (wrapped or quantity) and not indented and not new_unit


def pdf_text(path: Path) -> tuple[list[str], str, str, list[str]]:
    """Paragraphs of a PDF; returns ``(lines, metadata title, raw text, removed lines)``.

    ``raw text`` is every extracted line in page order before re-flowing and removal (what the fidelity
    report counts numbers in); ``removed`` are the header/footer/page-number lines left out.

    Raises:
        PdfError: damaged or encrypted file, or no extractable text (a scanned image).
    """
    import pdfplumber
    from pdfminer.pdfdocument import PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfplumber.utils.exceptions import PdfminerException

    try:
        with pdfplumber.open(str(path)) as pdf:
            title = str((pdf.metadata or {}).get("Title") or "").strip()
            pages = [_page_lines(page, n) for n, page in enumerate(pdf.pages)]
    except (PDFPasswordIncorrect, PdfminerException) as e:
        cause = e.args[0] if e.args and isinstance(e.args[0], Exception) else e
        if isinstance(cause, PDFPasswordIncorrect) or "password" in str(e).lower() or "encrypt" in str(e).lower():
            raise PdfError("encrypted PDF: save an unencrypted copy") from e
        raise PdfError(f"unreadable PDF ({cause})") from e
    except (PDFSyntaxError, ValueError, KeyError, TypeError) as e:
        raise PdfError(f"unreadable PDF ({type(e).__name__}: {e})") from e
    all_lines = [ln for lines in pages for ln in lines]
    if not all_lines:
        raise PdfError("PDF has no extractable text (a scanned image? run OCR first)")
    drop = _furniture(pages)
    body = [ln for ln in all_lines if id(ln) not in drop]
    removed = [ln.text for ln in all_lines if id(ln) in drop]
    if not body:
        return [], title, "\n".join(ln.text for ln in all_lines), removed
    xs1 = sorted(ln.x1 for ln in body)
    left = min(ln.x0 for ln in body)
    right = xs1[int(0.9 * (len(xs1) - 1))]
    out: list[str] = [body[0].text]
    for a, b in zip(body, body[1:]):
        if _joins(a, b, left, right):
            sep = " " if a.text[-1].isascii() and a.text[-1].isalpha() and b.text[0].isascii() and b.text[0].isalpha() else ""
            out[-1] += sep + b.text
        else:
            out.append(b.text)
    return out, title, "\n".join(ln.text for ln in all_lines), removed
