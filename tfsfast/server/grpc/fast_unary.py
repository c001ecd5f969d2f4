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

Shutdown, in the order ``grpc_server.GrpcServer.stop`` drives it: :meth:`begin_drain` refuses
every call that arrives from then on (UNAVAILABLE, at once: the client knows it did not run)
while the calls in progress go on; :meth:`answer_unanswered` answers those still running at the
drain's deadline (UNAVAILABLE naming the drain); their own answer, when it comes later, is
dropped, as every call is answered once (the ``Gate``). :meth:`hold` then keeps the calls that
arrive unanswered, and :meth:`release_held` refuses them once the core server has been shut
down (see ``grpc_server`` for why). Once grpcio's server has terminated, :meth:`stop` closes the
gate and the completion queue, and the loop thread ends. Nothing starts a batch after that:
gRPC core aborts the process on a batch for a completion queue that was shut down.

This relies on one private attribute of grpcio's server object (``_cy_server``, the core server)
and on ``grpc._cython.cygrpc``; when either is missing, :meth:`FastUnaryMethods.attach` returns
False and the caller serves the methods through grpcio's generic handlers instead.

The per-call part (the loop, steps 1-3, the context) is compiled (``_fast_unary``) with
``_fast_unary_py`` as its pure-Python twin; ``IMPLEMENTATION`` says which runs (``"compiled"`` or
``"python"``) and ``TFSFAST_NO_EXTENSIONS=1`` selects the twin.

With an access log, every call the loop answers gets its line (the status code's name, the
model the request's ``model_spec`` names); see ``_fast_unary_py``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc

from tfsfast import _extensions
from tfsfast.server.access_log import AccessLog
from tfsfast.server.grpc._fast_unary_py import (
    MAX_MESSAGE_FLAG,
    Answer,
    Continuation,
    Handler,
    check_message_size,
    cygrpc,
    error_status,
    grpcio_handler,
)
from tfsfast.util.status import Code

_impl = _extensions.load("tfsfast.server.grpc._fast_unary", "tfsfast.server.grpc._fast_unary_py")

IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.server.grpc._fast_unary_py import UnaryCall
else:
    UnaryCall = _impl.UnaryCall


class FastUnaryMethods:
    """Serves unary methods of a ``grpc.Server`` from a completion-queue loop (module doc).

    ``methods`` maps fully qualified method names (``/package.Service/Method``) to
    ``(handler, inline)``: ``handler(request_bytes, context)`` returns the response bytes or a
    continuation; with ``inline`` False the whole handler runs on ``executor`` instead of the
    loop thread. Use: :meth:`attach` before the server starts, :meth:`start` after it started,
    :meth:`stop` once it has terminated. Thread-safe. ``impl`` picks the module of the per-call
    machinery (tests run both); the default is the one this module loaded. ``access_log``
    (optional) gets a line per call answered.
    """

    def __init__(self, methods: Mapping[str, tuple[Handler, bool]], executor: Executor,
                 max_message_bytes: int, impl: ModuleType | None = None,
                 access_log: AccessLog | None = None) -> None:
        self._impl = impl or _impl
        self.access_log = access_log  # read by each method when it is made, below
        # Every call from its arrival until its last batch completed (UnaryCall's contract).
        self.calls: set[Any] = set()
        self.gate = self._impl.Gate()
        self.draining = False
        self._refusal = b""  # the details of the calls refused while draining
        self._held: list[Any] | None = None  # while holding
        self._drain_lock = threading.Lock()
        self.methods = [self._impl._Method(self, name, handler, inline, max_message_bytes)
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
        self._thread = threading.Thread(target=self._impl.serve, args=(self.cq,),
                                        name="tfsfast_grpc_unary", daemon=True)
        self._thread.start()

    def begin_drain(self, refusal: str) -> None:
        """From now on every arriving call is refused at once: UNAVAILABLE ``refusal``."""
        self._refusal = refusal.encode()
        self.draining = True

    def refuse(self, call: Any) -> None:
        """A call that arrived while draining (the loop's): refused now, or kept while holding."""
        with self._drain_lock:
            if self._held is not None:
                self._held.append(call)
                return
        call.fail(int(Code.UNAVAILABLE), self._refusal)

    def hold(self) -> None:
        """From now on arriving calls are kept unanswered, until :meth:`release_held`."""
        with self._drain_lock:
            if self._held is None:
                self._held = []

    def release_held(self) -> None:
        """Refuses the calls kept by :meth:`hold`, and those that arrive from now on."""
        with self._drain_lock:
            held, self._held = self._held or [], None
        for call in held:
            call.fail(int(Code.UNAVAILABLE), self._refusal)

    def unanswered(self) -> list[Any]:
        """The calls in progress that have no answer yet (not those held)."""
        with self._drain_lock:
            held = set(self._held or ())
        return [call for call in list(self.calls) if not call.answered and call not in held]

    def answer_unanswered(self, details: str) -> list[Any]:
        """Answers every call still without an answer with UNAVAILABLE ``details``; returns
        them (their answers are on their way once they leave ``calls``)."""
        calls = self.unanswered()
        for call in calls:
            call.fail(int(Code.UNAVAILABLE), details.encode())
        return calls

    def stop(self) -> None:
        """Ends the loop; call once the grpc.Server has terminated (no call is left)."""
        self.stopping = True
        self.gate.close()
        if self.cq is not None and self._thread is not None:
            self.cq.shutdown()
            self._thread.join()
            self._thread = None

    def submit(self, call: Any, work: Continuation) -> None:
        """Runs ``work`` on the executor and answers ``call`` with its result."""
        try:
            self.executor.submit(self._finish, call, work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            call.fail(Code.UNAVAILABLE, b"The server is shutting down")

    @staticmethod
    def _finish(call: Any, work: Continuation) -> None:
        try:
            response = work()
        except Exception as e:  # every failure is a status
            call.fail(*error_status(e))
            return
        call.reply(response)


__all__ = ["IMPLEMENTATION", "MAX_MESSAGE_FLAG", "Answer", "Continuation", "FastUnaryMethods",
           "Handler", "UnaryCall", "check_message_size", "error_status", "grpcio_handler"]
