"""tfsfast's own metrics, under ``/tfsfast/`` (``:tfsfast:`` in Prometheus): what operators ask
of TF Serving and it does not export.

- ``/tfsfast/model/state`` gauge {model_name, version, state}: 1 for the state each version is
  in (START, LOADING, AVAILABLE, UNLOADING, END), 0 for the others, so ``== 1`` selects the
  current one and a sum over versions counts them per state.
- ``/tfsfast/model/load_failures`` counter {model_name, code}: versions that failed to load (or
  warm up), by the error's code.
- ``/tfsfast/process/cpu_seconds`` counter, ``/tfsfast/process/resident_memory_bytes``,
  ``/tfsfast/process/open_fds``, ``/tfsfast/process/start_time_seconds`` gauges: this process.
- ``/tfsfast/python/gc_collections`` counter {generation} and ``/tfsfast/python/gc_pause``
  histogram (µs, TF Serving's latency buckets): the interpreter's collections, which stop every
  thread that needs the GIL, the event loop included.
- ``/tfsfast/build_info`` gauge {version, tensorflow, python, implementations} = 1.
- ``/tfsfast/http/connections`` and ``/tfsfast/http/requests_in_progress`` gauges: the REST
  port's open connections, and those with a request received and not answered yet (queued,
  running, or batched).
- ``/tfsfast/grpc/calls_in_progress`` gauge: PredictionService calls received and not answered
  yet on the gRPC completion-queue loop (``fast_unary``; the other services run on grpcio's own
  threads and are not counted).
- ``/tfsfast/batching/queue_depth`` gauge {model_name, version, signature_name}: requests (or
  parts of split ones) waiting in a batching queue, not yet taken by a batch thread.

All but the GC figures and the load failures are computed when collected (collectors), so
nothing here runs on a request. A REST worker process (``--rest_api_num_workers``) has its own
registry: the page a scrape gets shows the process that answered it.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.monitoring import buckets
from tfsfast.monitoring.collection_registry import DEFAULT, CollectionRegistry, Point
from tfsfast.monitoring.metrics import Counter, MetricDescriptor, Sampler
from tfsfast.util.status import ServingError

__all__ = ["install_process_metrics", "install_server_metrics", "install_serving_gauges"]

_STATES = tuple(state.name for state in ManagerState)


def _gauge(name: str, description: str, *labels: str,
           value_type: str = "int64") -> MetricDescriptor:
    return MetricDescriptor(name, description, labels, "gauge", value_type)  # type: ignore[arg-type]


def install_server_metrics(core: Any, registry: CollectionRegistry = DEFAULT) -> None:
    """The model metrics of ``core`` (a ``ServerCore``): its versions' states, and a count of
    the loads that fail from now on."""
    monitor = core.servable_state_monitor

    def states() -> Sequence[Point]:
        points: list[Point] = []
        for name, versions in monitor.get_all_servable_states().items():
            for version, entry in versions.items():
                current = entry.state.manager_state.name
                points.extend(Point((name, str(version), state), int(state == current))
                              for state in _STATES)
        return points

    registry.register_collector(_gauge(
        "/tfsfast/model/state", "1 for the state a model version is in, 0 for the others.",
        "model_name", "version", "state"), states)
    failures = registry.register(Counter(
        "/tfsfast/model/load_failures", "Model versions that failed to load, by error code.",
        "model_name", "code"))

    def on_state(state: ServableState) -> None:
        if state.manager_state is ManagerState.END and state.health is not None:
            failures.get_cell(state.id.name, state.health.code.name).increment_by(1)

    core.event_bus.subscribe(on_state)


def install_serving_gauges(core: Any, http_server: Callable[[], Any],
                           grpc_server: Callable[[], Any],
                           registry: CollectionRegistry = DEFAULT) -> None:
    """The load in flight: REST connections and requests, gRPC calls, batching queues.
    ``http_server()`` and ``grpc_server()`` return the server's listeners when collected (None
    while one is not serving); read then, so nothing counts on a request."""

    def connections() -> Sequence[Point]:
        server = http_server()
        return [Point((), len(server.connections))] if server is not None else []

    def requests() -> Sequence[Point]:
        server = http_server()
        return [Point((), server.requests_in_progress)] if server is not None else []

    def calls() -> Sequence[Point]:
        server = grpc_server()
        return [Point((), server.calls_in_progress)] if server is not None else []

    def queue_depths() -> Sequence[Point]:
        points = []
        for servable_id in core.manager.list_available_servable_ids():
            try:
                handle = core.get_servable_handle(servable_id.name, servable_id.version)
            except ServingError:
                continue  # unloaded since it was listed
            with handle:
                batching = getattr(handle.servable, "batching_session", None)
                if batching is None:
                    continue
                for key in batching.batched_signatures:
                    points.append(Point((servable_id.name, str(servable_id.version), key),
                                        batching.queue(key).num_enqueued_tasks))
        return points

    registry.register_collector(_gauge(
        "/tfsfast/http/connections", "Open connections on the REST port."), connections)
    registry.register_collector(_gauge(
        "/tfsfast/http/requests_in_progress",
        "REST connections with a request received and not answered yet."), requests)
    registry.register_collector(_gauge(
        "/tfsfast/grpc/calls_in_progress",
        "PredictionService calls received and not answered yet."), calls)
    registry.register_collector(_gauge(
        "/tfsfast/batching/queue_depth",
        "Requests waiting in a batching queue, not yet taken by a batch thread.",
        "model_name", "version", "signature_name"), queue_depths)


def install_process_metrics(implementations: str,
                            registry: CollectionRegistry = DEFAULT) -> Callable[[], None]:
    """This process's CPU, memory, descriptors, GC and build; returns what stops the GC
    figures (the others stop with the registry)."""
    page = os.sysconf("SC_PAGE_SIZE")
    started = time.time() - time.monotonic() + _process_start_monotonic()

    def cpu() -> Sequence[Point]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [Point((), usage.ru_utime + usage.ru_stime)]

    def rss() -> Sequence[Point]:
        with open("/proc/self/statm") as f:
            return [Point((), int(f.read().split()[1]) * page)]

    def fds() -> Sequence[Point]:
        return [Point((), len(os.listdir("/proc/self/fd")))]

    registry.register_collector(MetricDescriptor(
        "/tfsfast/process/cpu_seconds", "User and system CPU time of this process.", (),
        "cumulative", "double"), cpu)
    registry.register_collector(_gauge(
        "/tfsfast/process/resident_memory_bytes", "Resident memory of this process."), rss)
    registry.register_collector(_gauge(
        "/tfsfast/process/open_fds", "Open file descriptors of this process."), fds)
    registry.register_collector(_gauge(
        "/tfsfast/process/start_time_seconds", "When this process started (Unix time).",
        value_type="double"), lambda: [Point((), started)])
    from tfsfast import __version__

    build = (__version__, _tensorflow_version(), platform.python_version(), implementations)
    registry.register_collector(_gauge(
        "/tfsfast/build_info", "1, labelled with what this server runs.",
        "version", "tensorflow", "python", "implementations"), lambda: [Point(build, 1)])
    return _install_gc_metrics(registry)


def _tensorflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tensorflow")
    except PackageNotFoundError:
        return ""


def _process_start_monotonic() -> float:
    """This process's start on the monotonic clock (/proc/self/stat's starttime, in clock
    ticks since boot, which is what CLOCK_MONOTONIC counts from on Linux)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _install_gc_metrics(registry: CollectionRegistry) -> Callable[[], None]:
    collections = registry.register(Counter(
        "/tfsfast/python/gc_collections", "Garbage collections, by generation.",
        "generation"))
    pauses = registry.register(Sampler(
        "/tfsfast/python/gc_pause", buckets.exponential(10, 1.8, 33),
        "Distribution of wall time (in microseconds) of garbage collections."))
    cells = [collections.get_cell(str(generation)) for generation in range(3)]
    pause = pauses.get_cell()
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pause.add((time.perf_counter() - started.pop()) * 1e6)
            cells[info["generation"]].increment_by(1)

    gc.callbacks.append(on_gc)
    return lambda: gc.callbacks.remove(on_gc)
