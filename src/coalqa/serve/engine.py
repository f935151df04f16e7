"""The local model behind ``coalqa serve``: one model, loaded once, answering requests in batches.

Requests wait in a queue; one worker thread takes up to ``batch_size`` of them that share the same sampling
settings (the oldest first, after waiting ``batch_window_ms`` for others to arrive) and generates them together
through :func:`coalqa.ask.inference.generate_batch` — the left-padded batched generation of ``coalqa ask``, with
the same prompt (:func:`coalqa.template.encode_prompt`) and ``<think>`` handling (:mod:`coalqa.template`).
A batch runs until its last row ends; a request that comes meanwhile waits for the next batch.

One stopping criterion, called by ``generate`` after every token, does the per-row work: it appends the row's new
token, ends the row on EOS, on its own ``max_tokens``, on a stop string or when its client went away (so a
disconnected client's generation stops at the next token and its slot is free), and, for streaming requests,
decodes the row's whole output so far and sends only the new text. Decoding the prefix (not each token alone)
keeps a CJK character that byte-level BPE splits over two tokens whole; the pieces sent, joined, equal the
non-streamed reply (:func:`coalqa.template.split_reasoning_so_far`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coalqa.ask.constrain import clause_numbers
from coalqa.serve.protocol import ApiError, Turn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from coalqa.ask.inference import LoadedModel

log = logging.getLogger("coalqa.serve")


@dataclass
class Outcome:
    """How a generation ended: the full ``answer`` and ``reasoning``, ``finish_reason`` (``stop``, ``length``,
    ``cancelled``), token counts (``None`` when a backend reports none) and ``finished_reasoning`` (False when
    the token limit cut the reasoning: no answer)."""

    answer: str
    reasoning: str
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finished_reasoning: bool = True


class Generation:
    """One admitted request. Its events arrive on :attr:`events` (an ``asyncio.Queue``) from any thread:
    ``("delta", reasoning_piece, answer_piece)`` while streaming, then ``("done", Outcome)`` or
    ``("error", ApiError)``. :meth:`cancel` stops it at the next token (or before it starts)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, turn: Turn) -> None:
        self.turn = turn
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._loop = loop
        self._on_cancel = None
        self.numbers: frozenset[str] | None = None  # the only numbers it may write (grounded; coalqa.ask.constrain)

    def emit(self, *event) -> None:
        """Queue an event for the request's handler (thread-safe)."""
        self._loop.call_soon_threadsafe(self.events.put_nowait, event)

    def cancel(self) -> None:
        """The client went away: stop generating for it and free its slot."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            if self._on_cancel is not None:
                self._on_cancel(self)


@dataclass
class Stats:
    """Counters reported by ``GET /health``."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    rejected: int = 0
    failed: int = 0
    tokens_generated: int = 0
    batches: int = 0
    largest_batch: int = 0
    batch_seconds: deque = field(default_factory=lambda: deque(maxlen=20))

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "batch_seconds"}

    def retry_after(self, waiting: int, batch_size: int) -> int:
        """Seconds until a slot is likely free: the recent mean batch time × the batches ahead (at least 1)."""
        mean = sum(self.batch_seconds) / len(self.batch_seconds) if self.batch_seconds else 1.0
        return max(1, math.ceil(mean * max(1, math.ceil(waiting / batch_size))))


