"""``Server``: builds the model server from ``ServerOptions`` and runs it until it is told to stop.

Startup follows TF Serving's ``Server::BuildAndStart``: validate the flags, read the model config,
build the ServerCore (which blocks until every model is available), then open the listeners and
log the lines TF Serving logs. Unlike TF Serving, SIGTERM and SIGINT drain:

1. Readiness turns off at once: ``/v2/health/ready`` answers 503 and ``grpc.health.v1``
   NOT_SERVING (``ServerHealth.start_draining``); REST worker processes are signalled too.
2. For ``--shutdown_delay_seconds`` (default 0) the listeners keep accepting and serving as
   before, so that load balancers that saw readiness fail stop sending before the port closes.
   A second SIGTERM or SIGINT ends the delay early.
3. The drain (``_drain``), bounded by ``--drain_timeout_seconds``: the listeners stop accepting
   (a connection the kernel had already accepted is served, not reset); every request the
   server has read finishes and is answered (REST: pipelined ones too, the last answer with
   ``Connection: close``; gRPC calls that arrive on an open connection are refused at once,
   UNAVAILABLE); what is still running at the deadline is answered REST 503 / gRPC
   UNAVAILABLE naming the drain (``drain``). Then the connections close, the models are
   unloaded off the event loop (batched REST requests need its timers to the end), and the
   process exits 0, at the latest ``EXIT_GRACE_SECONDS`` after the deadline even if something
   still runs (a model run that never ends).

With ``--access_log_file`` the process opens one ``AccessLog`` before any model loads (a path it
cannot open stops the start), hands it to the REST and gRPC servers, and closes it once both
have stopped, so that every answer's line is written; each REST worker process has its own, on
the same file (see ``access_log``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from tfsfast import _extensions, runtime
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.monitoring.monitoring_config import PrometheusConfig, read_monitoring_config
from tfsfast.monitoring.server_metrics import (
    install_process_metrics,
    install_server_metrics,
    install_serving_gauges,
)
from tfsfast.monitoring.tensorflow_metrics import install_tensorflow_metrics
from tfsfast.runtime import devices
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import drain, rest_workers
from tfsfast.server import model_config as mc
from tfsfast.server import server_options as so
from tfsfast.server.access_log import AccessLog
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpServerLimits
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.http.http_server import HttpServer
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2.model_repository import ModelRepository, default_repository_path
from tfsfast.server.v2.remote_model_repository import RemoteModelRepository
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

# After the drain's deadline the process still closes its connections and unloads its models;
# should that not be over within this many seconds (a model run that does not end holds its
# model), the process exits all the same.
EXIT_GRACE_SECONDS = 5.0
# How long an exit forced by that grace waits for the access log's last lines.
ACCESS_LOG_CLOSE_SECONDS = 1.0


def _model_server_config(options: so.ServerOptions) -> Any:
    if options.model_config_file:
        return mc.read_model_server_config(options.model_config_file)
    return mc.single_model_config(options.model_name, options.model_base_path)


def _session_config(options: so.ServerOptions) -> bytes:
    """The ConfigProto every model is loaded with, from the session flags. The XLA flags are not
    among them: they allow XLA for the process (``_apply_xla_flags``), as in TF Serving."""
    from tfsfast.runtime import session_options

    config = session_options.server_session_config(
        tensorflow_session_parallelism=options.tensorflow_session_parallelism,
        tensorflow_intra_op_parallelism=options.tensorflow_intra_op_parallelism,
        tensorflow_inter_op_parallelism=options.tensorflow_inter_op_parallelism,
        tensorflow_session_config_file=options.tensorflow_session_config_file,
        per_process_gpu_memory_fraction=options.per_process_gpu_memory_fraction)
    if options.mixed_precision == "bfloat16":
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = 1  # ON
        _log.info("Enabling oneDNN bfloat16 auto mixed precision")
    elif options.mixed_precision:
        _log.warning("Unrecognized --mixed_precision value: %s (only bfloat16 is supported); "
                     "ignoring it, as TF Serving does", options.mixed_precision)
    return config.SerializeToString()


def _apply_xla_flags(options: so.ServerOptions) -> None:
    """TF Serving's ``main.cc``: XLA compilation is refused for the whole process unless
    ``--xla_cpu_compilation_enabled`` or ``--xla_gpu_compilation_enabled`` is set (see
    ``tfsfast.runtime.xla_compilation``). Before any model loads."""
    if not (options.xla_cpu_compilation_enabled or options.xla_gpu_compilation_enabled):
        from tfsfast.runtime import xla_compilation

        xla_compilation.disable_xla_compilation()


def _batching_parameters(options: so.ServerOptions) -> Any:
    """The ``BatchingParameters`` of ``--enable_batching`` (None without it), read, parsed and
    checked at startup so a bad file fails the start with its error.

    Without ``--batching_parameters_file`` only the thread pool name is set (TF Serving's
    ``model_server_batch_threads``); every other value is TensorFlow's default. Under
    ``--enable_per_model_batching_parameters`` only the thread settings of the file are used.
    """
    if not options.enable_batching:
        return None
    from tfsfast.batching import batching_parameters

    if options.batching_parameters_file:
        params = batching_parameters.read_batching_parameters(options.batching_parameters_file)
    else:
        params = batching_parameters.server_default_batching_parameters()
    batching_parameters.validate(
        params, threads_only=options.enable_per_model_batching_parameters)
    return params


def _session_bundle_config(options: so.ServerOptions, executor: Executor | None = None,
                           run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY
                           ) -> SessionBundleConfig:
    return SessionBundleConfig(
        saved_model_tags=so.saved_model_tags_list(options),
        session_config=_session_config(options),
        remove_unused_fields_from_bundle_metagraph=(
            options.remove_unused_fields_from_bundle_metagraph),
        enable_model_warmup=options.enable_model_warmup,
        num_request_iterations_for_warmup=max(1, options.num_request_iterations_for_warmup),
        batching_parameters=_batching_parameters(options),
        enable_per_model_batching_params=(
            options.enable_batching and options.enable_per_model_batching_parameters),
        prefer_tflite_model=options.prefer_tflite_model,
        num_tflite_pools=options.num_tflite_pools,
        num_tflite_interpreters_per_pool=options.num_tflite_interpreters_per_pool,
        executor=executor,
        run_cost_policy=run_cost_policy)


def _freeze_startup_objects() -> None:
    """Moves every object alive after startup out of the cyclic garbage collector's reach.

    Importing TensorFlow and loading the models leave ~270,000 objects that live as long as the
    process; a full collection walks all of them (~280 ms measured on a project machine), and
    it comes at an allocation count, i.e. in the middle of some request: one such pause is a
    p99. Frozen, they are never walked again; what requests allocate is collected as before.
    """
    gc.collect()
    gc.freeze()


class Server:
    """One model server process. ``build_and_start`` then ``wait_for_termination``."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.core: ServerCore | None = None
        self.health: ServerHealth | None = None
        self.model_repository: ModelRepository | RemoteModelRepository | None = None
        self.http_server: HttpServer | None = None
        self.grpc_server: Any = None  # tfsfast.server.grpc.grpc_server.GrpcServer
        self._rest_workers: rest_workers.RestWorkerPool | None = None
        # In a REST worker: applies the model configs the server process puts in force.
        self._config_follower: rest_workers.ServerConfigFollower | None = None
        # The command line, which REST worker processes are started with.
        self.argv: list[str] = list(argv) if argv is not None else sys.argv[1:]
        self._executor: ThreadPoolExecutor | None = None
        self._config_poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by the first SIGTERM/SIGINT (or request_stop); then by the end of the shutdown delay.
        self._terminate: asyncio.Event | None = None
        self._delay_over: asyncio.Event | None = None
        self.options: so.ServerOptions | None = None
        # The request path's settings, built once by build_and_start.
        self._codec_limits: CodecLimits | None = None
        self._run_cost_policy: RunCostPolicy | None = None
        self._grpc_fast_unary = True
        # --monitoring_config_file's Prometheus page (read by build_and_start).
        self._prometheus = PrometheusConfig()
        # --access_log_file's (opened by build_and_start; closed by shutdown).
        self._access_log: AccessLog | None = None

    # --- startup -----------------------------------------------------------------------------

    def build_and_start(self, options: so.ServerOptions) -> None:
        """Validates, loads every model (blocking), and prepares the listeners.

        Raises ``ServingError`` for anything that must stop startup; the caller prints
        ``Failed to start server. Error: <status>``.
        """
        self.options = options
        so.validate(options)
        unserved = so.unserved_flags(options)
        if unserved:
            raise ServingError(Code.UNIMPLEMENTED, "; ".join(unserved))
        # Read before any model loads, as TF Serving does: a bad file fails the start at once.
        self._prometheus = read_monitoring_config(options.monitoring_config_file)
        if options.access_log_file:
            self._access_log = AccessLog(options.access_log_file)
        # The settings of the request path, built here once and handed to everything that
        # parses a request (the codecs' limits) or decides where a run goes (the run-cost
        # policy): the bundles through the ServerCore's options, the REST handler and fast path,
        # the gRPC service. No flag sets them (TF Serving has neither): the codec limits are
        # hardening.md's, the policy's limit the measured one. TFSFAST_GRPC_FAST_UNARY=0 serves
        # PredictionService through grpcio's handlers instead of the completion-queue loop.
        self._codec_limits = CodecLimits()
        self._run_cost_policy = RunCostPolicy()
        self._grpc_fast_unary = os.environ.get("TFSFAST_GRPC_FAST_UNARY", "1") != "0"
        worker = rest_workers.is_rest_worker()
        if not worker:  # said once, by the process that serves gRPC
            for message in so.unserved_defaults(options):
                _log.warning("%s", message)
        _apply_xla_flags(options)
        if worker:
            # The server's config in force, which may differ from the flags' after a reload;
            # labels once the models have loaded (see rest_workers).
            server_stream = rest_workers.server_config_stream()
            config_in_force = rest_workers.read_config_in_force(server_stream)
            config = rest_workers.without_version_labels(config_in_force)
        else:
            config = _model_server_config(options)
        # Before any model loads: an operator should not have to guess whether models run on a GPU.
        devices.log_gpu_summary(options.per_process_gpu_memory_fraction)
        # Runs the models' unbatched requests (SavedModelBundle.run_async) and the REST handler's
        # blocking work: TF Serving's --rest_api_num_threads pool. Made before the models load,
        # so every bundle gets it.
        self._executor = ThreadPoolExecutor(max(1, options.rest_api_num_threads),
                                            thread_name_prefix="tfsfast_rest")
        core_options = ServerCoreOptions(
            model_server_config=config,
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            num_load_threads=options.num_load_threads,
            num_unload_threads=options.num_unload_threads,
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models),
            reload_config_timeout_seconds=options.reload_config_timeout_seconds,
            session_bundle_config=_session_bundle_config(options, self._executor,
                                                         self._run_cost_policy))
        self.core = ServerCore.create(core_options)
        self.health = ServerHealth(self.core)
        self.model_repository = self._model_repository(options, config, worker)
        # A server on its way out applies no new config: the reload under way (gRPC or poller)
        # rolls back and answers UNAVAILABLE at once instead of holding the drain.
        self.health.add_draining_callback(self._stop_reloading)
        if worker:
            if config_in_force != config:
                with contextlib.suppress(ServingError):  # the follower retries it, says why
                    self.core.reload_config(config_in_force)
            self._config_follower = rest_workers.ServerConfigFollower(
                self.core, config_in_force, server_stream,
                give_up_seconds=options.reload_config_timeout_seconds,
                on_give_up=self.request_stop)
        elif options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(
                target=self._poll_config_file, name="tfsfast_config_poller", daemon=True)
            self._config_poller.start()

    def _model_repository(self, options: so.ServerOptions, config: Any,
                          worker: bool) -> ModelRepository | RemoteModelRepository:
        """The V2 model repository: the flag's (or the configured models' directory); in a REST
        worker, the server process's, reached over its gRPC listener (see
        ``remote_model_repository``)."""
        if worker:
            if options.grpc_socket_path:
                return RemoteModelRepository(f"unix:{options.grpc_socket_path}")
            plain = not options.ssl_config_file and not options.use_alts_credentials
            return RemoteModelRepository(f"127.0.0.1:{options.port}" if plain else "")
        assert self.core is not None
        polled = options.model_config_file_poll_wait_seconds > 0 and options.model_config_file
        return ModelRepository(
            self.core, options.model_repository_path or default_repository_path(config),
            polled_config_file=options.model_config_file if polled else "",
            poll_wait_seconds=options.model_config_file_poll_wait_seconds)

    def _stop_reloading(self) -> None:
        self._stop_polling.set()
        if self._config_follower is not None:
            self._config_follower.stop()
        if self.core is not None:
            self.core.stop_reloading()

    def _poll_config_file(self) -> None:
        """Re-reads ``--model_config_file`` periodically (TF Serving's
        ``PollFilesystemAndReloadConfig``, with its log lines).

        A file that cannot be read or parsed, and a reload that fails, are logged and change
        nothing (the previous config stays in force, see ``ServerCore.reload_config``); the next
        period reads the file again, so a fixed file, or a model directory that has appeared
        since, is applied then. Each reload is bounded by ``--reload_config_timeout_seconds``,
        so a bad file never stops the polling.
        """
        assert self.options is not None and self.core is not None
        period = self.options.model_config_file_poll_wait_seconds
        while not self._stop_polling.wait(period):
            try:
                config = mc.read_model_server_config(self.options.model_config_file)
            except ServingError as e:
                _log.error("Failed to read ModelServerConfig file: %s", e.message)
                continue
            try:
                self.core.reload_config(config)
            except ServingError as e:
                _log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", e.message)
            except Exception:  # a bug must not end the polling for the life of the process
                _log.exception("PollFilesystemAndReloadConfig failed to ReloadConfig")

    def _start_grpc(self) -> None:
        """Starts the gRPC listeners and logs TF Serving's lines; ServingError if one fails."""
        from tfsfast.server.grpc.grpc_server import GrpcServer, GrpcServerOptions

        options = self.options
        assert options is not None and self.core is not None
        assert self._codec_limits is not None and self._run_cost_policy is not None
        repository = self.model_repository
        assert isinstance(repository, ModelRepository)  # gRPC is the server process's
        self.grpc_server = GrpcServer(self.core, GrpcServerOptions(
            port=options.port,
            socket_path=options.grpc_socket_path,
            channel_arguments=so.grpc_channel_arguments_dict(options),
            max_threads=options.grpc_max_threads,
            ssl_config_file=options.ssl_config_file,
            use_alts_credentials=options.use_alts_credentials,
            max_message_bytes=options.grpc_max_message_bytes,
            enable_healthcheck_service=options.enable_grpc_healthcheck_service,
            enable_profiler=options.enable_profiler,
            enforce_signature_method_name=options.enable_signature_method_name_check,
            serialize_as_tensor_content=options.enable_serialization_as_tensor_content,
            fast_unary=self._grpc_fast_unary,
            codec_limits=self._codec_limits,
            run_cost_policy=self._run_cost_policy,
            model_repository=repository), self._access_log)
        self.grpc_server.start()
        # The core has loaded every model before the listeners open.
        self.grpc_server.set_serving(True)
        # NOT_SERVING when REST readiness turns off, not later when the listener stops.
        grpc_server = self.grpc_server
        assert self.health is not None
        self.health.add_draining_callback(lambda: grpc_server.set_serving(False))
        if options.port:
            _log.info("Running gRPC ModelServer at 0.0.0.0:%d ...", self.grpc_server.port)
        if options.grpc_socket_path:
            _log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

    async def _start_listeners(self) -> None:
        options = self.options
        assert options is not None and self.core is not None
        worker = rest_workers.is_rest_worker()
        try:
            if not worker:  # REST workers serve REST only; gRPC is the server process's
                self._start_grpc()
        except ServingError as e:
            # As a failure in build_and_start: TF Serving binds gRPC there.
            print(f"Failed to start server. Error: {e}", file=sys.stderr, flush=True)
            self.shutdown(0)
            raise SystemExit(-1) from None
        if not worker:
            # Whether this build runs its compiled modules, said where an operator looks: a
            # twin is correct but slower. The runtime loads with the first model; loaded now,
            # it is named even while no model has a version yet.
            _ = runtime.IMPLEMENTATION
            _log.info("Implementations: %s", _extensions.implementations())
        if self._prometheus.enable:
            _install_metrics(self)
        if options.rest_api_port == 0:
            return
        if options.rest_api_port == options.port:
            _log.error("server_options.http_port cannot be same as grpc_port. Please use a "
                       "different port for HTTP/REST API. Skipped exporting HTTP/REST API.")
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max(1, options.rest_api_num_threads),
                                                thread_name_prefix="tfsfast_rest")
        assert self._codec_limits is not None
        rest_options = RestApiOptions(
            timeout_in_ms=max(0, options.rest_api_timeout_in_ms),
            enable_cors_support=options.rest_api_enable_cors_support,
            enforce_signature_method_name=options.enable_signature_method_name_check,
            max_decompressed_body_bytes=options.rest_api_max_body_bytes,
            codec_limits=self._codec_limits,
            prometheus_path=self._prometheus.path if self._prometheus.enable else None)
        handler = HttpRestApiHandler(self.core, rest_options, self.health,
                                     self.model_repository)
        limits = HttpServerLimits(max_body_bytes=options.rest_api_max_body_bytes)
        # Common JSON predicts are answered before the handler (byte-identical; see
        # rest_fast_path); everything else reaches the handler unchanged.
        self.http_server = HttpServer(handler, limits, handler.error_response,
                                      fast_path=rest_fast_path.for_core(self.core, rest_options),
                                      access_log=self._access_log)
        shared_port = worker or options.rest_api_num_workers > 1
        await self.http_server.start(options.rest_api_port, reuse_port=shared_port)
        if worker:
            _log.info("REST worker %d serving at:localhost:%d", os.getpid(),
                      self.http_server.port)
            rest_workers.watch_parent(self.request_stop)
            if self._config_follower is not None:
                self._config_follower.start()
            return
        if options.rest_api_num_workers > 1:
            self._rest_workers = rest_workers.RestWorkerPool(self.argv,
                                                             options.rest_api_num_workers)
            # The workers serve the config in force, from now on (see rest_workers).
            self.core.add_config_listener(self._rest_workers.publish_config)
            self._rest_workers.start()
        _log.info("Exporting HTTP/REST API at:localhost:%d ...", self.http_server.port)

    # --- running and draining ------------------------------------------------------------

    def run(self) -> None:
        """Serves until SIGTERM/SIGINT, then (after the shutdown delay) drains and unloads. Uses
        uvloop when available."""
        try:
            import uvloop

            uvloop.run(self._serve())
        except ImportError:
            asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._terminate = asyncio.Event()
        self._delay_over = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        if rest_workers.is_rest_worker():
            self._loop.add_signal_handler(rest_workers.END_SHUTDOWN_DELAY_SIGNAL,
                                          self._delay_over.set)
        await self._start_listeners()
        _freeze_startup_objects()
        await self._terminate.wait()
        await self._shutdown_delay()
        await self._drain()

    def _on_signal(self, sig: int) -> None:
        assert self._terminate is not None and self._delay_over is not None
        name = signal.Signals(sig).name
        if not self._terminate.is_set():
            self._begin_shutdown(f"Received {name}")
        elif not self._delay_over.is_set() and not rest_workers.is_rest_worker():
            # A worker's delay ends with the server's (END_SHUTDOWN_DELAY_SIGNAL): the repeat
            # it sees may be the server forwarding a signal that reached the whole group.
            _log.info("Received %s again: ending the shutdown delay", name)
            self._delay_over.set()

    def request_stop(self) -> None:
        """Asks a running server to drain and exit now, without the shutdown delay
        (thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        assert self._terminate is not None and self._delay_over is not None
        self._delay_over.set()
        if not self._terminate.is_set():
            self._begin_shutdown("Stop requested")

    def _begin_shutdown(self, reason: str) -> None:
        """Turns readiness off (REST 503, gRPC NOT_SERVING), tells the REST workers, logs the
        plan, and lets ``_serve`` go on to the delay and the drain."""
        assert self._terminate is not None and self._delay_over is not None
        delay = self._shutdown_delay_seconds()
        if delay == 0:
            self._delay_over.set()
        # The plan is in the log before anyone can see readiness off.
        if self._delay_over.is_set():
            _log.info("%s: draining (up to %d s), then exiting", reason, self._drain_timeout())
        else:
            _log.info("%s: readiness is off; serving %d s more (--shutdown_delay_seconds), then "
                      "draining (up to %d s) and exiting", reason, delay, self._drain_timeout())
        if self.health is not None:
            self.health.start_draining()
        if self._rest_workers is not None:
            self._rest_workers.terminate()  # each turns not ready and starts the same delay
        self._terminate.set()

    async def _shutdown_delay(self) -> None:
        """Serves on until ``--shutdown_delay_seconds`` have passed or the delay is cut short."""
        assert self._delay_over is not None
        if not self._delay_over.is_set():
            try:
                await asyncio.wait_for(self._delay_over.wait(), self._shutdown_delay_seconds())
            except TimeoutError:
                pass
            self._delay_over.set()

    def _drain_timeout(self) -> int:
        return self.options.drain_timeout_seconds if self.options else 30

    def _shutdown_delay_seconds(self) -> int:
        return self.options.shutdown_delay_seconds if self.options else 0

    async def _drain(self) -> None:
        """Step 3 of the module docstring. The event loop keeps running throughout: batched REST
        requests are answered by its timers, so nothing here may block it."""
        timeout = self._drain_timeout()
        deadline = time.monotonic() + timeout
        if self.grpc_server is not None:
            self.grpc_server.begin_drain(drain.REFUSED)
        if self._rest_workers is not None:
            # Workers still in their shutdown delay drain now, alongside this process. (A pool
            # started after the signal hears of the stop here first.)
            self._rest_workers.terminate()
            self._rest_workers.end_shutdown_delay()
        if self.http_server is not None:
            await self.http_server.drain()
        while self._requests_in_progress() != (0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        rest, grpc = self._requests_in_progress()
        if rest or grpc:
            _log.warning("Drain timeout (%d s, --drain_timeout_seconds): answering the %d REST "
                         "connection(s) and %d gRPC call(s) still in progress 503/UNAVAILABLE",
                         timeout, rest, grpc)
            if self.http_server is not None:
                self.http_server.answer_in_progress(drain.timed_out(timeout))
            if self.grpc_server is not None:
                self.grpc_server.answer_in_progress(drain.timed_out(timeout))
        # Every request is answered: what is left to do must be done by then.
        exit_by = max(deadline, time.monotonic()) + EXIT_GRACE_SECONDS
        grpc_stopped = None
        if self.grpc_server is not None:
            # Nothing is left in progress, unless PredictionService is grpcio's (the loop off):
            # then grpcio's stop drains it, with what is left of the timeout.
            grpc_stopped = self.grpc_server.stop(max(0.0, deadline - time.monotonic()),
                                                 drain.REFUSED, drain.timed_out(timeout))
        if self.http_server is not None:
            await self.http_server.close()
        loop = asyncio.get_running_loop()
        if self._rest_workers is not None:
            # Each drains as this process does, to the same deadline and exit grace.
            await loop.run_in_executor(None, self._rest_workers.wait,
                                       max(0.0, exit_by - time.monotonic()))
        # The unload runs on a thread of its own, which the process does not wait for at exit.
        stopped = threading.Event()
        threading.Thread(target=self._stop_serving, args=(grpc_stopped, exit_by, stopped),
                         name="tfsfast_shutdown", daemon=True).start()
        if not await loop.run_in_executor(None, stopped.wait,
                                          max(0.0, exit_by - time.monotonic())):
            self._exit_now(timeout)

    def _requests_in_progress(self) -> tuple[int, int]:
        """(REST connections, gRPC calls) with a request read and not answered yet."""
        return (self.http_server.requests_in_progress if self.http_server is not None else 0,
                self.grpc_server.calls_in_progress if self.grpc_server is not None else 0)

    def _stop_serving(self, grpc_stopped: threading.Event | None, exit_by: float,
                      stopped: threading.Event) -> None:
        """Once every request is answered: stops gRPC, unloads the models and waits for the
        REST executor's threads (the interpreter would wait for them at exit); sets ``stopped``
        when all of that is done."""
        # A request still queued for a batch now is one whose client was answered (the drain's
        # deadline) or went away; the thread that waits for it would keep its model loaded.
        scheduler = self.core.bundle_factory.batch_scheduler if self.core is not None else None
        if scheduler is not None:
            scheduler.stop(timeout=0)
        if grpc_stopped is not None and not grpc_stopped.wait(
                max(0.0, exit_by - time.monotonic())):
            return
        self.shutdown(max(0.0, exit_by - time.monotonic()))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        stopped.set()

    def _exit_now(self, drain_timeout: int) -> None:
        """Exits 0 although work still runs (it could keep the interpreter's exit waiting)."""
        _log.warning("Exiting %g s after the drain timeout (%d s) with work still running: a "
                     "model run or unload did not end", EXIT_GRACE_SECONDS, drain_timeout)
        if self._access_log is not None:
            # The answers given so far are in the log; a disk that hangs does not hold the exit.
            self._access_log.close(timeout=ACCESS_LOG_CLOSE_SECONDS)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def shutdown(self, timeout: float | None = 30.0) -> None:
        """Stops polling and unloads models; in-flight runs get ``timeout`` seconds. Work queued
        for the REST executor and not started is dropped. Then the access log writes its last
        lines and closes (the listeners have stopped by then: nothing answers any more)."""
        self._stop_polling.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.core is not None:
            self.core.stop(timeout)
            self.core.bundle_factory.close()  # the batch threads, once every model is unloaded
        if self._access_log is not None:
            self._access_log.close()
        _log.info("Server stopped")


_metrics_installed = False


def _install_metrics(server: Server) -> None:
    """tfsfast's model, load and process metrics, for the Prometheus page: once per process (the
    registry is the process's; a REST worker has its own). Only with the page on, since only the
    page shows them and the GC figures cost a callback per collection."""
    global _metrics_installed
    if _metrics_installed:
        return
    _metrics_installed = True
    assert server.core is not None
    install_server_metrics(server.core)
    install_serving_gauges(server.core, lambda: server.http_server, lambda: server.grpc_server)
    install_tensorflow_metrics()
    install_process_metrics(_extensions.implementations())


def num_schedulable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
