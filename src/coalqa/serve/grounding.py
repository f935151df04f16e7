"""Grounded answers in ``coalqa serve --index DIR``: the steps of :func:`coalqa.grounding.answer_grounded`,
one request at a time, so that streaming and batching stay the server's.

Per request, exactly what ``coalqa ask --index`` does per question: :func:`~coalqa.grounding.retrieve_support`
picks the supporting clauses (their text cut as the adapter's prompt format says); with none, the reply is the
abstention (:func:`~coalqa.grounding.abstention`: nothing generated) when ``abstain`` is on; otherwise the clauses go
into the prompt (:func:`coalqa.template.encode_prompt` / :func:`coalqa.template.user_message`) and the finished
answer gets its ``citations``, ``evidence`` and ``unsupported_numbers`` from :func:`~coalqa.grounding.finish`.
They are sent as extra top-level fields of the response (and of the first and last stream chunks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coalqa.ask.inference import LoadedModel
    from coalqa.chat_model import ChatModel
    from coalqa.retrieval.index import Index
    from coalqa.serve.config import ServeConfig


class Grounder:
    """Retrieval and answer checks against one loaded index (:func:`coalqa.retrieval.load_index`).

    Args:
        index: the loaded index.
        config: the :class:`coalqa.serve.ServeConfig` (``context_k``, ``min_score``, ``abstain``, ...).
        loaded: the served model (:class:`coalqa.ask.LoadedModel`), or an object with its ``train_context``,
            ``adapter`` and ``fmt`` in proxy mode; its training context decides ``context_k`` and is checked against
            the index (:func:`coalqa.grounding.check_index_fits`).

    Raises:
        CoalqaError: the index holds other chunks than the one the adapter was trained with.
    """

    def __init__(self, index: Index, config: ServeConfig, loaded: LoadedModel | ChatModel) -> None:
        from coalqa.grounding import ABSTAIN_ANSWER, check_index_fits, context_k

        check_index_fits(loaded, index, config)
        self.index, self.config = index, config
        self.k = context_k(loaded, config)
        self.clause_chars = loaded.fmt.clause_chars
        self.abstention_text = ABSTAIN_ANSWER

    def retrieve(self, question: str):
        """The :class:`coalqa.grounding.Grounding` of ``question`` (its ``context`` goes into the prompt)."""
        from coalqa.grounding import retrieve_support

        return retrieve_support(self.index, question, self.config, self.k, self.clause_chars)

    def abstains(self, grounding) -> bool:
        """True when no clause supports the question and the server abstains instead of answering."""
        return not grounding.supporting and self.config.abstain

    def fields(self, grounding, outcome) -> dict:
        """The grounding fields of a reply: ``grounded``, ``abstained``, ``citations``, ``evidence``,
        ``unsupported_numbers`` of the finished ``outcome`` (an :class:`coalqa.serve.engine.Outcome`); before the
        answer exists (``outcome`` ``None``, the first stream chunk) only ``grounded``, ``citations``, ``evidence``."""
        from coalqa.grounding import GROUNDING_KEYS, abstention, finish

        if self.abstains(grounding):
            record = abstention(grounding)
        elif outcome is None:
            record = finish(self.index, grounding, {"answer": ""}, self.config)
            return {k: record[k] for k in ("grounded", "citations", "evidence")}
        else:
            record = finish(self.index, grounding, {"answer": outcome.answer}, self.config)
        return {k: record[k] for k in GROUNDING_KEYS}

    def clause(self, chunk_id: str) -> dict | None:
        """A cited clause for the page: ``chunk_id``, ``source``, ``title``, ``locator``, ``heading``, ``text``."""
        chunk = self.index.chunk(chunk_id)
        if chunk is None:
            return None
        return {"chunk_id": chunk_id, **{k: chunk.get(k) for k in ("source", "title", "locator", "heading", "text")}}
