"""Settings of the corpus stage (``coalqa corpus``), declared once."""

from __future__ import annotations

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
