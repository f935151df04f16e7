"""Start a real ``coalqa serve`` process on a free loopback port for tests, and stop it by its process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``python -m coalqa.cli serve ARGS --port P`` with stdout+stderr in ``log``; :meth:`wait` until /health answers."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 -- open while the process runs, closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coalqa.cli", "serve", *args, "--port", str(self.port)],
            stdout=self._log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )

    def wait(self, timeout: float = 240) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coalqa serve exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"coalqa serve did not answer /health within {timeout} s:\n{self.log.read_text(errors='replace')}")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()
