"""Runs a real ``python -m tfsfast`` process for integration tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

READY_LINE = "Exporting HTTP/REST API at:localhost:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A tfsfast server on free ports; ``start`` returns once the REST API is exported.

    Its stderr is collected in ``log_lines`` (a thread drains it so the pipe never fills).
    """

    def __init__(self, flags: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.rest_port = free_port()
        self.grpc_port = free_port()
        self.flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *flags]
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 120, wait: bool = True) -> ServerProcess:
        """Starts the process; with ``wait`` returns once the REST API is exported (raising if it
        exits or the timeout passes first), without it at once (see ``wait_for_log``)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfsfast", *self.flags], env=self.env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._drain, daemon=True).start()
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tfsfast did not start:\n" + self.log)
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if READY_LINE in line:
                self._ready.set()

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        """Waits until a line of the log contains ``text``; returns that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log_lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line with {text!r} within {timeout} s:\n{self.log}")

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, (bytes, str))
                                          else json.dumps(body))
        status, _, payload = self.request(method, path, data)
        return status, json.loads(payload)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
