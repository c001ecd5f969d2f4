"""Pure-Python per-call machinery of ``fast_unary``'s loop: the reference twin of
``_fast_unary``.

What runs on the loop thread for every call: :func:`serve` (the loop), :class:`_Method` (the
standing request for a method's next call, step 1 of the module doc of ``fast_unary``) and
:class:`UnaryCall` (steps 2 and 3, and the handler's context). ``fast_unary.FastUnaryMethods``
owns them and picks this module or the compiled one; both behave the same to the handlers and
the clients. The helpers (``check_message_size``, ``error_status``) are shared by both.
A separate implementation from the compiled module, not the same source compiled: see there why.

With an access log (the owner's ``access_log``), every call answered gets its line, from the
thread whose answer the gate let through (``tfsfast.server.access_log``): the call keeps, from
its arrival, the time its message was received (the arrival until then), the message's size and
its first ``REQUEST_PREFIX_BYTES`` bytes. Without one, the cost is a test of ``access_log`` when
the call arrives, when its message does and when its answer goes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from tfsfast.server.access_log import REQUEST_PREFIX_BYTES
from tfsfast.server.grpc import grpc_status_util
from tfsfast.util.status import Code, ServingError

try:
    from grpc._cython import cygrpc
except ImportError:  # pragma: no cover - every grpcio release so far has it
    cygrpc = None

_log = logging.getLogger("tfsfast.server.grpc.fast_unary")

MAX_MESSAGE_FLAG = "--grpc_max_message_bytes"

# A handler's answer: the response bytes, or a continuation for the thread pool that returns them.
Continuation = Callable[[], bytes]
Answer = bytes | Continuation
Handler = Callable[[bytes, "UnaryCall"], Answer]

# gRPC core reports "no deadline" as gpr_inf_future, which grpcio turns into ~9.2e18 seconds.
NO_DEADLINE = 1e15

UNIMPLEMENTED = int(grpc.StatusCode.UNIMPLEMENTED.value[0])

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
    _CALL_OK = int(cygrpc.CallError.ok)


def reply_operations(response: bytes) -> tuple[Any, ...]:
    """The batch that answers a call with ``response`` and status OK (step 3)."""
    return (_SendInitialMetadata(None, 0), _SendMessage(response, 0),
            _SendStatus(None, _OK, b"", 0), _ReceiveClose(0))


def failure_operations(code: int, details: bytes) -> tuple[Any, ...]:
    """The batch that ends a call with status ``code`` and no response message (step 3)."""
    return (_SendInitialMetadata(None, 0), _SendStatus(None, code, details, 0),
            _ReceiveClose(0))


def check_message_size(size: int, limit: int, what: str) -> None:
    """RESOURCE_EXHAUSTED naming ``--grpc_max_message_bytes`` when ``size`` exceeds ``limit``."""
    if size > limit:
        raise ServingError(Code.RESOURCE_EXHAUSTED,
                           f"{what} message of {size} bytes exceeds the maximum of {limit} "
                           f"bytes (flag {MAX_MESSAGE_FLAG})")


def grpcio_handler(method: Callable[[bytes, Any], Answer], limit: int
                   ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    """``method`` (request bytes and the context in, the response bytes or a continuation that
    returns them out) as a handler of grpcio's server, for raw-bytes methods: the request and
    the response are held to ``limit`` (``check_message_size``), a ServingError ends the call
    with its status, and any other exception with INTERNAL (a bug must not take the server
    down)."""

    def handler(data: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            check_message_size(len(data), limit, "Request")
            response = method(data, context)
            if not isinstance(response, bytes):
                response = response()
            check_message_size(len(response), limit, "Response")
            return response
        except ServingError as e:
            grpc_status_util.abort(context, e)
        except Exception as e:
            grpc_status_util.abort(context, grpc_status_util.internal_error(e))

    return handler


def error_status(error: BaseException) -> tuple[int, bytes]:
    """The (gRPC code, details) a client gets for an exception a handler raised."""
    if not isinstance(error, ServingError):
        error = grpc_status_util.internal_error(error)
    code, message = grpc_status_util.to_grpc_status(error)
    return code.value[0], message.encode("utf-8", "replace")


def missing_message(name: str) -> bytes:
    """The UNIMPLEMENTED details grpcio sends for a unary call without a request message."""
    return f'"{name}" requires exactly one request message.'.encode()


# What Gate.answer did.
STARTED = 0           # this answer's batch started: it is on its way
ANSWERED_BEFORE = 1   # another answer started first: this one is dropped
NOT_STARTED = 2       # no last batch will come (the gate is closed, or core refused the batch)


class Gate:
    """Lets a call start its batches until the loop stops, and answer once.

    The drain answers the calls still running at its deadline; their own answer, when it comes
    later from the handler pool, must not be sent too, and nothing may start a batch once
    ``close`` shut the completion queue (gRPC core aborts the process on that). Both are decided
    under one lock, around the batch's start.
    """

    __slots__ = ("_lock", "closed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closed = False

    def start(self, call: Any, operations: tuple[Any, ...], tag: Any) -> bool:
        """Starts the batch; False (nothing started) once closed or if core refused it."""
        with self._lock:
            if self.closed:
                return False
            return call.start_server_batch(operations, tag) == _CALL_OK

    def answer(self, unary_call: UnaryCall, operations: tuple[Any, ...]) -> int:
        """Starts ``unary_call``'s last batch unless it was answered already: STARTED,
        ANSWERED_BEFORE or NOT_STARTED."""
        with self._lock:
            if unary_call.answered:
                return ANSWERED_BEFORE
            if self.closed:
                return NOT_STARTED
            unary_call.answered = True
            started = unary_call.call.start_server_batch(operations, unary_call.finished)
            return STARTED if started == _CALL_OK else NOT_STARTED

    def close(self) -> None:
        """No batch starts after this returns."""
        with self._lock:
            self.closed = True


class UnaryCall:
    """One call in flight: the core call, its method and deadline. Also the handler's context.

    It is in its owner's ``calls`` from its arrival until its last batch completes; ``answered``
    once that batch started (its answer is then on its way, and any later one is dropped).
    With an access log: ``received_at``, ``request_head`` and ``bytes_in`` (module docstring).
    """

    __slots__ = ("_owner", "answered", "bytes_in", "call", "deadline", "method", "received_at",
                 "request_head")

    def __init__(self, owner: Any, method: _Method, call: Any, deadline: float) -> None:
        self._owner = owner
        self.method = method
        self.call = call
        self.deadline = deadline
        self.answered = False
        self.received_at = 0.0
        self.request_head = b""
        self.bytes_in = 0

    # --- the handler's context (the part of grpc.ServicerContext tfsfast's handlers use) ------

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline (never negative); None without one."""
        if self.deadline >= NO_DEADLINE:
            return None
        return max(self.deadline - time.time(), 0.0)

    # --- completion-queue callbacks ---------------------------------------------------------

    def received(self, event: Any) -> None:
        """Step 2: the request message (or its absence) arrived; answer or hand off."""
        data = event.batch_operations[0].message() if event.success else None
        if data is None:
            if event.success:
                self.fail(UNIMPLEMENTED, missing_message(self.method.name))
            else:  # the call was cancelled before its message came: nothing to answer
                self._owner.calls.discard(self)
            return
        method = self.method
        if method.access_log is not None:
            self.received_at = time.monotonic()
            self.request_head = data[:REQUEST_PREFIX_BYTES]
            self.bytes_in = len(data)
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
        return answer if isinstance(answer, bytes) else answer()

    # --- answering (from the loop thread or a pool thread: core batches are thread-safe) ------

    def reply(self, response: bytes) -> None:
        """Step 3 with a response (RESOURCE_EXHAUSTED instead if it is above the limit); nothing
        if the call was answered already (by the drain)."""
        limit = self.method.max_message_bytes
        if len(response) > limit:
            try:
                check_message_size(len(response), limit, "Response")
            except ServingError as e:
                self.fail(*error_status(e))
                return
        self._answer(reply_operations(response), _OK, len(response))

    def fail(self, code: int, details: bytes) -> None:
        """Step 3 with an error status and no response message; nothing if the call was
        answered already."""
        self._answer(failure_operations(code, details), code, 0)

    def _answer(self, operations: tuple[Any, ...], code: int, bytes_out: int) -> None:
        if self.answered:
            return
        outcome = self._owner.gate.answer(self, operations)
        if outcome == NOT_STARTED:
            self._owner.calls.discard(self)  # no completion will come
        elif outcome == STARTED and self.method.access_log is not None:
            self.method.access_log.record_grpc(
                self.received_at, self.call.peer(), self.method.name, self.request_head, int(code),
                self.bytes_in, bytes_out)

    def finished(self, event: Any) -> None:
        """The last batch completed (or failed: the client went); nothing is left to do."""
        self._owner.calls.discard(self)


