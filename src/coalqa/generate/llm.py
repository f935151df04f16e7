"""One chat-completions call, for any provider: ``make_chat_client(...)(messages) -> (text, usage)``.

Reused by other stages (e.g. an LLM-as-judge in ``coalqa eval``). Providers:

* ``zhipuai`` — the ``zhipuai`` SDK (``ZhipuAI``), key from ``ZHIPUAI_API_KEY`` (``id.secret``).
* ``openai`` — the ``openai`` SDK against any OpenAI-compatible endpoint (DeepSeek, DashScope,
  vLLM, Ollama…), key from ``OPENAI_API_KEY``; ``base_url`` picks the endpoint.

Retries: one mechanism only. The SDKs' own retries are switched off (``max_retries=0``; the
zhipuai SDK's ignores ``Retry-After``) and ``tenacity`` retries 408/409/429/5xx, timeouts, dropped
connections and malformed response bodies with exponential backoff plus jitter, waiting at least
what a ``Retry-After``/``retry-after-ms`` header asks. 401/403/404 raise :class:`FatalLLMError`
at once (every later call would fail the same way); other 4xx are raised unretried.
Keys are read from the environment only and never appear in what this module returns or raises
(:func:`redact`).
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from typing import Any, Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from coalqa.errors import CoalqaError

log = logging.getLogger("coalqa.generate")

ChatFn = Callable[[list[dict[str, str]]], tuple[str, dict[str, int]]]
KEY_ENV = {"zhipuai": "ZHIPUAI_API_KEY", "openai": "OPENAI_API_KEY"}
FATAL_STATUS = (401, 403, 404)
MAX_RETRY_AFTER = 120.0


class FatalLLMError(CoalqaError):
    """The provider refuses every request (bad key, no permission, unknown model or URL)."""


class MalformedResponseError(Exception):
    """The HTTP reply was not a chat completion (no choices/message); retried like a 5xx."""


def redact(text: str) -> str:
    """``text`` with every provider key from the environment replaced by ``***``."""
    for env in KEY_ENV.values():
        key = os.environ.get(env)
        if key and len(key) >= 6:
            text = text.replace(key, "***")
    return text


def status_of(exc: BaseException) -> int | None:
    """HTTP status carried by an SDK error, if any."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """True for 408/409/425/429/5xx, timeouts, connection errors and malformed bodies."""
    import openai
    import zhipuai

    status = status_of(exc)
    if status is not None:
        return status in (408, 409, 425, 429) or status >= 500
    return isinstance(
        exc,
        (openai.APIConnectionError, zhipuai.APIConnectionError, MalformedResponseError, ConnectionError, TimeoutError),
    ) or type(exc).__name__ in ("APIResponseValidationError", "JSONDecodeError")


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds asked by ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date) on an error reply."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _wait(initial: float, max_wait: float) -> Callable[[Any], float]:
    backoff = wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial)

    def wait(state: Any) -> float:
        asked = retry_after(state.outcome.exception() if state.outcome else None)
        base = backoff(state)
        return max(base, min(asked, MAX_RETRY_AFTER)) if asked is not None else base

    return wait


def _log_retry(state: Any) -> None:
    exc = state.outcome.exception()
    log.warning(
        "LLM call failed (%s), retry %d in %.1fs",
        redact(f"{type(exc).__name__}: {exc}")[:200], state.attempt_number, state.next_action.sleep,
    )


def _sdk_client(provider: str, key: str, base_url: str | None, timeout: float) -> Any:
    if provider == "zhipuai":
        from zhipuai import ZhipuAI

        return ZhipuAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
    from openai import OpenAI

    return OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)


def make_chat_client(
    provider: str,
    model: str,
    base_url: str | None = None,
    timeout: float = 180.0,
    max_retries: int = 6,
    *,
    retry_wait: float = 1.0,
    max_wait: float = 60.0,
    **params: Any,
) -> ChatFn:
    """Build a thread-safe ``chat(messages) -> (text, usage)`` for ``provider``.

    Args:
        provider: ``"zhipuai"`` or ``"openai"``.
        model: model name sent with each request.
        base_url: endpoint root (``.../v1``; the SDK appends ``/chat/completions``); ``None`` = SDK default.
        timeout: seconds per attempt; max_retries: extra attempts after the first.
        retry_wait: first backoff in seconds (doubles, plus up to as much jitter, capped at ``max_wait``).
        params: extra request fields whose value is not ``None`` (``temperature``, ``top_p``, ``max_tokens``).

    ``text`` is the reply's ``message.content`` (``""`` when absent); ``usage`` is
    ``{"prompt_tokens", "completion_tokens", "total_tokens"}`` (zeros when the server sends none).

    Raises:
        CoalqaError: unknown provider or the key's environment variable is unset/empty.
        FatalLLMError: 401/403/404 from the server.
        Exception: the SDK's own error after the last retry (message free of the key).
    """
    import openai  # noqa: F401  both SDKs, here in the calling thread: is_retryable needs them, and
    import zhipuai  # noqa: F401  a first import racing in worker threads breaks (circular-import errors)

    if provider not in KEY_ENV:
        raise CoalqaError(f"unknown LLM provider {provider!r}; expected one of {', '.join(KEY_ENV)}")
    key = os.environ.get(KEY_ENV[provider], "").strip()
    if not key:
        raise CoalqaError(
            f"{KEY_ENV[provider]} is not set: export your {provider} API key in the environment "
            "(keys are never read from files or flags), or use --provider clause to work offline"
        )
    client = _sdk_client(provider, key, base_url, timeout)
    extra = {k: v for k, v in params.items() if v is not None}

    def attempt(messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        try:
            resp = client.chat.completions.create(model=model, messages=messages, **extra)
        except Exception as e:
            if status_of(e) in FATAL_STATUS:
                raise FatalLLMError(
                    f"{provider} refused the request with HTTP {status_of(e)} at {base_url or 'the default endpoint'} "
                    f"(check the key in {KEY_ENV[provider]}, the model name {model!r} and --base_url): "
                    + redact(str(e))[:300]
                ) from None
            raise
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError, KeyError) as e:
            raise MalformedResponseError(f"reply is not a chat completion: {redact(str(resp))[:200]}") from e
        if not isinstance(text, str):
            raise MalformedResponseError(f"message content is {type(text).__name__}, not text")
        usage = getattr(resp, "usage", None)
        counts = {k: int(getattr(usage, k, 0) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return text, counts

    retrying = Retrying(
        retry=retry_if_exception(is_retryable),
        wait=_wait(retry_wait, max_wait),
        stop=stop_after_attempt(max_retries + 1),
        before_sleep=_log_retry,
        reraise=True,
    )

    def chat(messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        return retrying.copy()(attempt, messages)  # a copy per call: safe across threads

    return chat
