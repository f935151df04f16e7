"""Constrained decoding of numbers: a grounded answer can write only the numbers its clauses write.

A wrong number in a safety answer can hurt someone. The number check (:mod:`coalqa.grounding`, ``unsupported_numbers``)
flags a number after it was written; this makes the model unable to write it. With retrieved clauses in the prompt
(``numbers_from_clauses``, on by default), every digit run the model generates (:data:`coalqa.numbers.NUMBER_TOKEN`
after NFKC: ``11``, ``0.75``, ``6.2.2.7``, the ``3`` of ``m3``) must be one of the digit runs of the clauses as the
prompt shows them (:func:`clause_numbers`: title, locator, text, ``[n]``); the question's own numbers and those of
earlier turns of a chat are not included, as the number check does not count them as support either.

How, per generated token and row (:class:`NumbersFromClauses`, a ``transformers`` ``LogitsProcessor``):

* a token that holds a digit (or begins with ``.``) is allowed only if, appended to the text so far, every digit run
  it closes is an allowed number and the run it leaves open is the beginning of one (``1`` of ``11``, ``0.`` of
  ``0.75``);
* while the open run is only the beginning of a number (``1`` where only ``11`` is allowed), no token without digits
  is allowed, the end of the answer included: the run may not stop there (a digit completing it is always allowed).
  Only ``max_new_tokens`` can cut it, and the number check then flags the partial number. Nothing else forces a
  digit;
* rows without clauses (``None``) are not constrained; answers without retrieval are never constrained;
* where the prompt opens a ``<think>`` block (R1-Distill's chat template), the reasoning is free and the answer after
  ``</think>`` is held, as the number check reads the answer alone.

Not constrained: numbers written in Chinese numerals (``二十米``; the number check still reads those with a unit),
and numbers spelt out in words of other languages. The constraint changes only which tokens may be chosen: greedy
answers stay deterministic, batched = one by one and streamed = whole (tested).

Cost: once per tokenizer, the tokens to check are found by decoding the vocabulary (Qwen2.5: 151,936 tokens, 310 hold
a digit after NFKC and 6,127 more begin with ``.``; ~1 s on 2 cores); per step and row, a decode of the last 32 tokens,
the check of those tokens being cached per number being written. Measured (README): the demo's 30 grounded answers
took 130 s instead of 119 s.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from coalqa.numbers import NUMBER_TOKEN, number_tokens
from coalqa.template import THINK_CLOSE, PromptFormat, user_message

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

TAIL_TOKENS = 32  # generated tokens decoded to find the number being written (a digit run is far shorter)


def clause_numbers(fmt: PromptFormat, context: Sequence[dict] | None) -> frozenset[str] | None:
    """The numbers an answer from the clauses ``context`` may write: the digit runs of the clauses as the prompt
    shows them (:func:`coalqa.template.user_message` without the question), as :func:`coalqa.numbers.number_tokens`
    reads them (after NFKC: ``30ｍ３/s，6.2.1`` → ``30``, ``3``, ``6.2.1``); ``None`` (not constrained) without clauses."""
    if not context:
        return None
    return frozenset(number_tokens(user_message("", fmt, context)))


@lru_cache(maxsize=4)
def digit_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Ids and NFKC texts of the vocabulary's tokens that hold an ASCII digit after NFKC or begin with ``.``
    (special tokens left out); cached per tokenizer object."""
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    ids, kept = [], []
    for i, text in enumerate(texts):
        text = unicodedata.normalize("NFKC", text)
        if i not in special and (text.startswith(".") or any(c.isascii() and c.isdigit() for c in text)):
            ids.append(i)
            kept.append(text)
    return tuple(ids), tuple(kept)


def _prefixes(numbers: frozenset[str]) -> frozenset[str]:
    return frozenset(n[:k] for n in numbers for k in range(1, len(n) + 1))


def _open_run(text: str):
    """The digit run ``text`` ends with, if any (a trailing ``.`` after it is kept out of the match)."""
    last = None
    for m in NUMBER_TOKEN.finditer(text, max(0, len(text) - 64)):
        last = m
    if last is not None and (last.end() == len(text) or (last.end() == len(text) - 1 and text.endswith("."))):
        return last
    return None


def token_allowed(text: str, piece: str, allowed: frozenset[str], prefixes: frozenset[str]) -> bool:
    """Whether ``piece`` (a token's NFKC text) may follow the generated ``text`` (NFKC): every digit run it closes is
    in ``allowed``, the one it leaves open is in ``prefixes`` (a trailing ``.`` after a run: the run is allowed, or
    run + ``.`` begins an allowed decimal)."""
    joined = text + piece
    start = len(text)
    open_run = _open_run(text)
    if open_run is not None:
        start = open_run.start()
    for m in NUMBER_TOKEN.finditer(joined, start):
        run = m.group()
        if m.end() == len(joined):
            if run not in prefixes:
                return False
        elif m.end() == len(joined) - 1 and joined.endswith("."):
            if run not in allowed and run + "." not in prefixes:
                return False
        elif run not in allowed:
            return False
    return True


class NumbersFromClauses:
    """``LogitsProcessor`` for ``model.generate``: each row may write only the numbers of its clauses (module
    docstring).

    Args:
        tokenizer: the model's tokenizer.
        numbers: per batch row, the allowed digit runs (:func:`clause_numbers`), ``None`` for a row not constrained.
        prompt_width: length of the (left-padded) prompt; generated tokens follow it.
        opens_think: the prompt ends inside an opened ``<think>`` block: each row is free until it writes ``</think>``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, numbers: Sequence[frozenset[str] | None],
                 prompt_width: int, opens_think: bool = False) -> None:
        self.tokenizer, self.numbers, self.width = tokenizer, list(numbers), prompt_width
        self._answering = [not opens_think] * len(self.numbers)  # past the reasoning (if any)
        self.prefixes = [None if n is None else _prefixes(n) for n in self.numbers]
        self.ids, self.texts = digit_tokens(tokenizer)
        self._other = None
        self._banned: list[dict[str, list[int]]] = [{} for _ in self.numbers]  # per row: open run → banned ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if self._other is None:  # tokens without digits (the model's vocabulary may be padded beyond the tokenizer's)
            self._other = torch.ones(scores.shape[1], dtype=torch.bool, device=scores.device)
            self._other[[i for i in self.ids if i < scores.shape[1]]] = False
        for row, allowed in enumerate(self.numbers):
            if allowed is None:
                continue
            prefixes = self.prefixes[row]
            generated = input_ids[row, self.width:][-TAIL_TOKENS:].tolist()
            text = self.tokenizer.decode(generated)  # special tokens kept: a tokenizer may count </think> among them
            if THINK_CLOSE in text:  # the answer begins after it (a reasoning model's last reasoning token)
                self._answering[row] = True
                text = text[text.rindex(THINK_CLOSE) + len(THINK_CLOSE):]
            if not self._answering[row]:
                continue
            text = unicodedata.normalize("NFKC", text)
            open_run = _open_run(text)
            state = "" if open_run is None else text[open_run.start():]  # all the check depends on
            banned = self._banned[row].get(state)
            if banned is None:
                banned = self._banned[row][state] = [i for i, piece in zip(self.ids, self.texts) if i < scores.shape[1]
                                                     and not token_allowed(state, piece, allowed, prefixes)]
            if banned:
                scores[row, banned] = float("-inf")
            if open_run is not None and open_run.group() not in allowed:
                scores[row, self._other] = float("-inf")  # only the beginning of a number (1 of 11, 0. of 0.75)
        return scores

