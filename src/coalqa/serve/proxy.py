"""Proxy mode of ``coalqa serve``: the same API, grounding and page in front of another OpenAI-compatible engine.

``coalqa serve --backend_url http://gpu-host:8000/v1 --backend_model coal`` answers each request by streaming it
from the backend (vLLM, another ``coalqa serve``, …) with the official ``openai`` client, so a user who outgrows
one machine keeps coalqa's citations and number check. The backend's reasoning may come as ``reasoning_content``
(DeepSeek's API, coalqa, older vLLM), as ``reasoning`` (newer vLLM), or inside the content (no reasoning parser:
``<think>…</think>`` or, with ``backend_opens_think``, text ending in ``</think>``); all come out as
``reasoning_content``. A client that disconnects closes the backend stream, which stops the backend's generation.
"""

from __future__ import annotations

import asyncio
import logging
import os

from coalqa.serve.engine import Generation, Outcome, Stats
from coalqa.serve.protocol import ApiError, Turn

log = logging.getLogger("coalqa.serve")
ENV_BACKEND_KEY = "COALQA_BACKEND_API_KEY"


class ProxyEngine:
    """Forwards requests to ``config.backend_url`` as ``config.backend_model``, at most ``config.max_queue`` at once.

    Args:
        config: a :class:`coalqa.serve.ServeConfig`.
        fmt: the :class:`coalqa.template.PromptFormat` whose system prompt and context block the requests get
            (the adapter's, when ``--peft_model`` is given).
    """

    mode = "proxy"

    def __init__(self, config, fmt) -> None:
        from openai import AsyncOpenAI

        self.config, self.fmt = config, fmt
        self.client = AsyncOpenAI(base_url=config.backend_url, api_key=os.environ.get(ENV_BACKEND_KEY) or "none",
                                  timeout=config.backend_timeout_s, max_retries=0)
        self.stats = Stats()
        self._active: set[Generation] = set()

    def start(self) -> None:
        """Nothing to start: the backend is contacted per request."""

    def close(self) -> None:
        """Cancel the requests in flight."""
        for gen in list(self._active):
            gen.cancel()

    def describe(self) -> dict:
        """What is served, for ``/health``."""
        return {"mode": self.mode, "backend_model": self.config.backend_model, "waiting": 0, "running": len(self._active),
                "max_queue": self.config.max_queue, **self.stats.as_dict()}

    def messages(self, turn: Turn, context=None) -> list[dict]:
        """The chat messages sent to the backend: system prompt, history, and the question (with the retrieved
        clauses through :func:`coalqa.template.user_message` when grounded)."""
        from coalqa.template import inference_format

        system = inference_format(self.fmt, turn.system).system_prompt
        out = [{"role": "system", "content": system}] if system else []
        for q, a in turn.history:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        question = turn.question
        if context is not None:
            from coalqa.template import user_message

            question = user_message(turn.question, self.fmt, context)
        return out + [{"role": "user", "content": question}]

    async def submit(self, turn: Turn, context=None) -> Generation:
        """Admit a request and start streaming it from the backend.

        Raises:
            ApiError: 503 (with ``Retry-After``) when ``max_queue`` requests are in flight.
        """
        if len(self._active) >= self.config.max_queue:
            self.stats.rejected += 1
            raise ApiError(503, f"the server is busy ({self.config.max_queue} requests in flight); retry in 2 s",
                           type="server_error", code="queue_full", headers={"Retry-After": "2"})
        gen = Generation(asyncio.get_running_loop(), turn)
        self._active.add(gen)
        self.stats.requests += 1
        task = asyncio.create_task(self._relay(gen, self.messages(turn, context)))
        gen._on_cancel = lambda g: task.cancel()
        return gen

    async def _relay(self, gen: Generation, messages: list[dict]) -> None:
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        from coalqa.template import split_reasoning, split_reasoning_so_far

        turn = gen.turn
        raw, side_reasoning = "", ""  # content as sent by the backend; reasoning from a reasoning field
        sent_r = sent_a = ""
        finish_reason, use = "stop", None
        opens = self.config.backend_opens_think
        try:
            kwargs = {"stop": turn.stop} if turn.stop else {}
            stream = await self.client.chat.completions.create(
                model=self.config.backend_model, messages=messages, stream=True, max_tokens=turn.max_tokens,
                temperature=turn.temperature, top_p=turn.top_p, stream_options={"include_usage": True}, **kwargs)
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        use = chunk.usage
                    for choice in chunk.choices:
                        delta = choice.delta
                        extra = delta.model_extra or {}
                        piece = extra.get("reasoning_content") or extra.get("reasoning") or ""
                        side_reasoning += piece
                        raw += delta.content or ""
                        r, a = split_reasoning_so_far(raw, opens, False)
                        dr, da = piece + r[len(sent_r):], a[len(sent_a):]
                        sent_r, sent_a = r, a
                        if dr or da:
                            gen.emit("delta", dr, da)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
            r, a, finished = split_reasoning(raw, opens)
            if r[len(sent_r):] or a[len(sent_a):]:
                gen.emit("delta", r[len(sent_r):], a[len(sent_a):])
            reasoning = side_reasoning + r if side_reasoning else r
            prompt_tokens = getattr(use, "prompt_tokens", None)
            completion_tokens = getattr(use, "completion_tokens", None)
            self.stats.completed += 1
            self.stats.tokens_generated += completion_tokens or 0
            cut = finish_reason == "length" and not a and bool(reasoning)  # the limit came inside the reasoning
            gen.emit("done", Outcome(a, reasoning, finish_reason, prompt_tokens, completion_tokens,
                                     finished and not cut))
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            gen.emit("done", Outcome("", "", "cancelled", None, None))
        except APIStatusError as e:
            self.stats.failed += 1
            gen.emit("error", _backend_error(e))
        except (APIConnectionError, APITimeoutError) as e:
            self.stats.failed += 1
            gen.emit("error", ApiError(502, f"backend {self.config.backend_url} unreachable: {e}", type="server_error",
                                       code="backend_unreachable"))
        finally:
            self._active.discard(gen)


def _backend_error(e) -> ApiError:
    """The backend's error, passed on with its status (and ``Retry-After``)."""
    message = str(e)
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message") or message
    headers = {}
    retry = e.response.headers.get("retry-after") if getattr(e, "response", None) is not None else None
    if retry:
        headers["Retry-After"] = retry
    return ApiError(e.status_code, f"backend: {message}", type="server_error" if e.status_code >= 500 else
                    "invalid_request_error", code="backend_error", headers=headers)
