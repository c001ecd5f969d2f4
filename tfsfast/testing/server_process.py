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
from collections.abc import Callable, Sequence
from typing import Any

from tfsfast.testing.wait import WAIT_SECONDS, wait_until

READY_LINE = "Exporting HTTP/REST API at:localhost:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A tfsfast server on free ports; ``start`` returns once the REST API is exported.

    Its stderr is collected in ``log_lines`` (a thread drains it so the pipe never fills); a
    test waits for a line with ``wait_for_log``, woken by each line as it arrives.
    """

    def __init__(self, flags: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.rest_port = free_port()
        self.grpc_port = free_port()
        self.flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *flags]
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        # Notified at each line and at the end of the log (every writer closed the pipe).
        self._log_changed = threading.Condition()
        self._log_ended = False
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 120, wait: bool = True) -> ServerProcess:
        """Starts the process; with ``wait`` returns once the REST API is exported (raising if it
        exits or the timeout passes first), without it at once (see ``wait_for_log``)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfsfast", *self.flags], env=self.env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not wait:
            return self
        if self._find(READY_LINE, timeout) is None:
            self.stop()
            raise RuntimeError("tfsfast did not start:\n" + self.log)
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        with self.process.stderr as stream:  # closed at the end: every writer has exited
            for line in stream:
                with self._log_changed:
                    self.log_lines.append(line.rstrip("\n"))
                    self._log_changed.notify_all()
        with self._log_changed:
            self._log_ended = True
            self._log_changed.notify_all()

    def _find(self, text: str, timeout: float) -> str | None:
        """The first line containing ``text``, once there is one; None if the log ends or
        ``timeout`` seconds pass without it."""
        found: list[str] = []
        scanned = 0

        def seen() -> bool:
            nonlocal scanned
            lines = self.log_lines
            found.extend(line for line in lines[scanned:] if text in line)
            scanned = len(lines)
            return bool(found) or self._log_ended

        with self._log_changed:
            self._log_changed.wait_for(seen, timeout)
        return found[0] if found else None

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        """Waits until a line of the log contains ``text``; returns that line. AssertionError
        if the log ends (the process exited) or ``timeout`` seconds pass without one."""
        line = self._find(text, timeout)
        if line is None:
            ended = "the log ended" if self._log_ended else f"none within {timeout} s"
            raise AssertionError(f"no log line with {text!r}: {ended}:\n{self.log}")
        return line

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

    def wait_until(self, condition: Callable[[], object], what: str,
                   timeout: float = WAIT_SECONDS) -> None:
        """:func:`tfsfast.testing.wait.wait_until` with this server's log in the failure."""
        wait_until(condition, what, timeout, detail=lambda: self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Sends ``sig`` (unless the process has exited) and waits for the exit (killing it
        after ``timeout`` s); returns the exit code. The log is whole afterwards, unless a child
        process still holds the pipe."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._drainer is not None:
            self._drainer.join(timeout)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