class TextDeltas:
    """The text of a growing generation, as pieces to send: decode the whole prefix, send only what is new.

    Decoding the prefix, not each token alone, keeps a character that byte-level BPE splits over two tokens whole
    (a trailing U+FFFD is held back until the next token completes it). Reasoning and answer are split with
    :func:`coalqa.template.split_reasoning_so_far`; the answer is cut before the first ``stop`` string, and what
    may be the start of one is held back. The pieces, joined, equal the final parts (:meth:`parts` with
    ``final=True``: :func:`coalqa.template.split_reasoning`, then the stop cut).

    Args:
        tokenizer: decodes ids (``skip_special_tokens=True``, as ``coalqa ask`` does).
        opens_think, may_think: see :func:`coalqa.template.split_reasoning_so_far`.
        stop: stop strings (OpenAI's ``stop``), matched in the answer only.
        lock: held while decoding (the tokenizer is shared with the request handlers).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, opens_think: bool, may_think: bool, stop=(), lock=None) -> None:
        self.tokenizer, self.opens_think, self.may_think, self.stop = tokenizer, opens_think, may_think, list(stop)
        self.lock = lock or threading.Lock()
        self.sent_reasoning = self.sent_answer = ""

    def parts(self, tokens: list[int], final: bool) -> tuple[str, str, bool, bool]:
        """``(reasoning, answer, finished_reasoning, stop_hit)`` of ``tokens`` (so far, or ``final``)."""
        from coalqa.template import hold_back_partial, split_reasoning, split_reasoning_so_far

        with self.lock:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        finished_reasoning = True
        if final:
            reasoning, answer, finished_reasoning = split_reasoning(text, self.opens_think)
        else:
            reasoning, answer = split_reasoning_so_far(text.rstrip("\ufffd"), self.opens_think, self.may_think)
        hits = [answer.find(s) for s in self.stop if s in answer]
        if hits:
            return reasoning, answer[: min(hits)].rstrip(), finished_reasoning, True
        if not final:
            for s in self.stop:
                answer = hold_back_partial(answer, s)
            answer = answer.rstrip()
        return reasoning, answer, finished_reasoning, False

    def pieces(self, reasoning: str, answer: str) -> tuple[str, str]:
        """What of ``reasoning``/``answer`` was not sent yet (and count it as sent now)."""
        dr = reasoning[len(self.sent_reasoning):] if reasoning.startswith(self.sent_reasoning) else ""
        da = answer[len(self.sent_answer):] if answer.startswith(self.sent_answer) else ""
        self.sent_reasoning += dr
        self.sent_answer += da
        return dr, da


class _Row:
    """The worker's state of one request in a running batch (touched by the generation thread only)."""

    def __init__(self, gen: Generation, prompt_ids: list[int], engine: LocalEngine) -> None:
        self.gen, self.prompt_ids, self.engine = gen, prompt_ids, engine
        self.tokens: list[int] = []
        self.text = TextDeltas(engine.loaded.tokenizer, engine.opens_think, engine.may_think, gen.turn.stop,
                               engine.tokenizer_lock)
        self.finished = False

    def _send(self, reasoning: str, answer: str) -> None:
        if self.gen.turn.stream:
            dr, da = self.text.pieces(reasoning, answer)
            if dr or da:
                self.gen.emit("delta", dr, da)

    def step(self, token: int) -> None:
        """Take the row's newest token; end the row when it is done."""
        if self.gen.cancelled.is_set():
            return self.finish("cancelled")
        self.tokens.append(token)
        if token in self.engine.eos:
            return self.finish("stop")
        if self.gen.turn.stream or self.gen.turn.stop:
            reasoning, answer, _, hit = self.text.parts(self.tokens, final=False)
            if hit:
                return self.finish("stop")
            self._send(reasoning, answer)
        if len(self.tokens) >= self.gen.turn.max_tokens:
            self.finish("length")

    def finish(self, reason: str) -> None:
        """End the row: send the rest of its text and its :class:`Outcome`."""
        if self.finished:
            return
        self.finished = True
        reasoning, answer, finished_reasoning, _ = self.text.parts(self.tokens, final=True)
        if reason != "cancelled":
            self._send(reasoning, answer)
        self.engine._finished(self.gen, reason, len(self.tokens))
        self.gen.emit("done", Outcome(answer, reasoning, reason, len(self.prompt_ids), len(self.tokens),
                                      finished_reasoning))


