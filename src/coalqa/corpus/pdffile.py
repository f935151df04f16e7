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
* **Tables** (pdfplumber's table finder, ruled tables): the table's characters are taken out of the page's
  lines and the table becomes a header line and one line per row naming its columns
  (:mod:`coalqa.corpus.tables`); a cell spanning rows is repeated into each of them, one spanning columns
  written under their names; the number of a ``表5.1.2 …`` caption line just above it prefixes each row. A table
  that ends a page and one with the same number of columns that opens the next page (after a ``续表`` caption,
  if any) are one table; a header row repeated on the next page is dropped.
* **OCR** (:mod:`coalqa.corpus.ocr`): with ``ocr="auto"`` a page with no text layer, or whose text fails the
  suspicious-extraction checks (:func:`coalqa.corpus.quality.suspicious`), is rendered and OCR'd, with
  ``"always"`` every page; OCR'd lines go through the same furniture removal and re-flow and keep their
  confidence. An OCR'd page judged unusable (:func:`coalqa.corpus.quality.ocr_page_verdict`: most lines
  recognised with low confidence, or garbled) is left out of the text and named in :attr:`PdfText.ocr_dropped`
  (a file whose every page is unusable is an error naming the figures and the numbers on its doubtful lines;
  with ``"always"``, a page whose text layer passed the checks keeps that text instead).
  With ``"never"`` such pages are left out and named in :attr:`PdfText.unread`.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coalqa.corpus.quality import ocr_page_verdict, suspicious
from coalqa.corpus.tables import CAPTION, Cell, TableLines, caption_label, header_rows, table_lines
from coalqa.numbers import starts_with_quantity

_PAGE_NUMBER = re.compile(
    r"^[-—–_\s]*(?:第\s*)?\d{1,4}\s*(?:页)?\s*(?:(?:/|／|共|of)\s*\d{1,4}\s*页?)?[-—–_\s]*$"
    r"|^\s*(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?\s*$",
    re.IGNORECASE,
)
_OPENS_UNIT = re.compile(
    r"^\s*(?:第[零〇一二三四五六七八九十百千两\d]+[编章节条]|(?:\d+|[A-Z])(?:[.．]\d+)+|[（(][一二三四五六七八九十\d]+[)）]"
    r"|[一二三四五六七八九十]+、|\d+[.．、)）](?!\d)|[a-z][)）]|附\s*录|续?表\s*[A-Z]?\d)"
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
    table: bool = False  # a line of a table (never re-flowed)
    confidence: float | None = None  # OCR'd: the engine's confidence; None: from the text layer


@dataclass
class _Table:
    grid: list[list[Cell]]
    top: float
    bottom: float
    x0: float
    x1: float
    page: int


@dataclass
class PdfText:
    """What :func:`pdf_text` read.

    Attributes:
        lines: paragraphs, in order; ``confidence[i]`` is the lowest OCR confidence of ``lines[i]``'s parts
            (``None``: all from the text layer).
        title: the metadata title (may be junk; see readers.junk_title).
        raw: every extracted line and table cell, before re-flow and removal (the fidelity report's source).
        removed: header/footer/page-number lines left out.
        tables: the tables, as lines.
        ocr_pages: 1-based numbers of the pages OCR'd; ``ocr_lines``: ``(page, text, confidence)`` of each
            line the engine returned (for the fidelity report).
        ocr_dropped: 1-based numbers of OCR'd pages left out because their OCR is unusable
            (:func:`coalqa.corpus.quality.ocr_page_verdict`); their lines stay in ``ocr_lines`` for the report.
        unread: 1-based numbers of pages that needed OCR but were not OCR'd (``ocr="never"``).
    """

    lines: list[str]
    title: str
    raw: str
    removed: list[str]
    tables: list[TableLines] = field(default_factory=list)
    confidence: list[float | None] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)
    ocr_lines: list[tuple[int, str, float]] = field(default_factory=list)
    ocr_dropped: list[int] = field(default_factory=list)
    unread: list[int] = field(default_factory=list)


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


def _cell_text(text: str | None) -> str:
    """A cell's text with its wrapped lines joined (a space only between two Latin letters or digits)."""
    parts = [p.strip() for p in (text or "").split("\n") if p.strip()]
    out = ""
    for p in parts:
        latin = out[-1:].isascii() and out[-1:].isalnum() and p[:1].isascii() and p[:1].isalnum()
        out += (" " if out and latin else "") + p
    return " ".join(out.split(" ")) if out else ""


