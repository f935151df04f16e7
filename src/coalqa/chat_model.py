"""One way to load and answer: :class:`ChatModel`, shared by ``coalqa ask``, ``coalqa serve``, ``coalqa eval`` and the demo
(the shape of LLaMA-Factory's ``ChatModel``, shared by its CLI chat, API and web UI; a small module here, not a framework).

:func:`start_model` is the one start-up, in this order:

1. the index (``config.index``), loaded before the model so that a missing or stale index fails in a second, and checked
   against the adapter's ``train_config.yaml`` (:func:`coalqa.grounding.check_adapter_fits_index`);
2. a warning when chunks the adapter was trained on have changed (:func:`coalqa.train.provenance.stale_chunks`);
3. the base model + adapter (:func:`coalqa.ask.inference.load_model`), whose notes are collected, never raised as
   warnings;
4. the index against the loaded model (:func:`coalqa.grounding.check_index_fits`), then one line on how answers are
   grounded, or a note that an adapter trained with retrieved clauses is being run without an index.

Notes and warnings reach the user in one place, :func:`start_model`'s ``console``: printed once each
(``note: …``/``warning: …``), or, with ``console=None``, only kept in :attr:`ChatModel.notes`.

:meth:`ChatModel.prompt_format_only` is the same object without weights: what a proxy in front of another server
(``coalqa serve --backend_url``) and the pre-loading index check need of an adapter (prompt format, training context).

Raises (:func:`start_model`): :class:`coalqa.errors.CoalqaError` for a missing/stale index, an index of other chunks
than the adapter's, or any loading error of :func:`coalqa.ask.inference.load_model`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from coalqa.errors import CoalqaError

if TYPE_CHECKING:
    from rich.console import Console

    from coalqa.ask.config import AskConfig
    from coalqa.ask.inference import LoadedModel
    from coalqa.retrieval.index import Index
    from coalqa.template import PromptFormat


@dataclass
class ChatModel:
    """A model ready to answer, with what it answers from.

    Attributes:
        loaded: the base + adapter (:class:`coalqa.ask.inference.LoadedModel`); ``None`` for a prompt format without
            weights (:meth:`prompt_format_only`).
        fmt: the prompt format (the adapter's, as trained; ``--system_prompt`` applied).
        train_context: how the adapter was trained with retrieved clauses (``index``, ``context_k``,
            ``index_fingerprint``, ``oracle_probability``), ``None`` for one trained on questions alone.
        adapter: the adapter folder, ``None`` for a base alone.
        index: the retrieval index answers are grounded on, ``None`` for plain answers.
        notes: what loading noticed (printed once by :func:`start_model` when it was given a console).
    """

    loaded: LoadedModel | None
    fmt: PromptFormat
    train_context: dict | None = None
    adapter: Path | None = None
    index: Index | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def prompt_format_only(cls, peft_model: str | Path | None, system_prompt: str | None = None) -> ChatModel:
        """What the local model would tell from the adapter folder, without loading weights: its prompt format (the
        recorded one, or a bare base's without a system prompt; ``system_prompt`` replaces the system prompt,
        :func:`coalqa.template.inference_format`), ``train_context`` and ``adapter``.

        Raises:
            CoalqaError: the adapter folder is missing or unreadable, or records an invalid prompt format.
        """
        from coalqa.ask.inference import read_adapter_folder, training_context
        from coalqa.template import PromptFormat, inference_format

        if peft_model is None:
            return cls(None, inference_format(None, system_prompt))
        _, train_cfg = read_adapter_folder(peft_model)
        try:
            trained = PromptFormat(**{k: train_cfg[k] for k in PromptFormat.model_fields if k in train_cfg})
        except ValueError as e:
            raise CoalqaError(f"{peft_model}: invalid prompt format in train_config.yaml: {e}") from e
        return cls(None, inference_format(trained, system_prompt), training_context(train_cfg), Path(peft_model))

    def with_format(self, fmt: PromptFormat) -> ChatModel:
        """The same model prompted with ``fmt`` (the demo prompts its base exactly as the fine-tuned model)."""
        loaded = replace(self.loaded, fmt=fmt) if self.loaded is not None else None
        return replace(self, loaded=loaded, fmt=fmt)

    def answer(
        self, questions: list[str], config: AskConfig, *, progress: bool = True,
        on_batch: Callable[[list[int], list[dict]], None] | None = None,
    ) -> list[dict]:
        """Answer ``questions`` in batches: grounded on :attr:`index` when there is one
        (:func:`coalqa.grounding.answer_grounded`), else plain (:func:`coalqa.ask.inference.answer`); see those for
        the records returned (input order) and ``on_batch``.

        Raises:
            CoalqaError: an empty question, or no weights (:meth:`prompt_format_only`).
        """
        if self.loaded is None:
            raise CoalqaError("this model has no weights (a prompt format only): it cannot answer")
        if self.index is not None:
            from coalqa.grounding import answer_grounded

            return answer_grounded(self.loaded, self.index, questions, config, progress=progress, on_batch=on_batch)
        from coalqa.ask.inference import answer

        return answer(self.loaded, questions, config, progress=progress, on_batch=on_batch)

    def summary(self, *, template: bool = False) -> str:
        """One line on what was loaded: base, adapter, 4-bit, compute dtype (why), [template,] system prompt."""
        m = self.loaded
        if m is None:
            raise CoalqaError("no weights loaded: nothing to summarise")
        system = repr(m.fmt.system_prompt[:20] + "…") if m.fmt.system_prompt else "none"
        return (f"base {m.base} · adapter {m.adapter or '(none)'} · "
                f"{'4-bit NF4, ' if m.load_in_4bit else ''}{m.dtype} ({m.dtype_reason}) · "
                + (f"template {m.fmt.template}/{m.fmt.think} · " if template else "")
                + f"system prompt {system}")


def load_index_for(peft_model: str | Path | None, config: AskConfig, *, use_adapter: bool = True) -> Index | None:
    """``config.index`` loaded (``None`` when not set) and, for an adapter, checked against the index it was trained
    with, before any weights load (:func:`coalqa.grounding.check_adapter_fits_index`).

    Raises:
        CoalqaError: a missing or stale index, or one holding other chunks than the adapter's.
    """
    if config.index is None:
        return None
    from coalqa.retrieval import load_index

    index = load_index(config.index)  # before the model: a missing or stale index fails in a second
    if peft_model is not None and use_adapter:
        from coalqa.grounding import check_adapter_fits_index

        check_adapter_fits_index(peft_model, index, config)
    return index


def start_model(
    peft_model: str | Path | None,
    config: AskConfig,
    *,
    use_adapter: bool = True,
    console: Console | None = None,
    index: Index | None | bool = True,
) -> ChatModel:
    """Load base + adapter (+ index) with every check, and report the notes once (see the module docstring).

    Args:
        peft_model: adapter folder from ``coalqa train``; ``None``: ``config.model_name_or_path`` alone.
        config: the loading settings (``model_name_or_path``, ``load_in_4bit``, ``dtype``, ``system_prompt``) and the
            grounding ones (``index``, ``context_k``, ``min_score``, ``abstain``, ``check_index``).
        use_adapter: ``False`` serves the adapter's base alone with the adapter's prompt format (``--no-adapter``).
        console: where notes, warnings and the grounding line are printed (once each); ``None``: kept in ``notes``.
        index: ``True`` loads ``config.index`` (when set); an :class:`coalqa.retrieval.Index` already loaded (and
            checked with :func:`load_index_for`) is used as it is; ``None``/``False``: plain answers.

    Returns:
        the :class:`ChatModel`.

    Raises:
        CoalqaError: see the module docstring.
    """
    from rich.markup import escape

    from coalqa.ask.inference import load_model

    if index is True:
        index = load_index_for(peft_model, config, use_adapter=use_adapter)
    if index is False:
        index = None

    def say(kind: str, text: str) -> None:
        if console is not None:
            console.print(f"[yellow]{kind}:[/] {escape(text)}")

    if peft_model is not None and use_adapter:
        from coalqa.train.provenance import stale_chunks

        stale = stale_chunks(peft_model)
        if stale:
            say("warning", stale)
    if console is not None:
        console.print(f"loading {peft_model or config.model_name_or_path} …", style="dim", markup=False)
    with warnings.catch_warnings():  # the notes are reported below, once, without a source line
        warnings.filterwarnings("ignore", category=UserWarning, module="coalqa")
        loaded = load_model(peft_model, model_name_or_path=config.model_name_or_path, load_in_4bit=config.load_in_4bit,
                            dtype=config.dtype, use_adapter=use_adapter, system_prompt=config.system_prompt)
    for note in loaded.notes:
        say("note", note)
    model = ChatModel(loaded, loaded.fmt, loaded.train_context, loaded.adapter, index, list(loaded.notes))
    announce_grounding(model, config, console)
    return model


def announce_grounding(model: ChatModel, config: AskConfig, console: Console | None) -> None:
    """Check ``model.index`` against the adapter's (:func:`coalqa.grounding.check_index_fits`) and say how answers are
    grounded (one dim line), or note that an adapter trained with retrieved clauses runs without an index.

    Raises:
        CoalqaError: the index holds other chunks than the one the adapter was trained with.
    """
    from rich.markup import escape

    if model.index is not None:
        from coalqa.grounding import check_index_fits, context_k

        check_index_fits(model, model.index, config)
        if console is not None:
            console.print(f"grounded on {model.index.path} ({model.index.manifest['chunks']} chunks): "
                          f"{context_k(model, config)} clauses per question, min_score {config.min_score}, "
                          f"{'abstain' if config.abstain else 'answer'} when none supports it", style="dim", markup=False)
    elif model.train_context and console is not None:
        console.print(f"[yellow]note:[/] this adapter was trained to answer from retrieved clauses (index "
                      f"{escape(str(model.train_context.get('index')))}); pass --index for grounded answers")
