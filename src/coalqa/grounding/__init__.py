"""Grounding: answers from retrieved clauses, with their provenance — one home for ``coalqa ask --index``,
``coalqa eval --index``, ``coalqa serve --index`` and the demo (see :mod:`coalqa.grounding.answer`).

Settings: :class:`GroundingConfig` (``index``, ``context_k``, ``min_score``, ``min_expanded_score``, ``abstain``, ...), which ``AskConfig`` and so
every answering command extend; it is declared in :mod:`coalqa.retrieval.config` beside the retrieval settings whose
scores it thresholds.
"""

from coalqa.grounding.answer import (
    ABSTAIN_ANSWER,
    DEFAULT_CONTEXT_K,
    GROUNDING_KEYS,
    Grounding,
    abstention,
    answer_grounded,
    check_adapter_fits_index,
    check_index_fits,
    context_k,
    evidence,
    finish,
    retrieve_support,
    supports_question,
    with_coverage,
)
from coalqa.retrieval.config import GroundingConfig

__all__ = [
    "ABSTAIN_ANSWER",
    "DEFAULT_CONTEXT_K",
    "GROUNDING_KEYS",
    "Grounding",
    "GroundingConfig",
    "abstention",
    "answer_grounded",
    "check_adapter_fits_index",
    "check_index_fits",
    "context_k",
    "evidence",
    "finish",
    "retrieve_support",
    "supports_question",
    "with_coverage",
]
