"""Unary methods answered straight from a gRPC completion queue, without grpcio's per-call
Python machinery.

Why: grpcio's synchronous server spends ~190-260 µs of CPU on every unary call on the project
machine before tfsfast's handler runs (its Python state machine, a thread-pool hand-off, a
``threading.Condition`` round trip between the poller and the handler thread, three events on
its poller per call, each one a GIL hand-over). A loop that owns a completion queue and drives
the call with three batches costs ~80 µs for the same call (``bench/grpc.py``; measured with
a fixed response on the project machine, server pinned to one core).

How: the methods are *registered* on grpcio's core server (``register_method`` before
``start``), with requests for them on this loop's own completion queue; gRPC core routes a
registered method to a pending registered request before it looks at the generic one, so these
methods never reach grpcio's Python server, while every other method (ModelService, health,
reflection) is still served by it. The loop thread, per call:

1. a registered call arrives: ask for the next one, then start receiving the request message;
2. the message arrived: run the method's handler *on this thread*. It returns the response
   bytes, or a continuation that must not run here (a model run of unknown or non-trivial cost,
   a batching queue, a reload): that goes to the handler thread pool, which sends the answer;
3. one batch sends the initial metadata, the response (or none) and the status, and waits for
   the client's close; its completion drops the call.

Contracts the handlers see (what grpcio's server gives them, and what TF Serving's clients get):
the context passed to a handler has ``time_remaining()`` (seconds, None without a deadline,
never negative; the only part of ``grpc.ServicerContext`` PredictionService uses). A handler
raises ``ServingError`` for a status (code unchanged, message cut at 1024 characters as
``grpc_status_util`` does); any other exception becomes INTERNAL ``<type>: <message>``. A
request above ``max_message_bytes`` is RESOURCE_EXHAUSTED naming the flag before the handler
runs, and so is a response above it. A unary call that ends without a request message is
UNIMPLEMENTED, as grpcio answers it.

Shutdown is grpcio's: ``grpc.Server.stop`` shuts the core server down, which fails the pending
registered requests and, after the grace, cancels the calls in flight (ours included); the
server's termination event is set once every call is gone, after which ``stop`` here shuts the
completion queue and the loop thread ends.

This relies on one private attribute of grpcio's server object (``_cy_server``, the core server)
and on ``grpc._cython.cygrpc``; when either is missing, :meth:`FastUnaryMethods.attach` returns
False and the caller serves the methods through grpcio's generic handlers instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc

from tfsfast.server.grpc import grpc_status_util
from tfsfast.util.status import Code, ServingError

try:
    from grpc._cython import cygrpc
except ImportError:  # pragma: no cover - every grpcio release so far has it
    cygrpc = None

_log = logging.getLogger(__name__)

MAX_MESSAGE_FLAG = "--grpc_max_message_bytes"

# A handler's answer: the response bytes, or a continuation for the thread pool that returns them.
Continuation = Callable[[], bytes]
Answer = bytes | Continuation
Handler = Callable[[bytes, "UnaryCall"], Answer]

# gRPC core reports "no deadline" as gpr_inf_future, which grpcio turns into ~9.2e18 seconds.
_NO_DEADLINE = 1e15

if cygrpc is not None:
    _QUEUE_SHUTDOWN = cygrpc.CompletionType.queue_shutdown
    _QUEUE_TIMEOUT = cygrpc.CompletionType.queue_timeout
    # Operations hold the C state of their batch (a received buffer): a new one every time.
    _ReceiveMessage = cygrpc.ReceiveMessageOperation
    _SendInitialMetadata = cygrpc.SendInitialMetadataOperation
    _SendMessage = cygrpc.SendMessageOperation
    _SendStatus = cygrpc.SendStatusFromServerOperation
    _ReceiveClose = cygrpc.ReceiveCloseOnServerOperation
    _OK = int(cygrpc.StatusCode.ok)


def check_message_size(size: int, limit: int, what: str) -> None:
    """RESOURCE_EXHAUSTED naming ``--grpc_max_message_bytes`` when ``size`` exceeds ``limit``."""
    if size > limit:
        raise ServingError(Code.RESOURCE_EXHAUSTED,
                           f"{what} message of {size} bytes exceeds the maximum of {limit} "
                           f"bytes (flag {MAX_MESSAGE_FLAG})")


def error_status(error: BaseException) -> tuple[int, bytes]:
    """The (gRPC code, details) a client gets for an exception a handler raised."""
    if not isinstance(error, ServingError):
        error = grpc_status_util.internal_error(error)
    code, message = grpc_status_util.to_grpc_status(error)
    return code.value[0], message.encode("utf-8", "replace")


def _call_done(event: Any) -> None:
    """The last batch of a call completed (or failed: the client went); nothing is left to do."""


class UnaryCall:
    """One call in flight: the core call, its method and deadline. Also the handler's context."""

    __slots__ = ("_owner", "call", "deadline", "method")

    def __init__(self, owner: FastUnaryMethods, method: _Method, call: Any,
                 deadline: float) -> None:
        self._owner = owner
        self.method = method
        self.call = call
        self.deadline = deadline

    # --- the handler's context (the part of grpc.ServicerContext tfsfast's handlers use) ------

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline (never negative); None without one."""
        if self.deadline >= _NO_DEADLINE:
            return None
        return max(self.deadline - time.time(), 0.0)

    # --- completion-queue callbacks ---------------------------------------------------------

    def received(self, event: Any) -> None:
        """Step 2: the request message (or its absence) arrived; answer or hand off."""
        data = event.batch_operations[0].message() if event.success else None
        if data is None:
            if event.success:
                self.fail(int(grpc.StatusCode.UNIMPLEMENTED.value[0]),
                          f'"{self.method.name}" requires exactly one request message.'
                          .encode())
            return  # the call was cancelled before its message came: nothing to answer
        method = self.method
        if method.inline:
            try:
                check_message_size(len(data), method.max_message_bytes, "Request")
                answer = method.handler(data, self)
            except Exception as e:  # every failure is a status
                self.fail(*error_status(e))
                return
            if type(answer) is bytes:
                self.reply(answer)
                return
            self._owner.submit(self, answer)
        else:
            self._owner.submit(self, lambda: self._run(data))

    def _run(self, data: bytes) -> bytes:
        check_message_size(len(data), self.method.max_message_bytes, "Request")
        answer = self.method.handler(data, self)
        return answer if type(answer) is bytes else answer()

    # --- answering (from the loop thread or a pool thread: core batches are thread-safe) ------

    def reply(self, response: bytes) -> None:
        """Step 3 with a response (RESOURCE_EXHAUSTED instead if it is above the limit)."""
        limit = self.method.max_message_bytes
        if len(response) > limit:
            try:
                check_message_size(len(response), limit, "Response")
            except ServingError as e:
                self.fail(*error_status(e))
                return
        self.call.start_server_batch((
            _SendInitialMetadata(None, 0),
            _SendMessage(response, 0),
            _SendStatus(None, _OK, b"", 0),
            _ReceiveClose(0),
        ), _call_done)

    def fail(self, code: int, details: bytes) -> None:
        """Step 3 with an error status and no response message."""
        self.call.start_server_batch((
            _SendInitialMetadata(None, 0),
            _SendStatus(None, code, details, 0),
            _ReceiveClose(0),
        ), _call_done)


class _Method:
    """A registered method and the loop's standing request for its next call."""

    __slots__ = ("_owner", "handler", "inline", "max_message_bytes", "name")

    def __init__(self, owner: FastUnaryMethods, name: str, handler: Handler, inline: bool,
                 max_message_bytes: int) -> None:
        self._owner = owner
        self.name = name
        self.handler = handler
        self.inline = inline
        self.max_message_bytes = max_message_bytes

    def request(self) -> None:
        owner = self._owner
        owner.server.request_registered_call(owner.cq, owner.cq, self.name, self.arrived)

    def arrived(self, event: Any) -> None:
        """Step 1: a call for this method arrived (success False: the server is shutting down)."""
        if not event.success:
            return
        owner = self._owner
        if not owner.stopping:
            self.request()
        call = UnaryCall(owner, self, event.call, event.call_details.deadline)
        event.call.start_server_batch((_ReceiveMessage(0),), call.received)


