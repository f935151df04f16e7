"""Settings of ``coalqa generate`` (chunks → QA pairs), declared once with their help text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class GenerateConfig(BaseModel):
    """Every knob of the generate stage; defaults < ``--config`` YAML < command-line flags."""

    provider: Literal["zhipuai", "openai", "clause"] = Field(
        "zhipuai",
        description="zhipuai (key from ZHIPUAI_API_KEY), openai (any OpenAI-compatible endpoint, "
        "key from OPENAI_API_KEY) or clause (offline: answers are the clause text verbatim)",
    )
    clause_kinds: list[Literal["article", "fact"]] = Field(
        ["article", "fact"], min_length=1,
        description="pairs the clause generator makes: article (whole clause text) and/or fact (one sentence stating a number)",
    )
    model: str = Field("glm-4", description="model name sent to the API (ignored by --provider clause)")
    base_url: str | None = Field(None, description="API base URL, e.g. http://localhost:8000/v1 (default: the SDK's)")
    concurrency: int = Field(8, ge=1, le=256, description="chunks requested in parallel")
    pairs: str = Field("10-20", description="QA pairs asked for per chunk: N or MIN-MAX")
    max_question_chars: int = Field(120, ge=1, description="longest question kept, in characters")
    min_question_chars: int = Field(5, ge=1, description="shortest question kept, in characters")
    max_answer_chars: int = Field(1024, ge=1, description="longest answer kept, in characters")
    min_answer_chars: int = Field(2, ge=1, description="shortest answer kept, in characters")
    max_numbers_not_in_chunk: int = Field(
        0, ge=0, description="numbers an answer may state that its chunk does not (derived ones: a sum, a unit "
        "conversion the unit table lacks); 0 = every number-with-unit of the answer must occur in the chunk",
    )
    check_language: bool = Field(True, description="reject answers not written in their chunk's language (Chinese vs Latin script)")
    prompt: Path | None = Field(
        None, description="prompt template file with {text} (and optionally {max_question_chars}, "
        "{max_answer_chars}, {min_pairs}, {max_pairs}); default: the built-in qa_v1.txt"
    )
    limit: int | None = Field(None, ge=1, description="only the first N chunks (for a trial run)")
    temperature: float | None = Field(0.9, ge=0, le=2, description="sampling temperature (original design: 0.9)")
    top_p: float | None = Field(0.7, gt=0, le=1, description="nucleus sampling (original design: 0.7)")
    max_tokens: int | None = Field(None, ge=1, description="cap on reply tokens (default: the provider's)")
    timeout: float = Field(180.0, gt=0, description="seconds to wait for one API reply before retrying")
    max_retries: int = Field(6, ge=0, description="retries per chunk on 429/5xx/timeouts/dropped connections")
    retry_wait: float = Field(1.0, gt=0, description="first backoff in seconds; doubles per retry, with jitter")
    near_dup_threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity (character bigrams) above which two questions are near-duplicates"
    )
    checkpoint: Path | None = Field(
        None, description="append-only progress file (default: <output stem>.checkpoint.jsonl beside the output); "
        "records are matched to chunks by content hash, so after a regulation update a rerun with the new chunks "
        "file reuses the pairs of unchanged chunks and generates only new or changed ones"
    )
    previous_qa: Path | None = Field(
        None, description="an earlier QA file (JSON list from coalqa generate) whose pairs are reused for chunks whose "
        "content hash (chunk_sha) is unchanged, when the checkpoint is not available; the rest are generated"
    )

    @field_validator("pairs")
    @classmethod
    def _pairs_range(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", v)
        if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"expected N or MIN-MAX with 1 <= MIN <= MAX, got {v!r}")
        return v.strip()

    def pair_bounds(self) -> tuple[int, int]:
        """``pairs`` as ``(min, max)``: ``"10-20"`` → ``(10, 20)``, ``"15"`` → ``(15, 15)``."""
        lo, _, hi = self.pairs.partition("-")
        return int(lo), int(hi or lo)
