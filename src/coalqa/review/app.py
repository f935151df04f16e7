"""The HTTP side of ``coalqa review``: a FastAPI app serving the review page and its JSON API.

Routes (all need the token when one is set: ``Authorization: Bearer <token>``, or the cookie that opening
``/?token=<token>`` once sets — ``HttpOnly``, ``SameSite=Strict``):

* ``GET /`` the page (``static/review.html``), ``GET /static/review.js|review.css``;
* ``GET /api/state``: reviewer, counts per status and per document, documents, flags, reject reasons, torn lines;
* ``GET /api/items?status=&doc=&flag=&q=&sort=risky``: the view, in order: ``{"items": [[id, status], ...]}``;
* ``GET /api/pairs?ids=a,b,c``: full details of up to 50 pairs (:meth:`coalqa.review.pairs.ReviewSet.detail`);
* ``POST /api/decide`` ``{pair_id, decision, base_version, question?, answer?, reason?, note?, confirm_unsupported?}``
  → the record written (durable when answered); 409 ``{"error", "current", "version"}`` when the pair changed
  meanwhile; 409 ``{"error": {"code": "unsupported_numbers"}, "numbers": [...]}`` when an edited answer states numbers
  its clause does not and ``confirm_unsupported`` does not name exactly those (nothing saved);
* ``POST /api/bulk`` ``{status, doc, flag, q, decision, reason?, count}``: every pair of that view (``count`` is the
  number the reviewer confirmed; 409 when it no longer matches);
* ``POST /api/undo``: takes back this reviewer's latest action.

Errors are ``{"error": {"message", "code"}}`` with 400/401/404/409/413. POST bodies must be JSON
(``Content-Type: application/json``: a cross-site form cannot send one) of at most ``max_body_bytes``.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.exceptions import HTTPException

from coalqa.errors import CoalqaError
from coalqa.review import actions
from coalqa.review.log import APP, Conflict
from coalqa.review.pairs import FLAGS, REJECT_REASONS, STATUSES, ReviewSet
from coalqa.web import PAGE_HEADERS, bearer_ok, read_body

log = logging.getLogger("coalqa.review")
COOKIE = "coalqa_review_token"
STATIC = {"review.js": "text/javascript", "review.css": "text/css"}


class Refused(Exception):
    """An HTTP refusal: ``status``, ``message``, ``code`` and extra top-level fields of the JSON error body."""

    def __init__(self, status: int, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def create_app(rs: ReviewSet, *, reviewer: str, token: str | None = None, max_body_bytes: int = 65536) -> FastAPI:
    """The review app over a loaded :class:`~coalqa.review.pairs.ReviewSet`.

    Args:
        reviewer: the name recorded with every decision made through this app.
        token: required on every route when set (module docstring); ``None``: open (loopback only, see the command).
        max_body_bytes: largest POST body (413 above it).
    """
    app = FastAPI(title="coalqa review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=4096, compresslevel=5)
    _add_token_guard(app, token)
    _add_error_handlers(app)
    _add_page_routes(app)
    _add_read_routes(app, rs, reviewer)
    _add_write_routes(app, rs, reviewer, max_body_bytes)
    return app


def _authorized(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    cookie = request.cookies.get(COOKIE)
    return bearer_ok(request.headers.get("authorization"), token) or (
        cookie is not None and bearer_ok(f"Bearer {cookie}", token))


def _add_token_guard(app: FastAPI, token: str | None) -> None:
    """``/?token=`` sets the cookie and redirects; every other request without the token gets a 401."""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path == "/" and token is not None and "token" in request.query_params:
            if not bearer_ok(f"Bearer {request.query_params['token']}", token):
                return PlainTextResponse("wrong token", status_code=401, headers=PAGE_HEADERS)
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return resp
        if not _authorized(request, token):
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": {"message": "missing or wrong token: send 'Authorization: Bearer "
                                               "<token>' or open the URL `coalqa review` printed", "code": "unauthorized"}},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return PlainTextResponse("coalqa review: open the URL with ?token=… that `coalqa review` printed",
                                     status_code=401, headers={**PAGE_HEADERS, "WWW-Authenticate": "Bearer"})
        return await call_next(request)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"message", "code"}}`` (module docstring)."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, e: Refused):
        return JSONResponse({"error": {"message": e.message, "code": e.code}, **e.extra}, status_code=e.status)

    @app.exception_handler(CoalqaError)
    async def _bad(request: Request, e: CoalqaError):
        return JSONResponse({"error": {"message": str(e), "code": "invalid_request"}}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return JSONResponse({"error": {"message": str(e.detail), "code": "http_error"}}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        return JSONResponse({"error": {"message": f"invalid request: {e.errors()[0].get('msg')}",
                                       "code": "invalid_request"}}, status_code=400)


async def _json_body(request: Request, max_body_bytes: int) -> dict:
    """The POST body as a JSON object; :class:`Refused` (415/413/400) otherwise."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "send JSON (Content-Type: application/json)", "unsupported_media_type")
    raw = await read_body(request, max_body_bytes, lambda m: Refused(413, m, "request_too_large"))
    try:
        data = json.loads(raw or b"{}")
    except ValueError as e:
        raise Refused(400, f"not valid JSON: {e}", "invalid_json") from e
    if not isinstance(data, dict):
        raise Refused(400, "expected a JSON object", "invalid_json")
    return data


