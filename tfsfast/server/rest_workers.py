"""REST worker processes: ``--rest_api_num_workers=N`` serves the REST port from N processes.

The server process serves gRPC and REST; N-1 workers, started with the same flags, serve REST
only, on the same port (SO_REUSEPORT: the kernel spreads new connections over the processes).
Each worker loads every model itself, so N workers hold N copies of the models: the price of
using more than one core for HTTP parsing and JSON in Python. One process stays the default, as
in TF Serving.

A worker knows it is one from ``TFSFAST_REST_WORKER`` (the server's pid); it exits when the
server does (it watches its parent), and the server re-starts a worker that dies while serving.

Shutdown: the server sends SIGTERM to every worker as soon as it is signalled itself, so the
workers' readiness turns off with the server's; each then serves through the same
``--shutdown_delay_seconds`` on its own clock. The delay of a worker ends with the server's:
when the server starts draining it sends ``END_SHUTDOWN_DELAY_SIGNAL``. A worker ignores a
repeated SIGTERM or SIGINT (it may be the server forwarding a signal that also reached the
worker, from a terminal's Ctrl-C or a kill of the process group), so that only the server
decides to cut the delay short.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

_log = logging.getLogger(__name__)

WORKER_ENV = "TFSFAST_REST_WORKER"
RESTART_DELAY_SECONDS = 1.0
# From the server to its workers: the shutdown delay is over, drain now.
END_SHUTDOWN_DELAY_SIGNAL = signal.SIGUSR1


def is_rest_worker() -> bool:
    return bool(os.environ.get(WORKER_ENV))


def watch_parent(on_parent_gone: Callable[[], None]) -> None:
    """Calls ``on_parent_gone`` (once) when the server process that started this worker exits."""
    parent = int(os.environ[WORKER_ENV])

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(1.0):
            if os.getppid() != parent:
                _log.info("Server process %d is gone: REST worker %d exits", parent,
                          os.getpid())
                on_parent_gone()
                return

    threading.Thread(target=watch, name="tfsfast_parent_watch", daemon=True).start()


class RestWorkerPool:
    """Starts, watches and stops the N-1 REST worker processes of a server. Thread-safe."""

    def __init__(self, argv: Sequence[str], num_workers: int) -> None:
        self._argv = [sys.executable, "-m", "tfsfast", *argv]
        self._count = num_workers
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        for index in range(1, self._count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(os.getpid())}
        process = subprocess.Popen(self._argv, env=env)
        with self._lock:
            self._processes.append(process)
        _log.info("Started REST worker %d (pid %d)", index, process.pid)
        threading.Thread(target=self._watch, args=(index, process), daemon=True,
                         name=f"tfsfast_worker_{index}").start()

    def _watch(self, index: int, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)
        if self._stopping.is_set():
            return
        _log.error("REST worker %d (pid %d) exited with %s; starting it again", index,
                   process.pid, code)
        if not self._stopping.wait(RESTART_DELAY_SECONDS):
            self._spawn(index)

    def terminate(self) -> None:
        """SIGTERM to every worker: each turns not ready, serves through its shutdown delay, then
        drains its requests like the server does. Workers are no longer restarted after it."""
        self._stopping.set()
        self._signal_all(signal.SIGTERM)

    def end_shutdown_delay(self) -> None:
        """Tells every worker that the shutdown delay is over (see the module docstring)."""
        self._signal_all(END_SHUTDOWN_DELAY_SIGNAL)

    def _signal_all(self, sig: int) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            if process.poll() is None:
                process.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Waits up to ``timeout`` for the terminated workers, then kills what is left."""
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
