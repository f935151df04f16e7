"""One chat-completions call, for any provider: ``make_chat_client(...)(messages) -> (text, usage)``.

Used by QA generation (``coalqa generate``) and the LLM judge of ``coalqa eval``. Providers:

* ``zhipuai`` — the ``zhipuai`` SDK (``ZhipuAI``), key from ``ZHIPUAI_API_KEY`` (``id.secret``).
* ``openai`` — the ``openai`` SDK against any OpenAI-compatible endpoint (DeepSeek, DashScope,
  vLLM, Ollama…), key from ``OPENAI_API_KEY``; ``base_url`` picks the endpoint.

Errors, sorted by :func:`classify` from the HTTP status and the provider's error code in the body:

* **permanent** — every later request would fail the same way: 401/402/403/404, and the codes of
  :data:`PERMANENT_CODES` whatever the status (Zhipu's ``1113`` "account in arrears" comes as a 429; OpenAI's
  ``insufficient_quota`` too), or a 4xx whose message says the balance or quota is used up. The first one
  raises :class:`FatalLLMError` and stops every other call of the same client (no new request is sent), so a
  run ends after at most one request per call in flight.
* **transient** — 408/409/425/429 (rate limits), 5xx, timeouts, dropped connections, malformed bodies:
  retried by ``tenacity`` (the SDKs' own retries are off, ``max_retries=0``; the zhipuai SDK's ignores
  ``Retry-After``), after what a ``Retry-After`` / ``retry-after-ms`` header asks (plus up to 10 % jitter),
  else after exponential backoff plus jitter.
* anything else (a 400 for one request's content, a content-safety refusal) is raised unretried.

Rate limits: the calls of one client share an :class:`AdaptiveLimit`, AIMD on the number of requests in
flight (as TCP congestion control): a rate-limit reply halves it and holds every new request until its
``Retry-After`` has passed, each success adds about one per round trip, up to ``max_concurrency``; so a run
settles at the provider's limit instead of failing chunks (``bench/generate_ratelimit.py``).
Keys are read from the environment only and never appear in what this module returns or raises
(:func:`redact`).
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from coalqa.errors import CoalqaError

log = logging.getLogger("coalqa.generate")

ChatFn = Callable[[list[dict[str, str]]], tuple[str, dict[str, int]]]
KEY_ENV = {"zhipuai": "ZHIPUAI_API_KEY", "openai": "OPENAI_API_KEY"}
PERMANENT_STATUS = (401, 402, 403, 404)
# Provider error codes (body ``error.code``/``error.type`` or ``code``) that no retry fixes, whatever the status:
PERMANENT_CODES = {
    # Zhipu / Z.AI (docs.z.ai/api-reference/api-code): authentication 1000-1004; account inactive, missing,
    # locked, in arrears (1113), unreachable, locked for irregular activity 1110-1121; model missing or not
    # callable this way 1211-1212; no permission, API offline or missing 1220-1222; daily call limit 1304.
    "1000", "1001", "1002", "1003", "1004", "1110", "1111", "1112", "1113", "1120", "1121",
    "1211", "1212", "1220", "1221", "1222", "1304",
    # OpenAI (platform.openai.com/docs/guides/error-codes) and compatible servers
    "invalid_api_key", "insufficient_quota", "model_not_found", "account_deactivated", "billing_not_active",
    "unsupported_country_region_territory",
    # Moonshot (quota used up), DashScope (arrears, bad key)
    "exceeded_current_quota_error", "Arrearage", "InvalidApiKey",
}
# A 4xx whose message says the money or quota is gone, from a provider whose code is not listed above.
_EXHAUSTED = re.compile(r"余额不足|欠费|insufficient[ _-]?(?:balance|quota|credit)|arrear|exceeded your current quota", re.IGNORECASE)
MAX_RETRY_AFTER = 120.0


class FatalLLMError(CoalqaError):
    """The provider refuses every request (bad key, balance or quota used up, no permission, unknown model or URL)."""


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


def error_code(exc: BaseException) -> str | None:
    """The provider's error code of an SDK error: body ``error.code`` (else ``error.type``, else ``code``).

    Read from the SDK's parsed ``body`` (openai) or the HTTP reply (zhipuai); ``None`` when there is none.
    """
    body = getattr(exc, "body", None)
    response = getattr(exc, "response", None)
    if body is None and response is not None:
        try:
            body = response.json()
        except Exception:  # noqa: BLE001 -- not JSON, or the body was never read: no code to report
            body = None
    if not isinstance(body, dict):
        return None
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    for key in ("code", "type"):
        if inner.get(key) not in (None, ""):
            return str(inner[key])
    return None


def classify(exc: BaseException) -> Literal["permanent", "transient", "failed"]:
    """Sort an SDK error: ``permanent`` (stop the run), ``transient`` (retry) or ``failed`` (this request only).

    See the module docstring for the rules and :data:`PERMANENT_CODES` for the codes and their sources.
    """
    if isinstance(exc, FatalLLMError):
        return "permanent"
    status = status_of(exc)
    if status in PERMANENT_STATUS or error_code(exc) in PERMANENT_CODES:
        return "permanent"
    if status is not None and 400 <= status < 500 and _EXHAUSTED.search(str(exc)):
        return "permanent"
    return "transient" if is_retryable(exc) else "failed"


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
    """Seconds before the next attempt: what the server asked (``Retry-After``), else exponential backoff."""
    backoff = wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial)

    def wait(state: Any) -> float:
        asked = retry_after(state.outcome.exception() if state.outcome else None)
        if asked is not None and asked > 0:
            return min(asked, MAX_RETRY_AFTER) * random.uniform(1.0, 1.1)  # jitter: retries do not arrive together
        return backoff(state)

    return wait


def _log_retry(state: Any) -> None:
    exc = state.outcome.exception()
    log.warning(
        "LLM call failed (%s), retry %d in %.1fs",
        redact(f"{type(exc).__name__}: {exc}")[:200], state.attempt_number, state.next_action.sleep,
    )


class AdaptiveLimit:
    """AIMD limit on the requests in flight, shared by the threads of one chat client.

    Starts at ``maximum``. A rate-limit reply (a transient 429) multiplies the limit by :attr:`DECREASE`, once
    per round: replies to requests sent before the last cut do not cut again (they saw the old limit), and,
    when it says how long to wait (``Retry-After``), no request of any thread is sent before then (the
    provider would refuse it too). Each success adds ``1 / limit``, about one more request per round trip,
    up to ``maximum``. Never below 1. :meth:`stop` makes every waiting and later :meth:`acquire` raise (a
    permanent error ends the run).

    Attributes:
        limit: the current limit (float; ``int(limit)`` requests may be in flight).
        cuts: how many times the limit was halved; lowest: the lowest limit reached.
    """

    DECREASE = 0.5  #: multiplicative decrease on a rate-limit reply (TCP Reno's halving)

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, int(maximum))
        self.limit = float(self.maximum)
        self.lowest = self.limit
        self.cuts = 0
        self.in_flight = 0
        self._round = 0
        self._paused_until = 0.0
        self._stopped: BaseException | None = None
        self._cond = threading.Condition()

    def acquire(self) -> int:
        """Wait for a free slot; returns the round the request is sent in (pass it to :meth:`release`).

        Raises:
            FatalLLMError: the client was stopped by a permanent error.
        """
        with self._cond:
            while self._stopped is None:
                pause = self._paused_until - time.monotonic()
                if pause > 0:
                    self._cond.wait(pause)
                elif self.in_flight >= int(self.limit):
                    self._cond.wait()
                else:
                    break
            if self._stopped is not None:
                raise FatalLLMError(str(self._stopped))
            self.in_flight += 1
            return self._round

    def release(self, sent_in: int, outcome: Literal["ok", "rate_limited", "other"], pause: float | None = None) -> None:
        """Free the slot of a request sent in round ``sent_in`` and adapt the limit to its ``outcome``;
        ``pause``: seconds a rate-limit reply asked to wait (``Retry-After``): no request is sent before then."""
        with self._cond:
            self.in_flight -= 1
            if pause:
                self._paused_until = max(self._paused_until, time.monotonic() + min(pause, MAX_RETRY_AFTER))
            if outcome == "ok":
                self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            elif outcome == "rate_limited" and sent_in == self._round:
                self.limit = max(1.0, self.limit * self.DECREASE)
                self.lowest = min(self.lowest, self.limit)
                self.cuts += 1
                self._round += 1
            self._cond.notify_all()

    def stop(self, error: BaseException) -> None:
        """Refuse every further request with ``error``'s message."""
        with self._cond:
            if self._stopped is None:
                self._stopped = error
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopped is not None