class FastUnaryMethods:
    """Serves unary methods of a ``grpc.Server`` from a completion-queue loop (module doc).

    ``methods`` maps fully qualified method names (``/package.Service/Method``) to
    ``(handler, inline)``: ``handler(request_bytes, context)`` returns the response bytes or a
    continuation; with ``inline`` False the whole handler runs on ``executor`` instead of the
    loop thread. Use: :meth:`attach` before the server starts, :meth:`start` after it started,
    :meth:`stop` once it has terminated. Thread-safe.
    """

    def __init__(self, methods: Mapping[str, tuple[Handler, bool]], executor: Executor,
                 max_message_bytes: int) -> None:
        self.methods = [_Method(self, name, handler, inline, max_message_bytes)
                        for name, (handler, inline) in methods.items()]
        self.executor = executor
        self.server: Any = None
        self.cq: Any = None
        self.stopping = False
        self._thread: threading.Thread | None = None

    def attach(self, server: grpc.Server) -> bool:
        """Registers the methods on ``server`` (not started yet); False when this grpcio does
        not expose what the loop needs (the methods then stay with the generic handlers)."""
        core_server = getattr(server, "_cy_server", None)
        if cygrpc is None or core_server is None or not hasattr(core_server,
                                                                "request_registered_call"):
            return False
        self.server = core_server
        self.cq = cygrpc.CompletionQueue()
        core_server.register_completion_queue(self.cq)
        for method in self.methods:
            core_server.register_method(method.name)
        return True

    def start(self) -> None:
        """Starts the loop thread; call after ``grpc.Server.start``."""
        for method in self.methods:
            method.request()
        self._thread = threading.Thread(target=self._serve, name="tfsfast_grpc_unary",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the loop; call once the grpc.Server has terminated (no call is left)."""
        self.stopping = True
        if self.cq is not None and self._thread is not None:
            self.cq.shutdown()
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        poll = self.cq.poll
        while True:
            event = poll()
            kind = event.completion_type
            if kind == _QUEUE_SHUTDOWN:
                return
            if kind == _QUEUE_TIMEOUT:
                continue
            try:
                event.tag(event)
            except Exception:  # a bug in one call must not stop the loop
                _log.exception("gRPC unary loop: a completion failed")
            event = None  # drop the call before blocking in poll again

    def submit(self, call: UnaryCall, work: Continuation) -> None:
        """Runs ``work`` on the executor and answers ``call`` with its result."""
        try:
            self.executor.submit(self._finish, call, work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            call.fail(Code.UNAVAILABLE, b"The server is shutting down")

    @staticmethod
    def _finish(call: UnaryCall, work: Continuation) -> None:
        try:
            response = work()
        except Exception as e:  # every failure is a status
            call.fail(*error_status(e))
            return
        call.reply(response)

