"""The OpenAI chat-completions protocol as ``coalqa serve`` speaks it: requests in, response objects out.

Request and response shapes follow OpenAI's API reference for ``POST /v1/chat/completions`` (chat completion,
chat completion chunk, usage, error objects). Reasoning comes back apart from the answer as ``reasoning_content``,
the field DeepSeek's own API uses (vLLM's reasoning parsers use ``reasoning_content`` or ``reasoning``; clients of
this server read ``reasoning_content``). Grounded answers carry ``citations``, ``evidence``, ``unsupported_numbers``,
``grounded`` and ``abstained`` as extra top-level fields, which the official ``openai`` client keeps
(``completion.model_extra``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ApiError(Exception):
    """An error answered as OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ChatRequest(BaseModel):
    """The fields of a chat-completions request this server reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict]
    stream: bool = False
    stream_options: dict | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1)


@dataclass
class Turn:
    """One request made ready to answer: the last user ``question``, earlier ``history`` as (question, answer) pairs,
    the request's own ``system`` prompt (``None``: the model's trained one), and the generation settings."""

    question: str
    history: list[tuple[str, str]] = field(default_factory=list)
    system: str | None = None
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 1024
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False


def _text(content, where: str) -> str:
    """Message content as text: a string, or a list of ``{"type": "text", "text": ...}`` parts (joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"{where}: only text content is supported, got a {kind!r} part", param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts", param=where)


def _chat_request(body: bytes, served_model: str, max_messages: int) -> ChatRequest:
    """The request body as a :class:`ChatRequest` for ``served_model`` with 1 to ``max_messages`` messages.

    Raises:
        ApiError: 400 for malformed JSON, a wrong field, ``n`` > 1 or a message count out of range; 404 for another
            model name.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise ApiError(400, f"{where}: {err['msg']}", param=where) from e
    if req.model != served_model:
        raise ApiError(404, f"the model {req.model!r} does not exist; this server serves {served_model!r}",
                       param="model", code="model_not_found")
    if req.n not in (None, 1):
        raise ApiError(400, "n: only n=1 is supported", param="n")
    if not req.messages:
        raise ApiError(400, "messages: at least one message is required", param="messages")
    if len(req.messages) > max_messages:
        raise ApiError(400, f"messages: {len(req.messages)} messages, at most {max_messages} allowed", param="messages",
                       code="too_many_messages")
    return req


def _conversation(messages: list[dict], max_message_chars: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``(system texts, [(role, text)])`` of ``messages``: system/developer messages first, then user and assistant
    taking turns, ending with a user message.

    Raises:
        ApiError: 400 for a malformed message, a non-text part, a message over ``max_message_chars``, a role out of
            order or unknown, or no user message last.
    """
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict) or "role" not in m:
            raise ApiError(400, f"{where}: a message is an object with 'role' and 'content'", param=where)
        text = _text(m.get("content"), f"{where}.content")
        if len(text) > max_message_chars:
            raise ApiError(400, f"{where}.content: {len(text)} characters, at most {max_message_chars} allowed",
                           param=f"{where}.content", code="message_too_long")
        role = m["role"]
        if role in ("system", "developer"):
            if turns:
                raise ApiError(400, f"{where}: a {role} message must come before the conversation", param=where)
            system.append(text)
        elif role in ("user", "assistant"):
            want = "user" if not turns or turns[-1][0] == "assistant" else "assistant"
            if role != want:
                raise ApiError(400, f"{where}: expected a {want} message (user and assistant take turns)", param=where)
            turns.append((role, text))
        else:
            raise ApiError(400, f"{where}: unsupported role {role!r} (system, developer, user, assistant)", param=where)
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "messages: the last message must be a user message", param="messages")
    return system, turns


def parse_request(body: bytes, *, served_model: str, defaults, max_messages: int, max_message_chars: int,
                  max_tokens_limit: int) -> Turn:
    """Check a request body and turn it into a :class:`Turn`.

    Messages: optional ``system``/``developer`` messages first, then ``user`` and ``assistant`` alternating, ending
    with ``user``; an assistant message's ``content`` is its answer (reasoning is not sent back to the model, as
    DeepSeek-R1's usage notes ask).

    Args:
        defaults: an :class:`coalqa.ask.AskConfig` whose temperature, top_p and max_new_tokens fill unset fields.

    Raises:
        ApiError: 400 for malformed JSON, a wrong field, an unsupported feature (``n`` > 1, image parts) or a limit
            exceeded (message count, message length, ``max_tokens``); 404 for an unknown model name.
    """
    req = _chat_request(body, served_model, max_messages)
    system, turns = _conversation(req.messages, max_message_chars)
    question = turns[-1][1]
    if not question.strip():
        raise ApiError(400, "messages: the question (last user message) is empty", param="messages")
    max_tokens = req.max_completion_tokens or req.max_tokens or defaults.max_new_tokens
    if max_tokens > max_tokens_limit:
        raise ApiError(400, f"max_tokens: {max_tokens} is above this server's limit of {max_tokens_limit}",
                       param="max_tokens")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise ApiError(400, "stop: up to 4 non-empty strings", param="stop")
    sampling = defaults.sampling if req.temperature is None else req.temperature > 0
    return Turn(
        question=question,
        history=[(turns[j][1], turns[j + 1][1]) for j in range(0, len(turns) - 1, 2)],
        system="\n\n".join(system) if system else None,
        temperature=(defaults.temperature if req.temperature is None else req.temperature) if sampling else 0.0,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        max_tokens=max_tokens,
        stop=stop,
        stream=req.stream,
        include_usage=bool(req.stream and (req.stream_options or {}).get("include_usage")),
    )


def completion_id() -> str:
    """A fresh id of the form OpenAI uses (``chatcmpl-…``)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict | None:
    """OpenAI's usage object; ``None`` when the token counts are not known (a backend that reports none)."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(cid: str, model: str, answer: str, reasoning: str, finish_reason: str, use: dict | None,
               extra: dict) -> dict:
    """A ``chat.completion`` object; ``extra`` (the grounding fields) goes at the top level."""
    message = {"role": "assistant", "content": answer, "reasoning_content": reasoning}
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": use, **extra}


def chunk(cid: str, model: str, created: int, delta: dict, finish_reason: str | None = None, *,
          include_usage: bool = False, extra: dict | None = None) -> dict:
    """A ``chat.completion.chunk`` with one choice (``usage`` is ``null`` on it when usage will follow)."""
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
    if include_usage:
        out["usage"] = None
    return out | (extra or {})


def usage_chunk(cid: str, model: str, created: int, use: dict | None) -> dict:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage of the whole request."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": use}


def sse(data: dict | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
