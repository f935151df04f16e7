"""The HTTP side of ``coalqa serve``: a FastAPI app with the OpenAI-compatible API and the web page.

Routes: ``GET /`` (the page, ``static/``), ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``
(``stream`` false: one JSON object; true: server-sent events — a role chunk, reasoning/content deltas, a final chunk
with ``finish_reason``, a usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``), and
``GET /v1/clauses/{chunk_id}`` (a cited clause's text, with ``--index``).

Security: with an API key every ``/v1`` route needs ``Authorization: Bearer <key>`` (compared in constant time,
:func:`hmac.compare_digest`; 401 otherwise); the key is never logged. Bodies, messages and ``max_tokens`` are
capped (400, OpenAI's error object). CORS is off unless origins are configured, and never allows credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from coalqa.serve.engine import Generation, Outcome
from coalqa.serve.protocol import (
    ApiError,
    Turn,
    chunk,
    completion,
    completion_id,
    parse_request,
    sse,
    usage,
    usage_chunk,
)
from coalqa.web import PAGE_CSP, bearer_ok
from coalqa.web import read_body as read_limited

log = logging.getLogger("coalqa.serve")


def create_app(engine, config, *, api_key: str | None = None, grounder=None, feedback_context: dict | None = None):
    """Build the app around an engine (:class:`~coalqa.serve.engine.LocalEngine` or
    :class:`~coalqa.serve.proxy.ProxyEngine`).

    Args:
        config: the :class:`coalqa.serve.ServeConfig` (limits, CORS origins, served model name, sampling defaults).
        api_key: required bearer token for ``/v1`` routes; ``None``: open.
        grounder: a :class:`coalqa.serve.grounding.Grounder` (``--index``), or ``None`` for ungrounded answers.
        feedback_context: with ``config.feedback_dir``, what each feedback item records about the server (``model``,
            ``adapter``, ``adapter_fingerprint``, ``index``, ``index_fingerprint``; :mod:`coalqa.review.feedback`).
    """

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.close()

    app = FastAPI(title="coalqa serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    _add_error_handlers(app)

    async def authorized(request: Request) -> None:
        if not bearer_ok(request.headers.get("authorization"), api_key):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        return await read_limited(request, config.max_body_bytes,
                                  lambda message: ApiError(400, message, code="request_too_large"))

    _add_info_routes(app, engine, config, authorized, api_key=api_key, grounder=grounder)
    _add_feedback_route(app, config, authorized, read_body, feedback_context)

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(request: Request):
        turn = parse_request(await read_body(request), served_model=config.served_model_name, defaults=config,
                             max_messages=config.max_messages, max_message_chars=config.max_message_chars,
                             max_tokens_limit=config.max_tokens_limit)
        grounding = await asyncio.to_thread(grounder.retrieve, turn.question) if grounder else None
        cid, model = completion_id(), config.served_model_name
        if grounding is not None and grounder.abstains(grounding):
            outcome = Outcome(grounder.abstention_text, "", "stop", 0, 0)
            return _finished_response(turn, cid, model, outcome, grounder.fields(grounding, outcome))
        gen = await engine.submit(turn, grounding.context if grounding is not None else None)
        if turn.stream:
            return StreamingResponse(_events(gen, cid, model, grounder, grounding), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        outcome = await _wait(gen, request)
        extra = grounder.fields(grounding, outcome) if grounding is not None else {}
        return JSONResponse(completion(cid, model, outcome.answer, outcome.reasoning, outcome.finish_reason,
                                       usage(outcome.prompt_tokens, outcome.completion_tokens), extra))

    _add_page(app)
    return app


def _error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, ours or FastAPI's (404, 405, an invalid request), as OpenAI's error object."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return _error_response(e)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        kind = "not_found" if e.status_code == 404 else "method_not_allowed" if e.status_code == 405 else None
        return _error_response(ApiError(e.status_code, str(e.detail), code=kind, headers=dict(e.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        return _error_response(ApiError(400, f"invalid request: {e.errors()[0].get('msg')}"))


def _add_info_routes(app: FastAPI, engine, config, authorized, *, api_key: str | None, grounder) -> None:
    """``GET /health``, ``GET /v1/models`` and ``GET /v1/clauses/{chunk_id}``."""
    started = int(time.time())

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.served_model_name, "grounded": grounder is not None,
                "auth": api_key is not None, "feedback": config.feedback_dir is not None, **engine.describe()}

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models():
        return {"object": "list", "data": [{"id": config.served_model_name, "object": "model", "created": started,
                                            "owned_by": "coalqa"}]}

    @app.get("/v1/clauses/{chunk_id}", dependencies=[Depends(authorized)])
    async def clause(chunk_id: str):
        if grounder is None:
            raise ApiError(404, "this server has no index (start it with --index)", code="no_index")
        found = grounder.clause(chunk_id)
        if found is None:
            raise ApiError(404, f"no clause {chunk_id!r} in the index", code="clause_not_found")
        return found


def _add_feedback_route(app: FastAPI, config, authorized, read_body, feedback_context: dict | None) -> None:
    """``POST /v1/feedback``."""

    @app.post("/v1/feedback", dependencies=[Depends(authorized)])
    async def feedback(request: Request):
        """One "correct / wrong" verdict (+ corrected answer) on an answer, appended durably before the reply."""
        if config.feedback_dir is None:
            raise ApiError(404, "this server takes no feedback (start it with --feedback_dir DIR)", code="no_feedback")
        from coalqa.errors import CoalqaError
        from coalqa.review.feedback import save_feedback

        try:
            item = json.loads(await read_body(request))
            if not isinstance(item, dict):
                raise CoalqaError("expected a JSON object")
            saved = await asyncio.to_thread(save_feedback, config.feedback_dir, item, feedback_context or {})
        except ValueError as e:
            raise ApiError(400, f"invalid feedback: {e}") from e
        except CoalqaError as e:
            raise ApiError(400, str(e)) from e
        return {"id": saved["id"], "saved": True}


def _add_page(app: FastAPI) -> None:
    """``GET /`` (the page, with its Content-Security-Policy) and ``/static``."""
    static = resources.files("coalqa.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), headers={"Content-Security-Policy": PAGE_CSP,
                                                                 "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")


def _finished_response(turn: Turn, cid: str, model: str, outcome: Outcome, extra: dict):
    """A reply known without generating (an abstention), streamed or not."""
    use = usage(outcome.prompt_tokens, outcome.completion_tokens)
    if not turn.stream:
        return JSONResponse(completion(cid, model, outcome.answer, "", outcome.finish_reason, use, extra))

    async def events():
        created = int(time.time())
        yield sse(chunk(cid, model, created, {"role": "assistant", "content": ""}, include_usage=turn.include_usage,
                        extra=extra))
        yield sse(chunk(cid, model, created, {"content": outcome.answer}, include_usage=turn.include_usage))
        yield sse(chunk(cid, model, created, {}, outcome.finish_reason, include_usage=turn.include_usage,
                        extra=extra))
        if turn.include_usage:
            yield sse(usage_chunk(cid, model, created, use))
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _wait(gen: Generation, request) -> Outcome:
    """The outcome of a non-streamed request; a client that goes away meanwhile cancels it."""
    try:
        while True:
            try:
                kind, *payload = await asyncio.wait_for(gen.events.get(), timeout=1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    gen.cancel()
                    raise ApiError(499, "client closed the request") from None
                continue
            if kind == "done":
                return payload[0]
            if kind == "error":
                raise payload[0]
    except asyncio.CancelledError:
        gen.cancel()
        raise


async def _events(gen: Generation, cid: str, model: str, grounder, grounding):
    """The SSE stream of one request; leaving it early (client gone) cancels the generation."""
    turn = gen.turn
    created = int(time.time())
    opening = grounder.fields(grounding, None) if grounding is not None else None
    try:
        yield sse(chunk(cid, model, created, {"role": "assistant", "content": ""}, include_usage=turn.include_usage,
                        extra=opening))
        while True:
            kind, *payload = await gen.events.get()
            if kind == "delta":
                reasoning, answer = payload
                delta = {}
                if reasoning:
                    delta["reasoning_content"] = reasoning
                if answer:
                    delta["content"] = answer
                yield sse(chunk(cid, model, created, delta, include_usage=turn.include_usage))
            elif kind == "error":
                yield sse(payload[0].body())
                break
            else:
                outcome: Outcome = payload[0]
                extra = grounder.fields(grounding, outcome) if grounding is not None else None
                yield sse(chunk(cid, model, created, {}, outcome.finish_reason, include_usage=turn.include_usage,
                                extra=extra))
                if turn.include_usage:
                    yield sse(usage_chunk(cid, model, created, usage(outcome.prompt_tokens, outcome.completion_tokens)))
                break
        yield sse("[DONE]")
    finally:
        gen.cancel()  # no-op when it ended; stops the generation when the client went away mid-stream
