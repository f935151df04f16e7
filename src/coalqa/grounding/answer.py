"""Grounded answers: the retrieved clauses go into the prompt, and every answer comes back with its provenance.

:func:`answer_grounded` is the one function that answers with grounding (``coalqa ask --index``, ``coalqa eval
--index``, the demo, and a later OpenAI-compatible server all call it). Per question:

1. retrieve ``context_k`` clauses (:meth:`coalqa.retrieval.Index.search`); a clause *supports* the question
   (:func:`supports_question`) when the BM25 score of the question's own words reaches ``min_score``, or when it
   holds at least one of them and its score counting the expansion terms (``expanded``: the whole clause and its
   best sentence window, the lower) reaches ``min_expanded_score``, or when it holds one of them and its best
   sentences state at least ``min_coverage`` of the question's content characters, directly or through the expansion
   table (``coverage``, :meth:`coalqa.retrieval.Index.coverage`: short everyday questions) (or, in a hybrid index,
   when its cosine similarity reaches ``min_similarity``); clauses that do not are never put into the prompt nor cited;
2. no supporting clause: abstain (the answer says no supporting clause was found; no generation) or, with
   ``abstain`` off, answer from memory and mark the result ``grounded: false``;
3. otherwise answer with the supporting clauses in the prompt (:func:`coalqa.template.user_message`), and add

   * ``citations`` — ``[{chunk_id, source, title, locator, score}]``, the clauses the answer was given;
   * ``evidence`` — ``[{chunk_id, title, locator, text}]``, the sentences of those clauses that best match the
     question (summed BM25 IDF of the question's tokens they hold), quoted verbatim: shown beside the answer, never
     counted as part of it;
   * ``unsupported_numbers`` — every number with a unit in the answer that none of the cited clauses states
     (:func:`coalqa.numbers.unsupported_quantities`: NFKC, units scaled, ``11小时`` = ``11h``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coalqa.ask.config import AskConfig
from coalqa.errors import CoalqaError
from coalqa.numbers import unsupported_quantities
from coalqa.retrieval.config import GroundingConfig

if TYPE_CHECKING:
    from coalqa.ask.inference import LoadedModel
    from coalqa.chat_model import ChatModel
    from coalqa.retrieval.index import Index

DEFAULT_CONTEXT_K = 3
ABSTAIN_ANSWER = "未找到能支持回答该问题的规程条款，不作回答。请换一种问法，或直接查阅规程原文。"
GROUNDING_KEYS = ("grounded", "abstained", "citations", "evidence", "unsupported_numbers")


@dataclass
class Grounding:
    """What retrieval found for one question: ``hits`` (all retrieved), ``supporting`` (those put into the prompt)."""

    question: str
    hits: list[dict]
    supporting: list[dict] = field(default_factory=list)

    context: list[dict] | None = None  # the clauses for the prompt (None: no supporting clause, the question alone)


def context_k(loaded: LoadedModel | ChatModel, config: GroundingConfig) -> int:
    """Clauses per prompt: ``config.context_k``, else the adapter's training ``context_k``, else 3."""
    trained = (getattr(loaded, "train_context", None) or {}).get("context_k")
    return config.context_k or trained or DEFAULT_CONTEXT_K


def check_index_fits(loaded: LoadedModel | ChatModel, index: Index, config: GroundingConfig) -> None:
    """Refuse an index that holds other chunks than the one the adapter was trained with (``check_index``).

    Raises:
        CoalqaError: the fingerprints differ (both indexes named, with the fixes).
    """
    trained = getattr(loaded, "train_context", None) or {}
    recorded = trained.get("index_fingerprint")
    if config.check_index and recorded and recorded != index.fingerprint:
        raise CoalqaError(
            f"index {index.path} holds other chunks (fingerprint {index.fingerprint}) than the index the adapter "
            f"{loaded.adapter} was trained with ({trained.get('index')}, fingerprint {recorded}); pass --index "
            f"{trained.get('index')}, rebuild that index from the chunk files of the adapter's QA data, or use this one anyway "
            "(coalqa ask --no-check_index, coalqa eval --check_index false)"
        )


def check_adapter_fits_index(peft_model: str | Path, index: Index, config: GroundingConfig) -> None:
    """:func:`check_index_fits` from the adapter folder's ``train_config.yaml`` alone, before any weights are loaded,
    so that a wrong ``--index`` is refused in a second, not after the model has loaded.

    Raises:
        CoalqaError: as :func:`check_index_fits`; the adapter folder is missing or unreadable.
    """
    from coalqa.chat_model import ChatModel

    check_index_fits(ChatModel.prompt_format_only(peft_model), index, config)


COVERAGE_CHARS = 150  # coverage is measured on a clause's best-matching sentences, up to this many characters (~2)


def supports_question(hit: dict, config: GroundingConfig) -> bool:
    """Whether a retrieved clause (a :meth:`coalqa.retrieval.Index.search` hit) supports its question: the support
    gate of the module docstring, step 1. ``bm25``: the question's own words on the clause; ``expanded``: with the
    expansion terms at their weight, the lower of the whole clause and its best sentence window (absent in hits of
    older callers: 0); ``coverage``: added by :func:`with_coverage` (absent: 0)."""
    own = hit["bm25"]
    if own > 0 and (own >= config.min_score
                    or config.min_expanded_score is not None and hit.get("expanded", 0.0) >= config.min_expanded_score
                    or config.min_coverage is not None and hit.get("coverage", 0.0) >= config.min_coverage):
        return True
    return hit.get("dense", -1.0) >= config.min_similarity


