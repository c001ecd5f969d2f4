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

The model config: the server process is the one authority on the config in force (the polls of
``--model_config_file`` and ``HandleReloadConfigRequest`` reach it alone). Each config it puts
in force (``ServerCore.add_config_listener``) is written to every worker's stdin (the serialized
``ModelServerConfig`` after its length, 8 bytes big-endian; a worker that is behind is sent only
the latest), and a worker started or restarted later is sent the config in force first. A
worker (``ServerConfigFollower``):

- starts from the config in force, not from its flags (the server may have reloaded since it
  started): first without its version labels, which TF Serving assigns only to versions already
  AVAILABLE (a fresh process has none), then with them as soon as its models have loaded;
- applies each config it is sent as the server did (``ServerCore.reload_config``: all or
  nothing), at once; it never polls ``--model_config_file`` itself;
- when a config does not apply (a label names a version this worker has not loaded yet, a model
  that does not load here), keeps serving its previous config, logs why and tries again every
  ``WORKER_RELOAD_RETRY_SECONDS``; a config that still does not apply
  ``--reload_config_timeout_seconds`` after it was sent makes the worker drain and exit, and the
  server starts it again, from the config in force.

So the workers serve the server's models and labels as soon as each has loaded what a reload
adds, and the same versions (each polls the base paths every ``--file_system_poll_wait_seconds``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from tfsfast.server import model_config as mc
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

WORKER_ENV = "TFSFAST_REST_WORKER"
RESTART_DELAY_SECONDS = 1.0
# From the server to its workers: the shutdown delay is over, drain now.
END_SHUTDOWN_DELAY_SIGNAL = signal.SIGUSR1
# How often a worker tries again to apply a config that failed to apply.
WORKER_RELOAD_RETRY_SECONDS = 1.0
# The length before each config the server writes to a worker.
_LENGTH = struct.Struct(">Q")


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


# --- the model config, from the server to its workers -----------------------------------------


def write_config_message(stream: IO[bytes], data: bytes) -> None:
    """Writes one serialized ``ModelServerConfig`` (after its length) and flushes."""
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_config_message(stream: IO[bytes]) -> bytes | None:
    """The next serialized ``ModelServerConfig``; None at the end of the stream (the server
    has exited), a message cut short included."""
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    return _read_exactly(stream, _LENGTH.unpack(header)[0])


def server_config_stream() -> IO[bytes]:
    """In a worker: the stream the server writes the configs to (stdin).

    Unbuffered: a thread blocked reading ``sys.stdin.buffer`` would hold its lock, which the
    interpreter takes at exit (a fatal error when a daemon thread still holds it).
    """
    return open(0, "rb", buffering=0, closefd=False)


def read_config_in_force(stream: IO[bytes]) -> Any:
    """In a worker: the config in force, which the server sends first (blocks until it has).

    UNAVAILABLE if the server exited before sending it.
    """
    data = read_config_message(stream)
    if data is None:
        raise ServingError(Code.UNAVAILABLE, "The server process exited before it sent this REST "
                                             "worker the model config in force")
    return mc.ModelServerConfig.FromString(data)


def without_version_labels(config: Any) -> Any:
    """A copy of ``config`` whose models have no version labels (a worker's first config)."""
    copy = mc.ModelServerConfig()
    copy.CopyFrom(config)
    for model in copy.model_config_list.config:
        model.ClearField("version_labels")
    return copy


class ServerConfigFollower:
    """In a REST worker: applies each model config the server puts in force (module
    docstring), read from ``stream``; ``on_give_up`` is called (once, and the follower stops)
    when one still does not apply ``give_up_seconds`` after it was sent. Thread-safe."""

    def __init__(self, core: Any, config_in_force: Any, stream: IO[bytes], *,
                 give_up_seconds: float, on_give_up: Callable[[], None],
                 retry_seconds: float = WORKER_RELOAD_RETRY_SECONDS) -> None:
        self._core = core  # a ServerCore
        self._stream = stream
        self._give_up_seconds = give_up_seconds
        self._on_give_up = on_give_up
        self._retry_seconds = retry_seconds
        self._cv = threading.Condition()
        # The config the server sent last, when, and how many it has sent.
        self._wanted = config_in_force
        self._sent_at = time.monotonic()
        self._sent = 1
        self._stopped = False

    def start(self) -> None:
        threading.Thread(target=self._read, name="tfsfast_config_reader", daemon=True).start()
        threading.Thread(target=self._follow, name="tfsfast_config_follower",
                         daemon=True).start()

    def stop(self) -> None:
        """No config is applied after this (the worker is shutting down)."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def _read(self) -> None:
        while (data := read_config_message(self._stream)) is not None:
            config = mc.ModelServerConfig.FromString(data)
            with self._cv:
                self._wanted, self._sent_at = config, time.monotonic()
                self._sent += 1
                self._cv.notify_all()
        # The server has exited; watch_parent stops this worker.

    def _follow(self) -> None:
        done = 0  # the number of the config last found in force
        reported = 0  # the number of the config whose failure was logged last
        while True:
            with self._cv:
                while not self._stopped and self._sent == done:
                    self._cv.wait()
                if self._stopped:
                    return
                number, wanted, sent_at = self._sent, self._wanted, self._sent_at
            error = self._apply(wanted)
            if error is None:
                done = number
                continue
            with self._cv:
                if self._stopped:  # the reload failed because the worker is shutting down
                    return
            waited = time.monotonic() - sent_at
            if waited >= self._give_up_seconds:
                _log.error("REST worker %d could not apply the server's model config within %g "
                           "s (--reload_config_timeout_seconds): %s; exiting, for the server to "
                           "start it again with the config in force", os.getpid(),
                           self._give_up_seconds, error)
                self._on_give_up()
                return
            if reported != number:
                reported = number
                _log.error("REST worker %d could not apply the server's model config: %s; "
                           "serving the previous one and trying again every %g s", os.getpid(),
                           error, self._retry_seconds)
            retry_at = time.monotonic() + min(self._retry_seconds, self._give_up_seconds - waited)
            with self._cv:  # until the retry, unless a newer config comes first
                while not self._stopped and self._sent == number:
                    remaining = retry_at - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)

    def _apply(self, config: Any) -> ServingError | None:
        if self._core.config == config:
            return None
        try:
            self._core.reload_config(config)
        except ServingError as e:
            return e
        _log.info("REST worker %d applied the server's model config", os.getpid())
        return None


# --- the pool -------------------------------------------------------------------------------------


class RestWorkerPool:
    """Starts, watches and stops the N-1 REST worker processes of a server, and sends them the
    model config in force. Thread-safe."""

    def __init__(self, argv: Sequence[str], num_workers: int) -> None:
        self._argv = [sys.executable, "-m", "tfsfast", *argv]
        self._count = num_workers
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # The config in force, serialized, and how many configs have been put in force.
        self._configs = threading.Condition(self._lock)
        self._config = b""
        self._config_number = 0

    def publish_config(self, config: Any) -> None:
        """Makes ``config`` the one every worker serves, now and when (re)started: a
        ``ServerCore`` config listener. Returns at once; each worker's sender thread writes it.
        """
        data = config.SerializeToString(deterministic=True)
        with self._configs:
            if data == self._config and self._config_number:
                return
            self._config = data
            self._config_number += 1
            self._configs.notify_all()

    def start(self) -> None:
        """Starts the workers; a config must have been published."""
        assert self._config_number, "no model config published"
        for index in range(1, self._count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(os.getpid())}
        process = subprocess.Popen(self._argv, env=env, stdin=subprocess.PIPE)
        with self._lock:
            self._processes.append(process)
        _log.info("Started REST worker %d (pid %d)", index, process.pid)
        threading.Thread(target=self._watch, args=(index, process), daemon=True,
                         name=f"tfsfast_worker_{index}").start()
        threading.Thread(target=self._send_configs, args=(process,), daemon=True,
                         name=f"tfsfast_worker_{index}_config").start()

    def _send_configs(self, process: subprocess.Popen[bytes]) -> None:
        """Writes the config in force to a worker, then each new one, until it exits."""
        assert process.stdin is not None
        sent = 0
        try:
            while True:
                with self._configs:
                    while self._config_number == sent and process.returncode is None:
                        self._configs.wait()
                    if process.returncode is not None:
                        return
                    data, sent = self._config, self._config_number
                write_config_message(process.stdin, data)  # outside the lock: it may block
        except OSError:  # the worker has exited (a broken pipe); _watch restarts it
            pass
        finally:
            with contextlib.suppress(OSError):
                process.stdin.close()

    def _watch(self, index: int, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)
            self._configs.notify_all()  # its sender thread ends
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