class _Method:
    """A registered method and the loop's standing request for its next call.

    ``owner`` is the ``FastUnaryMethods``: its ``server`` and ``cq`` (set once attached), its
    ``gate``, ``calls``, ``stopping`` and ``draining`` flags, ``refuse`` and ``submit``, its
    ``access_log`` (None: off; read once, here).
    """

    __slots__ = ("_owner", "access_log", "handler", "inline", "max_message_bytes", "name")

    def __init__(self, owner: Any, name: str, handler: Handler, inline: bool,
                 max_message_bytes: int) -> None:
        self._owner = owner
        self.name = name
        self.handler = handler
        self.inline = inline
        self.max_message_bytes = max_message_bytes
        self.access_log = owner.access_log

    def request(self) -> None:
        owner = self._owner
        owner.server.request_registered_call(owner.cq, owner.cq, self.name, self.arrived)

    def arrived(self, event: Any) -> None:
        """Step 1: a call for this method arrived (success False: the server is shutting down).
        While the server drains, it goes to ``owner.refuse`` instead."""
        if not event.success:
            return
        owner = self._owner
        if not owner.stopping:
            self.request()
        call = UnaryCall(owner, self, event.call, event.call_details.deadline)
        if self.access_log is not None:
            call.received_at = time.monotonic()  # until its message comes (refused calls' time)
        owner.calls.add(call)
        if owner.draining:
            owner.refuse(call)
        elif not owner.gate.start(event.call, (_ReceiveMessage(0),), call.received):
            owner.calls.discard(call)


def serve(cq: Any) -> None:
    """The loop: runs each completion's callback until ``cq`` is shut down."""
    poll = cq.poll
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