def _page_tables(page, number: int) -> list[_Table]:
    """The ruled tables of a page as grids: a spanned position takes the text and origin of the cell above
    it when that cell reaches down into this row, else of the cell to its left."""
    out = []
    for t in page.find_tables():
        texts = t.extract()
        rows = t.rows
        grid: list[list[Cell]] = []
        boxes: dict[tuple[int, int], tuple] = {}
        width = max((len(r.cells) for r in rows), default=0)
        for r, row in enumerate(rows):
            cells: list[Cell] = []
            for c in range(width):
                bbox = row.cells[c] if c < len(row.cells) else None
                if bbox is not None:
                    boxes[(r, c)] = bbox
                    cells.append(Cell(_cell_text(texts[r][c] if c < len(texts[r]) else ""), (r, c)))
                    continue
                above = grid[r - 1][c] if r else None
                if above is not None and boxes[above.origin][3] > row.bbox[1] + 1:
                    cells.append(Cell(above.text, above.origin))
                elif c and cells:
                    cells.append(Cell(cells[-1].text, cells[-1].origin))
                else:
                    cells.append(Cell("", (r, c)))
            grid.append(cells)
        x0, top, x1, bottom = t.bbox
        if grid:
            out.append(_Table(grid, top, bottom, x0, x1, number))
    return out


def _inside(obj, boxes: list[tuple]) -> bool:
    cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
    return any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes)


def _furniture(pages: list[list[_Line]]) -> set[int]:
    """ids of lines that are running headers/footers or page numbers (see the module docstring)."""
    key = lambda t: re.sub(r"\d+", "#", re.sub(r"\s+", "", t))
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
    if a.table or b.table:
        return False
    wrapped = a.x1 >= right - 1.5 * a.size
    indented = b.x0 > left + 0.8 * b.size
    new_unit = a.text[-1] in _SENTENCE_END and _OPENS_UNIT.match(b.text) is not None
    quantity = a.text[-1] not in _SENTENCE_END and starts_with_quantity(b.text)
    return (wrapped or quantity) and not indented and not new_unit


def _same_header(a: list[list[Cell]], b: list[list[Cell]], n: int) -> bool:
    return len(b) > n and all([c.text for c in a[r]] == [c.text for c in b[r]] for r in range(n))


def _merge_tables(items: list) -> list:
    """Join a table that ends a page with the table that opens the next page (see the module docstring)."""
    out: list = []
    for it in items:
        prev = out[-1] if out else None
        if isinstance(it, _Table) and out:
            k = len(out) - 1
            cont_caption = None
            if isinstance(prev, _Line) and prev.page == it.page and CAPTION.match(prev.text) and CAPTION.match(prev.text).group(1):
                cont_caption, k = prev, k - 1  # "续表5.1.2" between the two parts
            first = out[k] if k >= 0 else None
            opens_page = not any(isinstance(x, _Line) and x.page == it.page and x is not cont_caption
                                 for x in out[k + 1 :])
            if (isinstance(first, _Table) and first.page == it.page - 1 and opens_page
                    and len(first.grid[0]) == len(it.grid[0])):
                n_head = header_rows(first.grid)
                rows = it.grid[n_head:] if _same_header(first.grid, it.grid, n_head) else it.grid
                shift = len(first.grid)
                first.grid += [[Cell(c.text, (c.origin[0] + shift, c.origin[1])) for c in row] for row in rows]
                if cont_caption is not None:  # keep its text, after the joined table (whose caption stays the first)
                    out.remove(cont_caption)
                    out.insert(k + 1, cont_caption)
                continue
        out.append(it)
    return out


def _table_items(items: list) -> tuple[list[_Line], list[TableLines]]:
    """Turn tables into lines (caption number from the line just above); returns all lines and the tables."""
    lines: list[_Line] = []
    tables: list[TableLines] = []
    for it in items:
        if isinstance(it, _Line):
            lines.append(it)
            continue
        cap = lines[-1].text if lines and not lines[-1].table and caption_label(lines[-1].text) else ""
        t = table_lines(it.grid, caption_label(cap) if cap else None, cap)
        tables.append(t)
        lines += [_Line(text, it.x0, it.x1, it.top, it.bottom, 10.0, it.page, False, table=True) for text in t.lines]
    return lines, tables


