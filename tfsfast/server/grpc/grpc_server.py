"""``GrpcServer``: TF Serving's gRPC listeners (``Server::BuildAndStart``'s gRPC half).

Serves PredictionService, ModelService and the Open Inference Protocol's
``inference.GRPCInferenceService`` (``server.v2.grpc_inference_service``), plus server
reflection (both versions), with
``--enable_profiler`` TensorFlow's ``tensorflow.ProfilerService`` (``profiler_service``) and, with
``--enable_grpc_healthcheck_service``, ``grpc.health.v1.Health``; on ``0.0.0.0:<port>`` and/or
``unix:<socket_path>``, both with the ``--ssl_config_file`` credentials when one is given.

PredictionService's methods are answered from tfsfast's own completion-queue loop
(``fast_unary``): grpcio's synchronous server spent ~190-260 µs of CPU per Predict in its own
Python machinery (measured on the project machine, server pinned to one core, h2load on the
other, 32 Predicts in flight), the loop ~80 µs for the same call with a fixed answer. Predict
runs whose measured cost is microseconds run on the loop thread; slower ones, batched ones and
the other PredictionService methods go to the handler pool, ``--grpc_max_threads`` threads (TF
Serving's bound on gRPC threads). The Open Inference Protocol's ModelInfer is served from the
loop the same way. ModelService, the other V2 methods, health and reflection stay on grpcio's
synchronous server, which also owns the listeners, TLS and shutdown; with
``GrpcServerOptions.fast_unary`` off (the server's ``TFSFAST_GRPC_FAST_UNARY=0``), or a grpcio
without the hooks the loop needs, PredictionService is served there too, through the same
handlers. Why not ``grpc.aio``: a grpcio aio servicer
returning a fixed response costs more CPU per call than the synchronous server did.

Channel settings, lowest precedence first: tfsfast's hardening defaults
(``grpc.max_concurrent_streams`` 100 per connection, SO_REUSEPORT off so that a port in use is an
error instead of a silently shared port), the message-size limits, then every
``--grpc_channel_arguments`` entry. The transport's receive limit is twice
``--grpc_max_message_bytes``, so a request between one and two times the limit reaches the
handler, which refuses it with RESOURCE_EXHAUSTED naming the flag; beyond that gRPC itself
refuses it (``Received message larger than max``) without buffering it whole.

Draining (``begin_drain``, then ``stop``) keeps the core server up until the end, because a core
server that has been shut down cancels every call that reaches it afterwards (CANCELLED, which
tells a client nothing about whether its call ran), and clients go on sending until they have
read its GOAWAY. So: PredictionService calls that arrive once the drain has begun are refused at
once with UNAVAILABLE, so their clients know they did not run, while the calls in progress
finish; those still running when the grace ends are answered UNAVAILABLE. Then, for
``QUIET_SECONDS``, arriving calls are held instead of refused: a client that was just refused
sends its next call and waits, rather than sending it in the instant the core server shuts
down. The core server then shuts down (GOAWAY on every connection: no new call is sent there),
the held calls are refused, their answers following the GOAWAY, and the connections close.
With the loop off, grpcio's own ``stop`` drains PredictionService: its core server shuts down
at once (calls that reach it in the next moments are cancelled), and calls still running when
the grace ends fail UNAVAILABLE ("Cancelling all calls"). ModelService, health and reflection
are served during the drain; calls of theirs still running when the connections close fail
UNAVAILABLE.

With an access log (``--access_log_file``) every call gets a line: the loop records those it
answers, a server interceptor (``access_log_interceptor``) those of grpcio's server.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.server import drain
from tfsfast.server.access_log import AccessLog
from tfsfast.server.grpc import (
    fast_unary,
    health,
    model_service_impl,
    prediction_service_impl,
    profiler_service,
    reflection,
)
from tfsfast.server.grpc.access_log_interceptor import AccessLogInterceptor
from tfsfast.server.grpc.ssl_config import credentials_from_file
from tfsfast.server.server_core import ServerCore
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2 import grpc_inference_service
from tfsfast.server.v2.model_repository import ModelRepository
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

INT32_MAX = 2**31 - 1
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_MAX_CONCURRENT_STREAMS = 100
# How long ``stop`` holds the calls that arrive before it shuts the core server down.
QUIET_SECONDS = 0.05
# How long ``stop`` waits for the answers given at the end of the drain to leave before it closes
# the connections (they are normally out within milliseconds).
ANSWERS_SENT_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class GrpcServerOptions:
    port: int = 8500  # 0: no TCP listener
    socket_path: str = ""  # "": no UNIX socket listener
    channel_arguments: dict[str, int | str] = field(default_factory=dict)
    max_threads: int = 8
    ssl_config_file: str = ""
    use_alts_credentials: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    enable_healthcheck_service: bool = False
    enable_profiler: bool = False
    enforce_signature_method_name: bool = False
    serialize_as_tensor_content: bool = False
    # False serves PredictionService through grpcio's generic handlers only (see fast_unary).
    fast_unary: bool = True
    # What one Predict may make the TensorProto codec build.
    codec_limits: CodecLimits = DEFAULT_CODEC_LIMITS
    # Which Predict runs stay on the completion-queue loop's thread.
    run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY
    # What the V2 repository methods load and unload from; None: one over the core without a
    # repository directory.
    model_repository: ModelRepository | None = None


def channel_options(options: GrpcServerOptions) -> list[tuple[str, int | str]]:
    """The server's channel arguments (see the module docstring for the precedence)."""
    limit = options.max_message_bytes
    merged: dict[str, int | str] = {
        "grpc.max_concurrent_streams": DEFAULT_MAX_CONCURRENT_STREAMS,
        "grpc.so_reuseport": 0,
        "grpc.max_receive_message_length": min(2 * limit, INT32_MAX),
        "grpc.max_send_message_length": min(limit, INT32_MAX),
    }
    merged.update(options.channel_arguments)
    return list(merged.items())


