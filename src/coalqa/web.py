"""Security pieces shared by coalqa's web apps (``coalqa serve``'s chat page and API, ``coalqa review``).

* :data:`PAGE_CSP` / :data:`PAGE_HEADERS`: the Content-Security-Policy every page is served with: scripts, styles and
  requests only from the app itself, no inline script or style, no frames, no forms posting elsewhere. Pages insert
  model and user text only as text (``textContent``), so a QA pair holding ``<script>`` shows as those characters.
* :func:`bearer_ok`: the ``Authorization: Bearer <token>`` check, in constant time (:func:`hmac.compare_digest`).
* :func:`read_body`: a request body read up to a byte limit (refused as soon as it is over, not after reading it all).
* :func:`is_loopback`: whether a listening address answers this machine only (``127.0.0.1``, ``::1``, ``localhost``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>``; always True when ``token`` is ``None``.

    The comparison takes the same time whatever the mismatch (:func:`hmac.compare_digest`).
    """
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_body(request, limit: int, fail: Callable[[str], Exception]) -> bytes:
    """The body of a Starlette ``request``, at most ``limit`` bytes.

    Raises:
        the exception ``fail(message)`` returns, as soon as the declared ``Content-Length`` or the bytes received
        exceed ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise fail(f"request body is {declared} bytes, at most {limit} allowed")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise fail(f"request body is over {limit} bytes")
    return bytes(body)
