"""Settings of the corpus stage (``coalqa corpus``), declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CorpusConfig(BaseModel):
    """Knobs for reading regulation files and cutting them into chunks."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(
        1500,
        ge=100,
        description="Largest chunk in characters. Small neighbouring articles/clauses are merged up to it and "
        "an oversize one is split at sentence boundaries. 1500 Chinese characters hold about 10-20 "
        "checkable facts, the size of one QA-generation prompt.",
    )
    soffice: str | None = Field(
        None,
        description="LibreOffice executable used to convert legacy binary .doc files "
        "(default: look for soffice/libreoffice on PATH; without it such files are skipped with a warning).",
    )
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="OCR (offline, rapidocr-onnxruntime) for PDF pages without usable text and for .png/.jpg scans: "
        "auto = pages with no text layer or a garbled one, always = every PDF page, never = skip them (an "
        "image-only PDF is then reported and skipped). OCR'd chunks carry ocr: true and their lowest confidence.",
    )
    ocr_dpi: int = Field(
        200,
        ge=72,
        le=600,
        description="Resolution PDF pages are rendered at for OCR (dots per inch). At 200, bench/ocr.py found every "
        "number exact on clean 200-dpi and on 150-dpi scanned pages (other values: measure with --render_dpi).",
    )
    strict: bool = Field(
        False,
        description="Fail (exit 2, chunks not written) when a document loses a number or a character on the way to "
        "its chunks, looks garbled, has no structure (every chunk 卷首), has a suspect number in OCR'd text "
        "(digits glued to a letter, S3/O.5/l0m), or cannot be read. The fidelity report "
        "<chunks stem>.report.json is written either way.",
    )
    previous: Path | None = Field(
        None,
        description="chunks.jsonl of an earlier run (e.g. before a regulation update): report which chunks were "
        "added, removed or changed (matched by source + locator, compared by content hash). `coalqa generate` "
        "then regenerates QA pairs only for those.",
    )