def _sdk_client(provider: str, key: str, base_url: str | None, timeout: float) -> Any:
    if provider == "zhipuai":
        from zhipuai import ZhipuAI

        return ZhipuAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
    from openai import OpenAI

    return OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)


def _one_attempt(client: Any, provider: str, model: str, base_url: str | None, extra: dict[str, Any],
                 limit: AdaptiveLimit) -> ChatFn:
    """One request through ``client`` under ``limit``, without retries: a permanent error stops the client
    (:class:`FatalLLMError`), a 429 pauses the limit for its ``Retry-After``; a malformed reply raises
    :class:`MalformedResponseError`."""

    def attempt(messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        sent_in = limit.acquire()
        outcome, pause = "other", None
        try:
            resp = client.chat.completions.create(model=model, messages=messages, **extra)
            outcome = "ok"
        except Exception as e:
            kind = classify(e)
            if kind == "permanent":
                code = error_code(e)
                fatal = FatalLLMError(
                    f"{provider} refused the request with HTTP {status_of(e)}"
                    + (f" (error code {code})" if code and code != str(status_of(e)) else "")
                    + f" at {base_url or 'the default endpoint'}: {redact(str(e))[:300]}. Retrying cannot fix this: "
                    f"check the key in {KEY_ENV[provider]}, the account's balance and permissions, the model name "
                    f"{model!r} and --base_url"
                )
                limit.stop(fatal)
                raise fatal from None
            if kind == "transient" and status_of(e) == 429:
                outcome, pause = "rate_limited", retry_after(e)
            raise
        finally:
            limit.release(sent_in, outcome, pause)
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError, KeyError) as e:
            raise MalformedResponseError(f"reply is not a chat completion: {redact(str(resp))[:200]}") from e
        if not isinstance(text, str):
            raise MalformedResponseError(f"message content is {type(text).__name__}, not text")
        usage = getattr(resp, "usage", None)
        counts = {k: int(getattr(usage, k, 0) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return text, counts

    return attempt


def make_chat_client(
    provider: str,
    model: str,
    base_url: str | None = None,
    timeout: float = 180.0,
    max_retries: int = 6,
    *,
    retry_wait: float = 1.0,
    max_wait: float = 60.0,
    max_concurrency: int = 8,
    **params: Any,
) -> ChatFn:
    """Build a thread-safe ``chat(messages) -> (text, usage)`` for ``provider``.

    Args:
        provider: ``"zhipuai"`` or ``"openai"``.
        model: model name sent with each request.
        base_url: endpoint root (``.../v1``; the SDK appends ``/chat/completions``); ``None`` = SDK default.
        timeout: seconds per attempt; max_retries: extra attempts after the first.
        retry_wait: first backoff in seconds (doubles, plus up to as much jitter, capped at ``max_wait``).
        max_concurrency: most requests in flight at once; the :class:`AdaptiveLimit` (``chat.limit``) lowers
            it on rate-limit replies and raises it back on successes.
        params: extra request fields whose value is not ``None`` (``temperature``, ``top_p``, ``max_tokens``).

    ``text`` is the reply's ``message.content`` (``""`` when absent); ``usage`` is
    ``{"prompt_tokens", "completion_tokens", "total_tokens"}`` (zeros when the server sends none).

    Raises:
        CoalqaError: unknown provider or the key's environment variable is unset/empty.
        FatalLLMError: a permanent error (:func:`classify`) from the server, or one met earlier by another call
            of this client (no request is sent then).
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
    limit = AdaptiveLimit(max_concurrency)

    attempt = _one_attempt(client, provider, model, base_url, extra, limit)

    retrying = Retrying(
        retry=retry_if_exception(lambda e: classify(e) == "transient"),
        wait=_wait(retry_wait, max_wait),
        stop=stop_after_attempt(max_retries + 1),
        before_sleep=_log_retry,
        reraise=True,
    )

    def chat(messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        return retrying.copy()(attempt, messages)  # a copy per call: safe across threads

    chat.limit = limit  # type: ignore[attr-defined]  (for progress reports and benchmarks)
    return chat


REQUEST_PARAMS = ("temperature", "top_p", "max_tokens")  # request fields make_chat_client passes on (its **params)


def chat_client_for(settings: Any, **overrides: Any) -> ChatFn:
    """:func:`make_chat_client` configured from ``settings`` (e.g. :class:`coalqa.generate.GenerateConfig`): every
    argument it takes, and :data:`REQUEST_PARAMS`, read from the attribute of the same name where ``settings`` has one;
    ``overrides`` win (``max_concurrency=cfg.concurrency``).

    Raises:
        as :func:`make_chat_client`.
    """
    import inspect

    names = [n for n, p in inspect.signature(make_chat_client).parameters.items() if p.kind is not p.VAR_KEYWORD]
    kwargs = {n: getattr(settings, n) for n in (*names, *REQUEST_PARAMS) if hasattr(settings, n)}
    return make_chat_client(**(kwargs | overrides))