def _ocr_lines(found, page: int) -> list[_Line]:
    """OCR'd lines of one page (:func:`coalqa.corpus.ocr.ocr_pages` result) as :class:`_Line`."""
    from coalqa.corpus.ocr import page_size_of

    lines, height, _ = found
    size = page_size_of(lines)
    return [
        _Line(ln.text, ln.x0, ln.x1, ln.top, ln.bottom, size, page,
              ln.top < height * _BAND or ln.bottom > height * (1 - _BAND), confidence=ln.confidence)
        for ln in lines
    ]


def needs_ocr(lines: list[_Line], image_area: float) -> bool:
    """Does a page's text layer fall short: no text, less than 20 characters on a page mostly covered by an
    image (a scan with a stamped page number), or text that fails the suspicious-extraction checks?"""
    text = "\n".join(ln.text for ln in lines)
    chars = sum(1 for ch in text if not ch.isspace())
    if chars == 0 or (chars < 20 and image_area >= 0.5):
        return True
    return bool(suspicious(text))


def pdf_text(
    path: Path, *, ocr: str = "auto", progress: Callable[[int, int], None] | None = None,
    dpi: int | None = None,
) -> PdfText:
    """Paragraphs of a PDF (see the module docstring).

    ``ocr``: ``"auto"`` (pages without usable text), ``"always"`` or ``"never"``; ``progress(done, total)``
    is called per OCR'd page; ``dpi`` overrides :data:`coalqa.corpus.ocr.DPI`.

    Raises:
        PdfError: damaged or encrypted file; no text at all (pages needing OCR with ``ocr="never"``, or OCR
            unavailable: the message says which and what to do).
    """
    title, pages, tables, want, usable_layer = _read_layers(path, ocr)
    result = PdfText([], title, "", [])
    dropped_reasons: list[str] = []
    if want and ocr != "never":
        dropped_reasons = _ocr_wanted(path, pages, tables, want, usable_layer, result, dpi, progress)
    elif want:
        result.unread = [n + 1 for n in want if not pages[n]]
    all_lines = [ln for lines in pages for ln in lines]
    cells = [c.text for ts in tables for t in ts for c in {c.origin: c for row in t.grid for c in row}.values() if c.text]
    if not all_lines and not cells:
        _refuse_empty(result, dropped_reasons)
    drop = _furniture(pages)
    items: list = []
    for n, lines in enumerate(pages):
        page_items = [ln for ln in lines if id(ln) not in drop] + tables[n]
        items += sorted(page_items, key=lambda x: x.top)
    body, result.tables = _table_items(_merge_tables(items))
    result.removed = [ln.text for ln in all_lines if id(ln) in drop]
    result.raw = "\n".join([ln.text for ln in all_lines] + cells)
    if not body:
        return result
    result.lines, result.confidence, split_number = _reflow(body)
    if split_number:  # the plain reading, with a number broken by a wrap read whole (as the eye reads it)
        raw: list[str] = []
        for ln in all_lines:
            if id(ln) in split_number and raw:
                raw[-1] += ln.text
            else:
                raw.append(ln.text)
        result.raw = "\n".join(raw + cells)
    return result


def _read_layers(path: Path, ocr: str):
    """Each page's text-layer lines and tables, and which pages to OCR: ``(title, pages, tables, want,
    usable_layer)``; ``usable_layer``: pages (0-based) OCR'd under ``"always"`` whose text layer passed the checks.

    Raises:
        PdfError: damaged or encrypted file.
    """
    import pdfplumber
    from pdfminer.pdfdocument import PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfplumber.utils.exceptions import PdfminerException

    pages: list[list[_Line]] = []
    tables: list[list[_Table]] = []
    want: list[int] = []
    usable_layer: set[int] = set()
    try:
        with pdfplumber.open(str(path)) as pdf:
            title = str((pdf.metadata or {}).get("Title") or "").strip()
            for n, page in enumerate(pdf.pages):
                found = _page_tables(page, n)
                boxes = [(t.x0, t.top, t.x1, t.bottom) for t in found]
                view = page.filter(lambda o, boxes=boxes: not _inside(o, boxes)) if boxes else page
                lines = _page_lines(view, n)
                area = sum((im["x1"] - im["x0"]) * (im["bottom"] - im["top"]) for im in page.images)
                needed = not found and needs_ocr(lines, area / (page.width * page.height))
                if ocr == "always" or needed:
                    want.append(n)
                if ocr == "always" and not needed:
                    usable_layer.add(n)  # its text layer stands in if its OCR is unusable
                pages.append(lines)
                tables.append(found)
    except (PDFPasswordIncorrect, PdfminerException) as e:
        cause = e.args[0] if e.args and isinstance(e.args[0], Exception) else e
        if isinstance(cause, PDFPasswordIncorrect) or "password" in str(e).lower() or "encrypt" in str(e).lower():
            raise PdfError("encrypted PDF: save an unencrypted copy") from e
        raise PdfError(f"unreadable PDF ({cause})") from e
    except (PDFSyntaxError, ValueError, KeyError, TypeError, IndexError) as e:
        raise PdfError(f"unreadable PDF ({type(e).__name__}: {e})") from e
    return title, pages, tables, want, usable_layer


