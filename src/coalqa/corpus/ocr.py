"""Offline OCR of pages without a usable text layer (scanned PDFs, .png/.jpg scans).

Engine: ``rapidocr-onnxruntime`` (PyPI; 1.4.4 ships PaddleOCR's PP-OCRv4 detection and recognition models and
the direction classifier as ONNX files inside the wheel, run by onnxruntime on the CPU: nothing is downloaded at
run time). Pages are rendered with pypdfium2 (pdfplumber's own renderer) at :data:`DPI`, in grey.

* **Settings**: the engine's per-line 180° classifier is off (it flipped upright lines, which then came back
  empty) and no line is dropped for a low score (the report flags it instead); pages are taken as upright.
* **Parallel**: pages are OCR'd in worker processes, one per core up to the number of pages, each with a
  one-thread engine (one page on the shared 2-core machine: 17.3 s with one thread vs 24.3 s with two, so the
  cores go to separate pages rather than to one page's matrix products).
* **Lines**: the engine returns text lines with a box and a confidence (0-1). Boxes are put in reading order
  (a page with two columns: the left column, then the right one; lines that span both columns separate the
  column blocks), fragments of one printed line are joined left to right, and coordinates are given in PDF
  points (1/72 inch), like the text layer's, so the same re-flow (:mod:`coalqa.corpus.pdffile`) joins them
  into paragraphs.
* **Unit case**: a unit the number check reads case-blind (:func:`coalqa.numbers.nfkc_casefold`) but that
  only exists in one case is written in it: ``4m/S`` → ``4m/s`` (``fix_unit_case``).
* **Suspect numbers** (:func:`suspect_numbers`): a digit run glued to a letter that OCR confuses with a digit
  (``S3``, ``O.5``, ``l0m``, ``1O``) and not a unit, an identifier (``GB50471``, ``AQ1020``) or a formula
  (``CH4``, ``CO2``, ``O2``).

Errors: :class:`OcrUnavailable` when the engine is not installed.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DPI = 200  # bench/ocr.py: rendered at 200 dpi, clean 200-dpi pages and 150-dpi scans gave every number exact
LOW_CONFIDENCE = 0.9  # a line recognised with less is listed in the fidelity report with its numbers


class OcrUnavailable(Exception):
    """rapidocr-onnxruntime (or onnxruntime) is not installed; the message says how to install it."""


@dataclass
class OcrLine:
    """One recognised line: text, box in PDF points (x0, x1, top, bottom from the page's top) and the lowest
    confidence of the engine's lines joined into it."""

    text: str
    x0: float
    x1: float
    top: float
    bottom: float
    confidence: float


_ENGINE = None


def _engine(threads: int = 1):
    global _ENGINE
    if _ENGINE is None:
        check_available()
        from rapidocr_onnxruntime import RapidOCR

        # max_side_len: keep a 200-dpi A4 page (2339 px high) at full resolution for detection
        # use_cls off: the 180° line classifier flipped upright lines (a 200-dpi line starting "6.1.4" came back
        # empty and was dropped); text_score 0: keep every recognised line, a doubtful one is flagged by its
        # confidence in the fidelity report instead of silently dropped (the engine's default drops under 0.5).
        # Detection on the engine's default 2000-px side: at the full 2339 px a page's first line went undetected
        # (bench/ocr.py pages: 2000 px found every line but lone "。" ones, and costs less)
        # rec_batch_num 1: the engine pads every line of a batch to the widest one; lines one at a time recognise a
        # 200-dpi page 1.8x faster on one core (41 lines: 7.4 → 4.0 s; batches of 16: 9.5 s), bench/ocr.py
        _ENGINE = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1, use_cls=False, text_score=0.0,
                           rec_batch_num=1)
    return _ENGINE


def check_available() -> None:
    """Raise :class:`OcrUnavailable` unless the OCR engine can be imported."""
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError as e:
        raise OcrUnavailable(
            "OCR needs rapidocr-onnxruntime (pip install rapidocr-onnxruntime); "
            "or rerun with --ocr never to skip pages without text"
        ) from e