def _required_int(data: dict, key: str, what: str) -> int:
    """``data[key]`` as an int; :class:`Refused` (400) naming the field and ``what`` it is otherwise."""
    try:
        return int(data.get(key))
    except (TypeError, ValueError):
        raise Refused(400, f"{key} ({what}) is required", "invalid_request") from None


def _view_of(rs: ReviewSet, params) -> list:
    """The pairs (with their status) of the view ``params`` names: ``status doc flag q sort``."""
    status, flag = str(params.get("status") or ""), str(params.get("flag") or "")
    if status and status not in STATUSES:
        raise Refused(400, f"status must be one of {', '.join(STATUSES)}", "invalid_request")
    if flag and flag not in FLAGS:
        raise Refused(400, f"flag must be one of {', '.join(FLAGS)}", "invalid_request")
    return rs.view(status, str(params.get("doc") or ""), flag, str(params.get("q") or "")[:200],
                   str(params.get("sort") or ""))


def _add_page_routes(app: FastAPI) -> None:
    """``GET /`` and ``GET /static/{name}``."""
    static = resources.files("coalqa.review") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "review.html"), headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str):
        if name not in STATIC:
            raise Refused(404, f"no file {name}", "not_found")
        return FileResponse(str(static / name), media_type=STATIC[name], headers=PAGE_HEADERS)


def _add_read_routes(app: FastAPI, rs: ReviewSet, reviewer: str) -> None:
    """``GET /api/state``, ``/api/items`` and ``/api/pairs``."""

    @app.get("/api/state")
    async def state():
        rs.log.refresh()  # decisions other servers on the same log wrote meanwhile
        counts = rs.counts()
        return JSONResponse({"reviewer": reviewer, "app": APP, "qa_file": str(rs.qa_path or ""), "chunks_file": str(rs.chunks_path),
                "log": str(rs.log.path), **counts, "docs_order": sorted(counts["docs"]), "flags": list(FLAGS),
                "statuses": list(STATUSES), "reasons": list(REJECT_REASONS),
                "torn": [{"line": line, "bytes": size} for line, size in rs.log.torn]
                + ([{"line": rs.log.torn_tail[0], "bytes": rs.log.torn_tail[1]}] if rs.log.torn_tail else []),
                "set_aside_chunks": len(rs.log.set_aside)})

    @app.get("/api/items")
    async def items(request: Request):
        rs.log.refresh()
        # only what the page navigates and counts by: 10,000 pairs stay ~250 KB (~40 KB gzipped)
        rows = [[p.id, s] for p, s in _view_of(rs, request.query_params)]
        return JSONResponse({"items": rows})  # JSONResponse: skips FastAPI's slow re-encoding

    @app.get("/api/pairs")
    async def pairs(ids: str = ""):
        rs.log.refresh()
        wanted = [i for i in ids.split(",") if i][:50]
        missing = [i for i in wanted if i not in rs.by_id]
        if missing:
            raise Refused(404, f"no pair {missing[0]!r}", "not_found")
        return JSONResponse({"pairs": [rs.detail(rs.by_id[i]) for i in wanted]})


def _add_write_routes(app: FastAPI, rs: ReviewSet, reviewer: str, max_body_bytes: int) -> None:
    """``POST /api/decide``, ``/api/bulk`` and ``/api/undo``."""

    @app.post("/api/decide")
    async def decide(request: Request):
        data = await _json_body(request, max_body_bytes)
        pid = str(data.get("pair_id") or "")
        if pid not in rs.by_id:
            raise Refused(404, f"no pair {pid!r}", "not_found")
        base = _required_int(data, "base_version", "the pair's version the page showed")
        try:
            rec = actions.decide(rs, pid, str(data.get("decision") or ""), base, reviewer,
                                 question=data.get("question"), answer=data.get("answer"), reason=data.get("reason"),
                                 note=data.get("note"), confirm_unsupported=data.get("confirm_unsupported"))
        except actions.UnconfirmedNumbers as e:
            raise Refused(409, str(e), "unsupported_numbers", numbers=e.numbers) from e
        except Conflict as e:
            raise Refused(409, f"another decision was saved for this pair meanwhile (by "
                          f"{(e.current or {}).get('reviewer', '?')}); yours was not saved", "conflict",
                          current=e.current, version=e.version) from e
        return JSONResponse({"saved": True, "record": rec, "pair": rs.detail(rs.by_id[pid])})

    @app.post("/api/bulk")
    async def bulk(request: Request):
        data = await _json_body(request, max_body_bytes)
        view = [p for p, _ in _view_of(rs, data)]
        count = _required_int(data, "count", "the number of pairs confirmed")
        try:
            recs = actions.bulk(rs, view, str(data.get("decision") or ""), reviewer, count,
                                reason=data.get("reason"), note=data.get("note"))
        except actions.ViewChanged as e:
            raise Refused(409, str(e), "conflict") from e
        return {"saved": len(recs), "ids": [r["pair_id"] for r in recs]}

    @app.post("/api/undo")
    async def undo(request: Request):
        await _json_body(request, max_body_bytes)
        recs = actions.undo(rs, reviewer)
        return {"undone": len(recs), "ids": [r["pair_id"] for r in recs]}