def with_coverage(index: Index, question: str, hits: list[dict], config: GroundingConfig) -> list[dict]:
    """``hits`` with ``coverage`` (:meth:`coalqa.retrieval.Index.coverage` of ``question`` on the clause's best
    sentences, up to :data:`COVERAGE_CHARS` characters; rounded to 4 places) added to each that holds one of the
    question's own words, when ``config.min_coverage`` is set; else unchanged."""
    if config.min_coverage is None:
        return hits
    return [h | {"coverage": round(index.coverage(question, index.focus(question, h["text"], COVERAGE_CHARS)), 4)}
            if h["bm25"] > 0 else h for h in hits]


def retrieve_support(index: Index, question: str, config: GroundingConfig, k: int, clause_chars: int = 0) -> Grounding:
    """Retrieve ``k`` clauses for ``question`` and keep those that support it (see the module docstring); their
    prompt text is cut to ``clause_chars`` (``PromptFormat.clause_chars``, :meth:`coalqa.retrieval.Index.focus`)."""
    hits = with_coverage(index, question, index.search(question, k), config)
    supporting = [h for h in hits if supports_question(h, config)]
    context = [h | {"text": index.focus(question, h["text"], clause_chars)} for h in supporting] or None
    return Grounding(question, hits, supporting, context)


def evidence(index: Index, question: str, clauses: Sequence[dict], n: int) -> list[dict]:
    """The ``n`` sentences of ``clauses`` that best match ``question``, verbatim, best first (ties: clause order).

    A sentence scores the summed BM25 IDF of the distinct question tokens it holds; sentences scoring 0 are left out.
    """
    if n <= 0 or not clauses:
        return []
    scored = []
    for ci, c in enumerate(clauses):
        for si, (score, sentence) in enumerate(index.sentence_scores(question, c["text"])):
            if score > 0:
                scored.append((-score, ci, si, {"chunk_id": c["chunk_id"], "title": c["title"],
                                               "locator": c["locator"], "text": sentence}))
    return [item for *_, item in sorted(scored, key=lambda s: s[:3])[:n]]


def finish(index: Index, grounding: Grounding, result: dict, config: GroundingConfig) -> dict:
    """``result`` (an :func:`coalqa.ask.answer` record) with ``grounded``, ``abstained``, ``citations``,
    ``evidence`` and ``unsupported_numbers`` added (see the module docstring)."""
    cited = grounding.supporting
    unsupported = unsupported_quantities(result.get("answer") or "", [c["text"] for c in cited])
    return result | {
        "grounded": bool(cited),
        "abstained": False,
        "citations": [{k: c[k] for k in ("chunk_id", "source", "title", "locator", "score")}
                      | ({"ocr": True} if c.get("ocr") else {}) for c in cited],  # ocr: the clause was read by OCR
        "evidence": evidence(index, grounding.question, cited, config.evidence_sentences),
        "unsupported_numbers": [str(q) for q in unsupported],
    }


def abstention(grounding: Grounding) -> dict:
    """The result for a question no clause supports: the abstention text, nothing generated, nothing cited."""
    return {"question": grounding.question, "answer": ABSTAIN_ANSWER, "reasoning": "", "tokens": 0, "seconds": 0.0,
            "finished_reasoning": True, "cut": False, "grounded": False, "abstained": True, "citations": [], "evidence": [],
            "unsupported_numbers": [],
            "best_score": max((h["bm25"] for h in grounding.hits), default=0.0)}


def answer_grounded(
    loaded: LoadedModel,
    index: Index,
    questions: list[str],
    config: AskConfig | None = None,
    *,
    progress: bool = True,
    on_batch: Callable[[list[int], list[dict]], None] | None = None,
) -> list[dict]:
    """Answer ``questions`` from the clauses of ``index`` (a loaded :class:`coalqa.retrieval.Index`).

    Returns:
        one record per question, in input order: the :func:`coalqa.ask.answer` fields (``question``, ``answer``,
        ``reasoning``, ``tokens``, ``seconds``, ``finished_reasoning``) plus ``grounded``, ``abstained``,
        ``citations``, ``evidence``, ``unsupported_numbers`` (see the module docstring).

    Args:
        on_batch: called with input indices and their records as they are done (abstentions first, at once).

    Raises:
        CoalqaError: an empty question; an index other than the adapter's (see :func:`check_index_fits`).
    """
    from coalqa.ask.inference import answer, check_questions

    cfg = config or AskConfig()
    check_questions(questions)
    check_index_fits(loaded, index, cfg)
    k = context_k(loaded, cfg)
    groundings = [retrieve_support(index, q, cfg, k, loaded.fmt.clause_chars) for q in questions]
    results: list[dict | None] = [None] * len(questions)
    abstained = [i for i, g in enumerate(groundings) if not g.supporting and cfg.abstain]
    for i in abstained:
        results[i] = abstention(groundings[i])
    if abstained and on_batch is not None:
        on_batch(abstained, [results[i] for i in abstained])
    todo = [i for i in range(len(questions)) if results[i] is None]

    def done(indices: list[int], records: list[dict]) -> None:
        finished = [finish(index, groundings[todo[j]], r, cfg) for j, r in zip(indices, records)]
        for j, r in zip(indices, finished):
            results[todo[j]] = r
        if on_batch is not None:
            on_batch([todo[j] for j in indices], finished)

    if todo:
        answer(loaded, [questions[i] for i in todo], cfg, progress=progress, on_batch=done,
               contexts=[groundings[i].context for i in todo])
    return results  # type: ignore[return-value]