def _ocr_wanted(path: Path, pages: list[list[_Line]], tables: list[list[_Table]], want: list[int],
                usable_layer: set[int], result: PdfText, dpi: int | None,
                progress: Callable[[int, int], None] | None) -> list[str]:
    """OCR the pages ``want`` in place of their text layer (an unusable one left out, or its layer kept when in
    ``usable_layer``), recording ``result``'s OCR fields; returns why each left-out page was left out."""
    from coalqa.corpus.ocr import DPI, LOW_CONFIDENCE, OcrUnavailable, ocr_pages

    try:
        found = ocr_pages(path, want, dpi=dpi or DPI, progress=progress)
    except OcrUnavailable as e:
        raise PdfError(str(e)) from e
    dropped_reasons: list[str] = []
    for n in want:
        layer = pages[n], tables[n]
        pages[n] = _ocr_lines(found[n], n)
        tables[n] = []
        result.ocr_lines += [(n + 1, ln.text, ln.confidence) for ln in pages[n]]
        verdict, reasons = ocr_page_verdict([(ln.text, ln.confidence) for ln in pages[n]], LOW_CONFIDENCE)
        if verdict == "unusable":  # its text would be nonsense with wrong numbers: left out, reported
            pages[n], tables[n] = layer if n in usable_layer else ([], [])
            result.ocr_dropped.append(n + 1)
            dropped_reasons.append(f"page {n + 1}: {'; '.join(reasons)}")
    result.ocr_pages = [n + 1 for n in want]
    return dropped_reasons


def _refuse_empty(result: PdfText, dropped_reasons: list[str]) -> None:
    """Raise the :class:`PdfError` that says why a PDF gave no text at all."""
    if result.unread:
        raise PdfError(f"image-only PDF ({len(result.unread)} page(s) without a text layer) and --ocr never: "
                       "rerun with --ocr auto to OCR them")
    if dropped_reasons:
        numbers = _low_numbers(result.ocr_lines)
        raise PdfError(f"OCR unusable on every page read ({' | '.join(dropped_reasons)}); nothing kept"
                       + (f"; numbers on its low-confidence lines: {', '.join(numbers)}" if numbers else "")
                       + "; rescan at 300 dpi or more, or type the text in")
    raise PdfError("PDF has no extractable text")


def _reflow(body: list[_Line]) -> tuple[list[str], list[float | None], set[int]]:
    """Join hard-wrapped lines into paragraphs: ``(paragraphs, lowest OCR confidence of each or None, ids of the
    lines that continue a number the line before broke)``."""
    text_lines = [ln for ln in body if not ln.table] or body
    xs1 = sorted(ln.x1 for ln in text_lines)
    left = min(ln.x0 for ln in text_lines)
    right = xs1[int(0.9 * (len(xs1) - 1))]
    out: list[str] = [body[0].text]
    conf: list[float | None] = [body[0].confidence]
    split_number: set[int] = set()  # lines that continue a number the line before broke ("…30m至4" / "0m…")
    for a, b in itertools.pairwise(body):
        if _joins(a, b, left, right):
            sep = " " if a.text[-1].isascii() and a.text[-1].isalpha() and b.text[0].isascii() and b.text[0].isalpha() else ""
            out[-1] += sep + b.text
            conf[-1] = _lower(conf[-1], b.confidence)
            if (a.text[-1].isdigit() or a.text[-1] in ".．") and b.text[0].isdigit():
                split_number.add(id(b))
        else:
            out.append(b.text)
            conf.append(b.confidence)
    return out, conf, split_number


def _low_numbers(ocr_lines: list[tuple[int, str, float]]) -> list[str]:
    """The numbers (:func:`coalqa.numbers.number_tokens`) on OCR'd lines under the low-confidence threshold."""
    from coalqa.corpus.ocr import LOW_CONFIDENCE
    from coalqa.numbers import number_tokens

    return [tok for _, text, conf in ocr_lines if conf < LOW_CONFIDENCE for tok in number_tokens(text)]


def _lower(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
