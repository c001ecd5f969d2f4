# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled per-call machinery of ``fast_unary``'s loop; the same contract as
``_fast_unary_py`` (its twin).

What differs is only how: the loop dispatches a completion to its call or method as a C call
(the tag is the ``UnaryCall`` or the ``_Method`` itself, not a bound method made per call), the
call's state is in C fields, the deadline is read from the C clock ``time.time`` reads, and the
twin's cygrpc bindings and operation builders are bound once. The operations themselves, the batches, the gate (one
answer per call, no batch once the loop stopped) and the handler calls are the ones the twin
makes.

Two implementations rather than one source compiled twice: the compiled loop holds cygrpc's
completion tags and operations as C-typed objects and dispatches on their C type, which a Python
source compiled with a ``.pxd`` could not say without becoming this file.

The access log as in the twin: the times from the C clock ``time.monotonic`` reads, the call's
size and prefix in C fields.
"""

from tfsfast._cdefs.clock cimport monotonic, wall_time

from tfsfast.server.access_log import REQUEST_PREFIX_BYTES
from tfsfast.server.grpc import _fast_unary_py as _twin
from tfsfast.server.grpc._fast_unary_py import (
    NO_DEADLINE,
    UNIMPLEMENTED,
    check_message_size,
    cygrpc,
    error_status,
    failure_operations,
    missing_message,
    reply_operations,
)
from tfsfast.util.status import ServingError

import logging
import threading

_log = logging.getLogger("tfsfast.server.grpc.fast_unary")

cdef Py_ssize_t _REQUEST_PREFIX_BYTES = REQUEST_PREFIX_BYTES
cdef double _NO_DEADLINE = NO_DEADLINE
cdef int _UNIMPLEMENTED = UNIMPLEMENTED
cdef object _ServingError = ServingError
cdef object _check_message_size = check_message_size
cdef object _error_status = error_status

# The twin's cygrpc bindings (None and 0 where grpcio has no cygrpc), bound once as C values.
cdef object _ReceiveMessage = getattr(_twin, "_ReceiveMessage", None)
cdef object _reply_operations = reply_operations
cdef object _failure_operations = failure_operations
cdef int _OK = getattr(_twin, "_OK", 0)
cdef int _CALL_OK = getattr(_twin, "_CALL_OK", 0)
cdef int _QUEUE_SHUTDOWN = int(getattr(_twin, "_QUEUE_SHUTDOWN", -1))
cdef int _QUEUE_TIMEOUT = int(getattr(_twin, "_QUEUE_TIMEOUT", -1))

# A UnaryCall's stage, which says what its next completion is.
cdef enum:
    RECEIVING = 0
    ANSWERED = 1

# What Gate.answer did (the twin's STARTED, ANSWERED_BEFORE, NOT_STARTED).
cdef enum:
    _STARTED = 0
    _ANSWERED_BEFORE = 1
    _NOT_STARTED = 2


cdef class Gate:
    """Lets a call start its batches until the loop stops, and answer once (see the twin)."""
    cdef object _lock
    cdef readonly bint closed

    def __cinit__(self):
        self._lock = threading.Lock()
        self.closed = False

    cdef bint start(self, object call, tuple operations, object tag) except -1:
        """Starts the batch; False (nothing started) once closed or if core refused it."""
        cdef bint started = False
        self._lock.acquire()
        try:
            if not self.closed:
                started = call.start_server_batch(operations, tag) == _CALL_OK
        finally:
            self._lock.release()
        return started

    cdef int answer(self, UnaryCall unary_call, tuple operations) except -1:
        """Starts ``unary_call``'s last batch unless it was answered already: _STARTED,
        _ANSWERED_BEFORE or _NOT_STARTED (the gate is closed, or core refused the batch)."""
        cdef int outcome = _ANSWERED_BEFORE
        self._lock.acquire()
        try:
            if not unary_call.answered:
                if self.closed:
                    outcome = _NOT_STARTED
                else:
                    unary_call.answered = True
                    unary_call._stage = ANSWERED
                    outcome = (_STARTED if unary_call.call.start_server_batch(
                        operations, unary_call) == _CALL_OK else _NOT_STARTED)
        finally:
            self._lock.release()
        return outcome

    def close(self):
        """No batch starts after this returns."""
        self._lock.acquire()
        self.closed = True
        self._lock.release()


cdef class UnaryCall:
    """One call in flight: the core call, its method and deadline. Also the handler's context.
    Its completions come back with the call itself as their tag. It is in its owner's ``calls``
    from its arrival until its last batch completes; ``answered`` once that batch started."""
    cdef object _owner
    cdef readonly object call
    cdef readonly double deadline
    cdef readonly _Method method
    cdef readonly bint answered
    cdef int _stage
    # With an access log: when the message was received (the arrival until then), its size and
    # first bytes.
    cdef double _received_at
    cdef Py_ssize_t _bytes_in
    cdef bytes _request_head

    def __cinit__(self, owner, _Method method, call, double deadline):
        self._owner = owner
        self.method = method
        self.call = call
        self.deadline = deadline
        self.answered = False
        self._stage = RECEIVING
        self._received_at = 0.0
        self._bytes_in = 0
        self._request_head = b""

    # --- the handler's context (the part of grpc.ServicerContext tfsfast's handlers use) ------

    cpdef object time_remaining(self):
        """Seconds left before the client's deadline (never negative); None without one."""
        if self.deadline >= _NO_DEADLINE:
            return None
        return max(self.deadline - wall_time(), 0.0)

    # --- completion-queue callbacks ---------------------------------------------------------

    def received(self, event):
        """Step 2: the request message (or its absence) arrived; answer or hand off."""
        self._received(event)

    cdef _completed(self, object event):
        if self._stage == RECEIVING:
            self._received(event)
        else:  # the last batch completed (or failed: the client went); nothing is left to do
            self.method.calls.discard(self)

    cdef _received(self, object event):
        cdef bint success = event.success
        data = event.batch_operations[0].message() if success else None
        if data is None:
            if success:
                self.fail(_UNIMPLEMENTED, missing_message(self.method.name))
            else:  # the call was cancelled before its message came: nothing to answer
                self.method.calls.discard(self)
            return
        cdef _Method method = self.method
        if method.access_log is not None:
            self._received_at = monotonic()
            self._request_head = (<bytes>data)[:_REQUEST_PREFIX_BYTES]
            self._bytes_in = len(data)
        if method.inline:
            try:
                if len(data) > method.max_message_bytes:
                    _check_message_size(len(data), method.max_message_bytes, "Request")
                answer = method.handler(data, self)
            except Exception as e:  # every failure is a status
                code, details = _error_status(e)
                self.fail(code, details)
                return
            if type(answer) is bytes:
                self.reply(<bytes>answer)
                return
            self._owner.submit(self, answer)
        else:
            self._owner.submit(self, lambda: self._run(data))

    def _run(self, data):
        _check_message_size(len(data), self.method.max_message_bytes, "Request")
        answer = self.method.handler(data, self)
        return answer if type(answer) is bytes else answer()

    # --- answering (from the loop thread or a pool thread: core batches are thread-safe) ------

    cpdef reply(self, bytes response):
        """Step 3 with a response (RESOURCE_EXHAUSTED instead if it is above the limit); nothing
        if the call was answered already (by the drain)."""
        cdef Py_ssize_t limit = self.method.max_message_bytes
        if len(response) > limit:
            try:
                _check_message_size(len(response), limit, "Response")
            except _ServingError as e:
                code, details = _error_status(e)
                self.fail(code, details)
                return
        if not self.answered:
            self._answer(_reply_operations(response), _OK, len(response))

    cpdef fail(self, int code, bytes details):
        """Step 3 with an error status and no response message; nothing if the call was
        answered already."""
        if not self.answered:
            self._answer(_failure_operations(code, details), code, 0)

    cdef _answer(self, tuple operations, int code, Py_ssize_t bytes_out):
        cdef _Method method = self.method
        cdef int outcome = method.gate.answer(self, operations)
        if outcome == _NOT_STARTED:
            method.calls.discard(self)  # no completion will come
        elif outcome == _STARTED and method.access_log is not None:
            method.access_log.record_grpc(self._received_at, self.call.peer(), method.name,
                                          self._request_head, code, self._bytes_in, bytes_out)


