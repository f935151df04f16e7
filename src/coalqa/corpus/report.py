"""Fidelity report of ``coalqa corpus``: did every character and number of a document reach its chunks?
And, with ``--previous``, which chunks a regulation update added, removed or changed.

Per document (:func:`document_report`):

* ``chars_in``/``chars_out``: non-whitespace characters of the source (its plain reading, ``Document.raw_text``,
  with layout cleaned and removed page furniture taken out) and of its chunks; ``chars_lost`` counts characters
  of the source missing from the chunks (as a multiset; added list numbers do not hide a loss).
* ``numbers_in``/``numbers_out``: number tokens (:func:`coalqa.numbers.number_tokens`: every digit run, NFKC, so
  ``３０`` = ``30``) of the source and of the chunks; ``numbers_missing`` lists the first 10 source numbers the
  chunks lack (as a multiset: a ``10`` that occurs twice must be there twice).
* ``front_chunks``: chunks located only ``卷首`` (no article/clause/heading found for them).
* ``suspicious``: signs of a garbled extraction: median line length ≤ 2 characters (one glyph per line),
  no sentence punctuation in 100+ characters, replacement characters (``�``, pdfminer's ``(cid:N)``).

* ``tables``/``table_cells``/``table_numbers``/``table_numbers_kept``: tables read, their non-empty cells (a
  merged cell once) and the numbers in those cells, and how many of those the chunks' table rows hold.
* ``ocr`` (documents with OCR'd pages): ``pages`` OCR'd, ``lines`` recognised, ``min_confidence``,
  ``low_confidence`` (lines under :data:`coalqa.corpus.ocr.LOW_CONFIDENCE`, each with its page, text,
  confidence and every number in it) and ``suspect_numbers`` (digits glued to a letter OCR confuses with a
  digit, :func:`coalqa.corpus.ocr.suspect_numbers`: ``S3``, ``O.5``, ``l0m``), each with page and line;
  ``median_confidence``; ``bad_pages`` (pages judged ``doubtful`` or ``unusable`` by
  :func:`coalqa.corpus.quality.ocr_page_verdict`, with the reasons, whether the page was left out of the chunks,
  and the numbers on its low-confidence lines) and ``pages_left_out``; ``numbers_recognised`` /
  ``numbers_low_confidence``: the numbers the engine read on the kept pages, and how many of them sit on
  low-confidence lines. A scan has no ground truth: ``numbers_in``/``numbers_missing`` of an OCR'd document only
  compare the OCR output with itself, so the summary does not count them as "kept";
  ``suspect_headings``: OCR'd article numbers that break the numbering order
  (:func:`coalqa.corpus.chunking.suspect_headings`), whose locators are marked :data:`UNCERTAIN`.

Each problem becomes a warning naming the reason (a suspect OCR number, a doubtful or unusable OCR'd page and a
suspect article number too; a single low-confidence line is listed, not warned about); ``coalqa corpus --strict``
turns them into an error.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from coalqa.corpus import quality
from coalqa.corpus.chunking import FRONT, UNCERTAIN, Chunk, suspect_headings
from coalqa.corpus.readers import Document, clean_text
from coalqa.jsonio import write_text_atomic
from coalqa.numbers import number_tokens

SHOW_MISSING = 10


def _chars(text: str) -> Counter:
    return Counter(ch for ch in text if not ch.isspace())


def document_report(doc: Document, chunks: list[Chunk]) -> dict[str, Any]:
    """The fidelity figures of one document and its chunks (keys in the module docstring) plus ``warnings``."""
    source = clean_text(doc.raw_text) if doc.raw_text else doc.text
    removed = "\n".join(doc.removed)
    chunk_text = "\n".join(c.text for c in chunks)
    chars_in = _chars(source) - _chars(removed)
    chars_out = _chars(chunk_text)
    nums_in = Counter(number_tokens(source)) - Counter(number_tokens(removed))
    nums_out = Counter(number_tokens(chunk_text))
    left = nums_in - nums_out
    missing_list = []
    for tok in number_tokens(source):
        if left[tok] > 0:
            missing_list.append(tok)
            left[tok] -= 1
    suspicious = quality.suspicious(doc.text)
    front = sum(1 for c in chunks if c.locator == FRONT)
    lost_chars = sum((chars_in - chars_out).values())
    warnings = []
    if missing_list:
        shown = ", ".join(missing_list[:SHOW_MISSING]) + (" …" if len(missing_list) > SHOW_MISSING else "")
        warnings.append(f"{len(missing_list)} number(s) of the source missing from the chunks: {shown}")
    if lost_chars:
        warnings.append(f"{lost_chars} character(s) of the source missing from the chunks")
    if chunks and front == len(chunks) and len(doc.text) >= 200:
        warnings.append(f"no article, clause or heading found: all {front} chunk(s) located {FRONT}")
    warnings += [f"suspicious extraction: {s}" for s in suspicious]
    if doc.unread_pages:
        pages = ", ".join(map(str, doc.unread_pages[:SHOW_MISSING])) + (" …" if len(doc.unread_pages) > SHOW_MISSING else "")
        warnings.append(f"page(s) {pages} have no text layer and were not read (--ocr never)")
    ocr = _ocr_report(doc) if doc.ocr else None
    if ocr:
        for p in ocr["bad_pages"]:
            fate = ("its OCR text left out of the chunks" if p["page"] in doc.ocr_dropped
                    else "kept; its chunks carry ocr_confidence" if p["verdict"] == "doubtful"
                    else "still in the chunks")
            nums = ", ".join(p["low_confidence_numbers"][:SHOW_MISSING]) + (
                " …" if len(p["low_confidence_numbers"]) > SHOW_MISSING else "")
            warnings.append(f"page {p['page']}: OCR {p['verdict']} ({'; '.join(p['reasons'])}); {fate}"
                            + (f"; numbers on its low-confidence lines: {nums}" if nums else ""))
        for h in ocr["suspect_headings"]:
            warnings.append(f"suspect OCR'd article number {h['label']} ({h['why']}): locator marked "
                            f"{h['label']}{UNCERTAIN}; line: {h['text'][:40]}")
    if ocr and ocr["suspect_numbers"]:
        shown = ", ".join(f"{s['number']} (page {s['page']})" for s in ocr["suspect_numbers"][:SHOW_MISSING])
        warnings.append(f"{len(ocr['suspect_numbers'])} suspect number(s) in OCR'd text (digits glued to a letter): "
                        f"{shown}")
    table_rows = {row for t in doc.tables for row in t.rows}
    cell_numbers = Counter(tok for t in doc.tables for text in t.cell_texts for tok in number_tokens(text))
    row_numbers = Counter(tok for line in chunk_text.split("\n") if line in table_rows for tok in number_tokens(line))
    extra = {
        "tables": len(doc.tables),
        "table_cells": sum(t.cells for t in doc.tables),
        "table_numbers": sum(cell_numbers.values()),
        "table_numbers_kept": sum((cell_numbers & row_numbers).values()),
    }
    if ocr:
        extra["ocr"] = ocr
    return {
        "source": doc.source,
        "path": str(doc.path),
        "title": doc.title,
        "chunks": len(chunks),
        "chars_in": sum(chars_in.values()),
        "chars_out": sum(chars_out.values()),
        "chars_lost": lost_chars,
        "numbers_in": sum(nums_in.values()),
        "numbers_out": sum(nums_out.values()),
        "numbers_missing": missing_list[:SHOW_MISSING],
        "numbers_missing_count": len(missing_list),
        "removed_lines": len(doc.removed),
        "front_chunks": front,
        "suspicious": suspicious,
        **extra,
        "warnings": warnings,
    }


def _ocr_report(doc: Document) -> dict[str, Any]:
    from coalqa.corpus.ocr import LOW_CONFIDENCE, suspect_numbers

    low = [{"page": page, "text": text, "confidence": round(conf, 4), "numbers": number_tokens(text)}
           for page, text, conf in doc.ocr_lines if conf < LOW_CONFIDENCE]
    suspect = [{"page": page, "number": run, "text": text}
               for page, text, _ in doc.ocr_lines for run in suspect_numbers(text)]
    bad_pages = []
    for page in doc.ocr_pages:
        lines = [(t, c) for p, t, c in doc.ocr_lines if p == page]
        verdict, reasons = quality.ocr_page_verdict(lines, LOW_CONFIDENCE)
        if verdict != "ok":
            bad_pages.append({"page": page, "verdict": verdict, "reasons": reasons,
                              "confidence_median": round(statistics.median(c for _, c in lines), 4),
                              "left_out": page in doc.ocr_dropped,
                              "low_confidence_numbers": [tok for t, c in lines if c < LOW_CONFIDENCE
                                                         for tok in number_tokens(t)]})
    kept = [(t, c) for p, t, c in doc.ocr_lines if p not in doc.ocr_dropped]
    confs = sorted(c for _, _, c in doc.ocr_lines)
    return {
        "pages": doc.ocr_pages,
        "pages_left_out": doc.ocr_dropped,
        "lines": len(doc.ocr_lines),
        "min_confidence": round(min(confs, default=1.0), 4),
        "median_confidence": round(statistics.median(confs), 4) if confs else None,
        "low_confidence_threshold": LOW_CONFIDENCE,
        "low_confidence": low,
        "bad_pages": bad_pages,
        # no ground truth for a scan: these count what the engine read, not what the page says
        "numbers_recognised": sum(len(number_tokens(t)) for t, _ in kept),
        "numbers_low_confidence": sum(len(number_tokens(t)) for t, c in kept if c < LOW_CONFIDENCE),
        "suspect_numbers": suspect,
        "suspect_headings": suspect_headings(doc),
    }


def _keyed(chunks: list[Chunk]) -> dict[tuple[str, str, int], Chunk]:
    """Chunks by (source, locator, n-th chunk of that source with that locator)."""
    seen: Counter = Counter()
    out = {}
    for c in chunks:
        out[(c.source, c.locator, seen[(c.source, c.locator)])] = c
        seen[(c.source, c.locator)] += 1
    return out


def compare_chunks(old: list[Chunk], new: list[Chunk]) -> dict[str, Any]:
    """What changed between two chunk lists: chunks matched by source + locator (the n-th of a repeated
    locator with the n-th), compared by content hash (``Chunk.sha``).

    Returns ``{"added": [...], "removed": [...], "changed": [...], "unchanged": n}``; entries are
    ``{"source", "locator", "sha"}`` (changed: ``old_sha``/``sha``), in file order.
    """
    before, after = _keyed(old), _keyed(new)
    entry = lambda c: {"source": c.source, "locator": c.locator, "sha": c.sha}
    changed = [
        {"source": c.source, "locator": c.locator, "old_sha": before[k].sha, "sha": c.sha}
        for k, c in after.items() if k in before and before[k].sha != c.sha
    ]
    return {
        "added": [entry(c) for k, c in after.items() if k not in before],
        "removed": [entry(c) for k, c in before.items() if k not in after],
        "changed": changed,
        "unchanged": sum(1 for k, c in after.items() if k in before and before[k].sha == c.sha),
    }


def report_path(chunks_path: str | Path) -> Path:
    """``chunks.jsonl`` → ``chunks.report.json`` (beside it, same stem)."""
    p = Path(chunks_path)
    return p.with_name(f"{p.stem if p.suffix else p.name}.report.json")


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Write the report as indented UTF-8 JSON, atomically."""
    write_text_atomic(Path(path), json.dumps(report, ensure_ascii=False, indent=2) + "\n")