class GrpcServer:
    """The gRPC listeners over a ServerCore. ``start`` once, ``stop`` once; thread-safe.
    ``access_log`` (optional) gets a line per call."""

    def __init__(self, core: ServerCore, options: GrpcServerOptions,
                 access_log: AccessLog | None = None) -> None:
        self.options = options
        self._access_log = access_log
        self.health = health.HealthServicer(max_watchers=max(1, options.max_threads // 4))
        # The Open Inference Protocol's readiness (it turns off with the drain).
        self.v2_health = ServerHealth(core)
        self.port: int | None = None
        self._core = core
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._fast: fast_unary.FastUnaryMethods | None = None

    def start(self) -> None:
        """Binds the listeners and starts serving; ServingError when a listener cannot bind."""
        o = self.options
        if o.max_threads < 1:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"--grpc_max_threads must be positive, got {o.max_threads}")
        credentials = None
        if o.ssl_config_file:
            credentials = credentials_from_file(o.ssl_config_file)
        elif o.use_alts_credentials:
            credentials = grpc.alts_server_credentials()
        self._executor = ThreadPoolExecutor(o.max_threads, thread_name_prefix="tfsfast_grpc")
        server = grpc.server(self._executor, options=channel_options(o), interceptors=(
            [AccessLogInterceptor(self._access_log)] if self._access_log is not None else None))
        prediction = prediction_service_impl.PredictionServiceImpl(
            self._core, prediction_service_impl.PredictionServiceOptions(
            enforce_signature_method_name=o.enforce_signature_method_name,
            serialize_as_tensor_content=o.serialize_as_tensor_content,
            max_message_bytes=o.max_message_bytes, codec_limits=o.codec_limits,
            run_cost_policy=o.run_cost_policy))
        services = [prediction_service_impl.SERVICE_NAME, model_service_impl.SERVICE_NAME]
        # PredictionService's methods are served from the completion-queue loop when this
        # grpcio allows it (fast_unary); its generic handler stays registered either way, as
        # the fallback, and core never routes a registered method to it.
        inference = grpc_inference_service.GrpcInferenceServiceImpl(
            self._core, self.v2_health, o.max_message_bytes, o.codec_limits,
            o.enforce_signature_method_name, o.model_repository, o.run_cost_policy)
        fast = fast_unary.FastUnaryMethods(
            {**prediction.fast_methods(), **inference.fast_methods()}, self._executor,
            o.max_message_bytes, access_log=self._access_log)
        self._fast = fast if o.fast_unary and fast.attach(server) else None
        handlers = [prediction.handler(),
                    model_service_impl.ModelServiceImpl(self._core).handler(),
                    inference.handler()]
        services.append(grpc_inference_service.SERVICE_NAME)
        if o.enable_healthcheck_service:
            handlers.append(self.health.handler())
            services.append(health.SERVICE_NAME)
        if o.enable_profiler:
            handlers.append(profiler_service.ProfilerServiceImpl().handler())
            services.append(profiler_service.SERVICE_NAME)
        handlers.extend(reflection.reflection_handlers(services))
        server.add_generic_rpc_handlers(tuple(handlers))
        try:
            if o.port:
                self.port = self._bind(server, f"0.0.0.0:{o.port}", credentials)
            if o.socket_path:
                self._bind(server, f"unix:{o.socket_path}", credentials)
        except BaseException:
            server.stop(None)
            self._executor.shutdown(wait=False)
            raise
        server.start()
        if self._fast is not None:
            self._fast.start()
        self._server = server

    @staticmethod
    def _bind(server: grpc.Server, address: str,
              credentials: grpc.ServerCredentials | None) -> int:
        try:
            port = (server.add_secure_port(address, credentials) if credentials is not None
                    else server.add_insecure_port(address))
        except RuntimeError as e:
            port = 0
            detail = str(e)
        else:
            detail = "the address is in use or cannot be bound"
        if not port:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Failed to BuildAndStart gRPC server: cannot listen on "
                               f"{address} ({detail})")
        return port

    def set_serving(self, serving: bool) -> None:
        """What the health service reports (NOT_SERVING until told otherwise)."""
        self.health.set_serving(serving)

    def begin_drain(self, refusal: str) -> None:
        """Health turns NOT_SERVING; PredictionService calls that arrive from now on are refused
        with UNAVAILABLE ``refusal``; calls in progress go on."""
        self.health.set_serving(False)
        self.v2_health.start_draining()
        if self._fast is not None:
            self._fast.begin_drain(refusal)

    @property
    def calls_in_progress(self) -> int:
        """PredictionService calls that arrived before the drain and have no answer yet."""
        return len(self._fast.unanswered()) if self._fast is not None else 0

    def answer_in_progress(self, details: str) -> None:
        """Answers the calls in progress with UNAVAILABLE ``details`` (the drain's deadline);
        their own answers, if they come, are dropped."""
        if self._fast is not None:
            self._fast.answer_unanswered(details)

    def stop(self, grace: float | None, refusal: str = drain.REFUSED,
             details: str = "The server is shutting down") -> threading.Event:
        """Drains (``refusal`` for new calls, unless ``begin_drain`` came first), lets calls in
        progress finish for ``grace`` seconds (None: none), answers the rest UNAVAILABLE
        ``details``, then closes the connections and stops; the returned event is set once the
        server has stopped and no handler thread runs any more (see the module docstring)."""
        self.health.set_serving(False)
        self.v2_health.start_draining()
        self.health.stop()
        done = threading.Event()
        if self._server is None:
            done.set()
            return done
        server, executor, fast = self._server, self._executor, self._fast
        if fast is not None and not fast.draining:
            fast.begin_drain(refusal)

        def finish() -> None:
            deadline = time.monotonic() + (grace or 0.0)
            if fast is not None:
                while fast.unanswered() and time.monotonic() < deadline:
                    time.sleep(0.005)
                fast.answer_unanswered(details)
                fast.hold()
                time.sleep(QUIET_SECONDS)
                # The core server shuts down (the connections close after the grace, or below).
                stopped = server.stop(ANSWERS_SENT_TIMEOUT_SECONDS)
                fast.release_held()
                # Every answer leaves before the connections close.
                until = time.monotonic() + ANSWERS_SENT_TIMEOUT_SECONDS
                while fast.calls and not stopped.is_set() and time.monotonic() < until:
                    time.sleep(0.005)
            server.stop(None if fast is not None else grace).wait()
            # The loop and the pool may only go once no call can still need them.
            if fast is not None:
                fast.stop()
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            done.set()

        threading.Thread(target=finish, name="tfsfast_grpc_stop", daemon=True).start()
        return done