cdef class _Method:
    """A registered method and the loop's standing request for its next call (see the twin).
    Its arrivals come back with the method itself as their tag. The owner's ``gate``, ``calls``
    and ``access_log`` are read once, here."""
    cdef object _owner
    cdef readonly str name
    cdef readonly object handler
    cdef readonly bint inline
    cdef readonly Py_ssize_t max_message_bytes
    cdef readonly object access_log
    cdef Gate gate
    cdef set calls

    def __init__(self, owner, str name, handler, bint inline, Py_ssize_t max_message_bytes):
        self._owner = owner
        self.name = name
        self.handler = handler
        self.inline = inline
        self.max_message_bytes = max_message_bytes
        self.access_log = owner.access_log
        self.gate = owner.gate
        self.calls = owner.calls

    cpdef request(self):
        owner = self._owner
        cq = owner.cq
        owner.server.request_registered_call(cq, cq, self.name, self)

    def arrived(self, event):
        """Step 1: a call for this method arrived (success False: the server is shutting down).
        While the server drains, it goes to ``owner.refuse`` instead."""
        self._arrived(event)

    cdef _arrived(self, object event):
        if not event.success:
            return
        owner = self._owner
        if not owner.stopping:
            self.request()
        core_call = event.call
        cdef UnaryCall call = UnaryCall(owner, self, core_call, event.call_details.deadline)
        if self.access_log is not None:
            call._received_at = monotonic()  # until its message comes (refused calls' time)
        self.calls.add(call)
        if owner.draining:
            owner.refuse(call)
        elif not self.gate.start(core_call, (_ReceiveMessage(0),), call):
            self.calls.discard(call)


def serve(cq):
    """The loop: runs each completion's callback until ``cq`` is shut down."""
    cdef int kind
    poll = cq.poll
    while True:
        event = poll()
        kind = event.completion_type
        if kind == _QUEUE_SHUTDOWN:
            return
        if kind == _QUEUE_TIMEOUT:
            continue
        tag = event.tag
        try:
            if type(tag) is UnaryCall:
                (<UnaryCall>tag)._completed(event)
            elif type(tag) is _Method:
                (<_Method>tag)._arrived(event)
            else:
                tag(event)
        except Exception:  # a bug in one call must not stop the loop
            _log.exception("gRPC unary loop: a completion failed")
        event = tag = None  # drop the call before blocking in poll again