class LocalEngine:
    """Batches requests onto one loaded model (:class:`coalqa.ask.LoadedModel`) in a worker thread.

    Args:
        loaded: the model, from :func:`coalqa.ask.load_model`.
        config: a :class:`coalqa.serve.ServeConfig` (batch_size, batch_window_ms, max_queue, seed, sampling defaults).
    """

    mode = "local"

    def __init__(self, loaded: LoadedModel, config) -> None:
        from coalqa.ask.inference import eos_ids
        from coalqa.template import knows_think, prompt_opens_think

        self.loaded, self.config = loaded, config
        self.eos = set(eos_ids(loaded))
        self.opens_think = prompt_opens_think(loaded.tokenizer, loaded.fmt)
        self.may_think = not self.opens_think and knows_think(loaded.tokenizer)
        self.context_limit = getattr(loaded.model.config, "max_position_embeddings", None)
        self.stats = Stats()
        self.tokenizer_lock = threading.Lock()  # the request handlers encode while the worker decodes
        self._pending: deque[tuple[Generation, list[int]]] = deque()
        self._running: set[Generation] = set()
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="coalqa-generate", daemon=True)

    def start(self) -> None:
        """Start the worker thread (seeds the sampler once when ``config.seed`` is set)."""
        if self.config.seed is not None:
            from transformers import set_seed

            set_seed(self.config.seed)
        self._thread.start()

    def close(self) -> None:
        """Cancel everything waiting or running (a running batch stops at its next token) and stop the worker."""
        with self._cv:
            self._closing = True
            for gen in [g for g, _ in self._pending] + list(self._running):
                gen.cancelled.set()
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def describe(self) -> dict:
        """What is served, for ``/health``."""
        with self._cv:
            busy = {"waiting": len(self._pending), "running": len(self._running)}
        return {"mode": self.mode, **busy, "batch_size": self.config.batch_size, "max_queue": self.config.max_queue,
                **self.stats.as_dict()}

    def prompt_ids(self, turn: Turn, context=None) -> list[int]:
        """The prompt of ``turn`` through :func:`coalqa.template.encode_prompt`, with the retrieved clauses ``context``
        when grounded (the request's system prompt, if any, replaces the trained one)."""
        from coalqa.template import encode_prompt, inference_format

        fmt = inference_format(self.loaded.fmt, turn.system)
        with self.tokenizer_lock:
            return encode_prompt(self.loaded.tokenizer, turn.question, fmt, turn.history, context)

    async def submit(self, turn: Turn, context=None) -> Generation:
        """Admit a request: tokenise its prompt and queue it for the next batch.

        Raises:
            ApiError: 503 (with ``Retry-After``) when ``max_queue`` requests are already waiting or running;
                400 when the prompt plus ``max_tokens`` exceeds the model's context length.
        """
        loop = asyncio.get_running_loop()
        with self._cv:
            self._admit_or_503()
        ids = await asyncio.to_thread(self.prompt_ids, turn, context)
        if self.context_limit and len(ids) + turn.max_tokens > self.context_limit:
            raise ApiError(400, f"the prompt is {len(ids)} tokens and max_tokens {turn.max_tokens}: together above the "
                           f"model's context length of {self.context_limit} tokens", code="context_length_exceeded",
                           param="messages")
        gen = Generation(loop, turn)
        gen._on_cancel = self._drop
        if self.config.numbers_from_clauses:  # the clauses as the prompt shows them (a system prompt plays no part)
            gen.numbers = clause_numbers(self.loaded.fmt, context)
        with self._cv:
            self._admit_or_503()
            self.stats.requests += 1
            self._pending.append((gen, ids))
            self._cv.notify_all()
        return gen

    def _admit_or_503(self) -> None:
        if len(self._pending) + len(self._running) >= self.config.max_queue:
            self.stats.rejected += 1
            wait = self.stats.retry_after(len(self._pending), self.config.batch_size)
            raise ApiError(503, f"the server is busy ({self.config.max_queue} requests waiting or running); retry "
                           f"in {wait} s", type="server_error", code="queue_full", headers={"Retry-After": str(wait)})

    def _drop(self, gen: Generation) -> None:
        """A request cancelled before its batch started leaves the queue at once."""
        with self._cv:
            for item in self._pending:
                if item[0] is gen:
                    self._pending.remove(item)
                    self.stats.cancelled += 1
                    gen.emit("done", Outcome("", "", "cancelled", len(item[1]), 0))
                    break

    def _finished(self, gen: Generation, reason: str, tokens: int) -> None:
        with self._cv:
            self._running.discard(gen)
            self.stats.tokens_generated += tokens
            if reason == "cancelled":
                self.stats.cancelled += 1
            elif reason == "failed":
                self.stats.failed += 1
            else:
                self.stats.completed += 1

    def _next_batch(self) -> list[tuple[Generation, list[int]]] | None:
        """Wait for requests; take up to ``batch_size`` with the first one's sampling settings (None: closing)."""
        with self._cv:
            while not self._pending and not self._closing:
                self._cv.wait()
            if self._closing:
                return None
            deadline = time.monotonic() + self.config.batch_window_ms / 1000
            while len(self._pending) < self.config.batch_size and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            if not self._pending:  # all cancelled while waiting
                return []
            key = _sampling_key(self._pending[0][0].turn)
            batch = [item for item in self._pending if _sampling_key(item[0].turn) == key][: self.config.batch_size]
            for item in batch:
                self._pending.remove(item)
                self._running.add(item[0])
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            rows = [_Row(gen, ids, self) for gen, ids in batch]
            t0 = time.perf_counter()
            try:
                self._generate(rows)
            except Exception as e:  # the request fails, the server stays up
                log.exception("generation failed")
                for row in rows:
                    if not row.finished:
                        row.finished = True
                        self._finished(row.gen, "failed", len(row.tokens))
                        row.gen.emit("error", ApiError(500, f"generation failed: {type(e).__name__}: {e}",
                                                       type="server_error"))
            seconds = time.perf_counter() - t0
            with self._cv:
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
                self.stats.batch_seconds.append(seconds)
            log.info("batch of %d: %d tokens in %.2f s", len(rows), sum(len(r.tokens) for r in rows), seconds)

    def _generate(self, rows: list[_Row]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from coalqa.ask.inference import generate_batch, make_generation_config

        turn = rows[0].gen.turn
        settings = self.config.model_copy(update={
            "temperature": turn.temperature, "top_p": turn.top_p, "do_sample": None,
            "max_new_tokens": max(r.gen.turn.max_tokens for r in rows)})

        class _PerRow(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                for row, token in zip(rows, input_ids[:, -1].tolist()):
                    if not row.finished:
                        row.step(token)
                return torch.tensor([row.finished for row in rows], dtype=torch.bool, device=input_ids.device)

        generate_batch(self.loaded, [r.prompt_ids for r in rows], make_generation_config(self.loaded, settings),
                       StoppingCriteriaList([_PerRow()]), numbers=[r.gen.numbers for r in rows])
        for row in rows:  # ended by generate's own limits
            row.finish("length")


def _sampling_key(turn: Turn) -> tuple:
    """Requests share a batch only when they sample alike (greedy ones all alike)."""
    return (0.0, 1.0) if turn.temperature == 0 else (turn.temperature, turn.top_p)
