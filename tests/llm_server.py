"""A local chat-completions server for tests and the benchmark: scripted replies and faults.

Speaks enough of the OpenAI chat-completions protocol (``POST …/chat/completions``) for both the
``openai`` and the ``zhipuai`` SDKs. Each request first takes the next queued fault, if any:

* ``{"status": 429, "headers": {"Retry-After": "1"}}`` — an error reply (any status; ``"code"`` and
  ``"message"`` set the body's ``error.code``/``error.message``, as Zhipu's ``{"code": "1113", "message":
  "您的账户已欠费，请充值后重试。"}``; with ``"echo_auth": True`` its message repeats the request's
  Authorization header);
* ``{"hang": 2.0}`` — sleep, then answer normally (to exceed the client's timeout);
* ``{"drop": True}`` — close the connection without answering;
* ``{"body": b"..."}`` — a 200 reply with this raw body (malformed JSON, no choices…);
* ``{"content": "..."}`` — a well-formed completion whose message content is this text.

Without a fault, the content is ``reply(prompt)``: by default :func:`echo_pairs`, deterministic
pairs built from the text between the ``######`` markers. ``latency`` delays every reply.
``error`` (a fault dict) answers every request without a queued fault with that error.

``rate_limit=R`` enforces at most R accepted requests in any sliding second, as providers do; a request
above it gets ``429`` with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (the time until
a slot frees), and is not counted. ``accepted``/``limited`` count both kinds. Waiting is sleeping: the
server uses no CPU to enforce the limit.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def echo_pairs(prompt: str) -> str:
    """Three deterministic ``{"input", "output"}`` pairs about the chunk text inside ``prompt``."""
    m = re.search(r"######\n?(.*?)\n?######", prompt, re.DOTALL)
    text = (m.group(1) if m else prompt).strip()
    head = text[:30]
    pairs = [
        {"input": f"“{head}”这一条规定了什么？", "output": text},
        {"input": f"请概括“{head}”的要求。", "output": f"该条要求：{text}"},
        {"input": f"“{head}”适用于哪些情形？", "output": f"依据原文，{text}"},
    ]
    return json.dumps(pairs, ensure_ascii=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class LLMServer:
    """``with LLMServer() as srv: srv.url`` → ``http://127.0.0.1:PORT/v1``; ``srv.faults.append(...)``."""

    def __init__(self, reply: Callable[[str], str] = echo_pairs, latency: float = 0.0, *,
                 rate_limit: float | None = None, error: dict[str, Any] | None = None) -> None:
        self.reply, self.latency, self.rate_limit, self.error = reply, latency, rate_limit, error
        self.faults: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.accepted = self.limited = 0
        self._window: deque[float] = deque()  # acceptance times within the last second
        self._lock = threading.Lock()
        server = self

        def over_limit() -> dict[str, Any] | None:
            """A 429 fault when accepting now would exceed ``rate_limit`` requests per second (under the lock)."""
            if server.rate_limit is None:
                return None
            now = time.monotonic()
            while server._window and now - server._window[0] >= 1.0:
                server._window.popleft()
            if len(server._window) >= server.rate_limit:
                server.limited += 1
                wait = 1.0 - (now - server._window[0])
                return {"status": 429, "code": "1302", "fast": True, "message": "rate limit: too many requests per second",
                        "headers": {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000) + 1)}}
            server._window.append(now)
            server.accepted += 1
            return None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    fault = server.faults.popleft() if server.faults else (server.error or over_limit() or {})
                    server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                            "body": body, "fault": fault, "time": time.monotonic()})
                if server.latency and not fault.get("fast"):  # a rate limiter answers at once
                    time.sleep(server.latency)
                if fault.get("drop"):
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault.get("hang"):
                    time.sleep(fault["hang"])
                if "status" in fault:
                    message = "scripted fault"
                    if fault.get("echo_auth"):  # a careless proxy echoing credentials back
                        message += f" (got Authorization: {self.headers.get('Authorization')})"
                    if "message" in fault:
                        message = fault["message"] + message.removeprefix("scripted fault")
                    payload = json.dumps({"error": {"message": message, "code": fault.get("code", fault["status"])}},
                                         ensure_ascii=False).encode()
                    return self._send(fault["status"], payload, fault.get("headers", {}))
                if "body" in fault:
                    return self._send(200, fault["body"], {})
                request = json.loads(body or b"{}")
                prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
                content = fault["content"] if "content" in fault else server.reply(prompt)
                completion = {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": request.get("model", ""),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(content), "total_tokens": len(prompt) + len(content)},
                }
                self._send(200, json.dumps(completion, ensure_ascii=False).encode(), {})

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) first

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