def render_page(path: Path, index: int, dpi: int = DPI):
    """Page ``index`` (0-based) of PDF ``path`` as a grey ``numpy`` array (H × W, uint8) at ``dpi``, and the
    scale (pixels per PDF point)."""
    import numpy as np
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[index]
        scale = dpi / 72
        image = page.render(scale=scale, grayscale=True).to_pil().convert("L")
        return np.asarray(image), scale
    finally:
        pdf.close()


def load_image(path: Path):
    """An image file as a grey array and its scale in pixels per point (from its dpi, else :data:`DPI`)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        dpi = im.info.get("dpi", (DPI, DPI))[0] or DPI
        return np.asarray(im.convert("L")), float(dpi) / 72


def recognise(image, scale: float, threads: int = 1) -> list[OcrLine]:
    """OCR a grey page image; returns its lines in reading order, in PDF points (``scale`` px per point)."""
    import numpy as np

    rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
    result, _ = _engine(threads)(rgb)
    boxes = []
    for box, text, score in result or []:
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        text = " ".join(str(text).split())
        if text:
            boxes.append(OcrLine(text, min(xs) / scale, max(xs) / scale, min(ys) / scale, max(ys) / scale,
                                 float(score)))
    return reading_order(boxes, image.shape[1] / scale)


def reading_order(boxes: list[OcrLine], page_width: float) -> list[OcrLine]:
    """Order recognised boxes as a reader would and join fragments of one printed line (see the docstring)."""
    if not boxes:
        return []
    gutter = _gutter(boxes, page_width)
    if gutter is None:
        return _lines(boxes)
    blocks: list[tuple[bool, list[OcrLine]]] = [(False, [])]  # (spans both columns, boxes)
    for b in sorted(boxes, key=lambda b: b.top):
        if b.x0 < gutter < b.x1:
            blocks += [(True, [b]), (False, [])]
        else:
            blocks[-1][1].append(b)
    ordered: list[OcrLine] = []
    for spans, block in blocks:
        if spans:
            ordered += _lines(block)
        else:
            ordered += _lines([b for b in block if b.x1 <= gutter]) + _lines([b for b in block if b.x0 >= gutter])
    return ordered


def _gutter(boxes: list[OcrLine], width: float) -> float | None:
    """The x of a gap between two text columns, or None for one column: a vertical band in the middle
    half of the page crossed by at most a quarter of the boxes (titles, footers), with at least 3 lines on each
    side."""
    best = None
    for k in range(25, 76):
        x = width * k / 100
        left = sum(1 for b in boxes if b.x1 <= x)
        right = sum(1 for b in boxes if b.x0 >= x)
        cross = len(boxes) - left - right
        if left >= 3 and right >= 3 and cross <= 0.25 * len(boxes):
            score = (cross, abs(k - 50))
            if best is None or score < best[0]:
                best = (score, x)
    return best[1] if best else None


def _lines(boxes: list[OcrLine]) -> list[OcrLine]:
    """Join boxes on the same printed line (vertical overlap over half the lower height), left to right."""
    out: list[list[OcrLine]] = []
    for b in sorted(boxes, key=lambda b: (b.top + b.bottom) / 2):
        if out:
            last = out[-1]
            top, bottom = min(x.top for x in last), max(x.bottom for x in last)
            overlap = min(bottom, b.bottom) - max(top, b.top)
            if overlap > 0.5 * min(bottom - top, b.bottom - b.top):
                last.append(b)
                continue
        out.append([b])
    lines = []
    for group in out:
        group.sort(key=lambda b: b.x0)
        text = group[0].text
        for a, b in itertools.pairwise(group):
            gap = b.x0 - a.x1
            height = b.bottom - b.top
            latin = text[-1:].isascii() and text[-1:].isalnum() and b.text[:1].isascii() and b.text[:1].isalnum()
            text += (" " if latin or gap > 1.5 * height else "") + b.text
        lines.append(OcrLine(fix_unit_case(text), min(b.x0 for b in group), max(b.x1 for b in group),
                             min(b.top for b in group), max(b.bottom for b in group),
                             min(b.confidence for b in group)))
    return lines


_UNIT_CASE = re.compile(r"(?<=\d)(m|m3|m2|mm|cm|km|L|kg|t)/(S|Min|MIN|H|D)\b")


def fix_unit_case(text: str) -> str:
    """``4m/S`` → ``4m/s``, ``10m3/MIN`` → ``10m3/min``: per-time units exist only in lower case."""
    return _UNIT_CASE.sub(lambda m: f"{m.group(1)}/{m.group(2).lower()}", text)


_RUN = re.compile(r"[0-9A-Za-z.．]*\d[0-9A-Za-z.．]*")
_LOOKALIKE = re.compile(r"(?<![A-Za-z])[OoIlSsBZzg](?=[.．]?\d)|(?<=\d)[OoIlSBZ](?![A-Za-z])|(?<=\d[.．])[OoIlSBZ]")
_FORMULA = re.compile(r"^(?:CO2|SO2|NO2|N2|O2|H2|H2S|CH4|C2H2|C2H4|C2H6|C3H8|NH3|NOx|CO)$", re.IGNORECASE)


def suspect_numbers(text: str) -> list[str]:
    """Number-like runs of ``text`` glued to a letter that OCR takes for a digit (``S3``, ``O.5``, ``l0m``,
    ``1O``); a quantity with a unit (``4m/s``, ``5s``), an identifier with two or more letters (``GB50471``,
    ``AQ1020``, ``MT``) or a gas formula (``CO2``, ``O2``, ``CH4``) is not suspect. Returns the runs in order."""
    from coalqa.numbers import MEASURE_ALIASES, nfkc_casefold

    units = set(MEASURE_ALIASES)
    out = []
    for m in _RUN.finditer(text):
        run = m.group(0).strip(".．")
        if not run or _FORMULA.match(run) or re.fullmatch(r"\d+(?:[.．]\d+)*", run):
            continue
        head = re.match(r"^\d+(?:[.．]\d+)?", run)
        if head and nfkc_casefold(run[head.end():]) in units:
            continue  # 4m, 10m3, 5mpa
        if re.match(r"^[A-Za-z]{2,}", run) and not _LOOKALIKE.search(run[2:] if len(run) > 2 else ""):
            continue  # GB50471, AQ1020-2008
        if _LOOKALIKE.search(run):
            out.append(run)
    return out


def _work(job: tuple[str, str, int, int]) -> tuple[int, list[OcrLine], float, float]:
    kind, path, index, dpi = job
    if kind == "pdf":
        image, scale = render_page(Path(path), index, dpi)
    else:
        image, scale = load_image(Path(path))
    return index, recognise(image, scale), image.shape[0] / scale, image.shape[1] / scale


def ocr_pages(
    path: Path, pages: list[int], *, dpi: int = DPI, image: bool = False, workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, tuple[list[OcrLine], float, float]]:
    """OCR ``pages`` (0-based) of PDF ``path`` (``image=True``: the image file, page 0).

    Returns ``{page: (lines, page height, page width)}`` in points. Runs in ``workers`` processes (default:
    the usable cores, at most one per page); ``progress(done, total)`` is called after each page.

    Raises:
        OcrUnavailable: the engine is not installed.
    """
    check_available()
    jobs = [("image" if image else "pdf", str(path), p, dpi) for p in pages]
    n = workers or min(len(jobs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    out: dict[int, tuple[list[OcrLine], float, float]] = {}
    if n <= 1 or len(jobs) <= 1:
        for job in jobs:
            index, lines, h, w = _work(job)
            out[index] = (lines, h, w)
            if progress:
                progress(len(out), len(jobs))
        return out
    import multiprocessing

    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn")) as pool:
        for index, lines, h, w in pool.map(_work, jobs):
            out[index] = (lines, h, w)
            if progress:
                progress(len(out), len(jobs))
    return out


def page_size_of(lines: list[OcrLine]) -> float:
    """Typical character size (points) of OCR'd lines: the median width per character of CJK-rich lines."""
    sizes = [(ln.x1 - ln.x0) / len(ln.text) for ln in lines
             if len(ln.text) >= 4 and sum("\u4e00" <= ch <= "\u9fff" for ch in ln.text) >= 0.6 * len(ln.text)]
    return statistics.median(sizes) if sizes else 10.0
