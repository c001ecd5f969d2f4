"""tfsfast's own metrics, over a real event bus and state monitor."""

from __future__ import annotations

import concurrent.futures
import gc
import os
from types import SimpleNamespace
from typing import Any

import numpy as np

from tfsfast.batching.batching_parameters import QueueOptions, SchedulerOptions
from tfsfast.batching.batching_session import BatchingSession
from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler
from tfsfast.core.event_bus import EventBus
from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.core.servable_state_monitor import ServableStateMonitor
from tfsfast.monitoring.collection_registry import CollectionRegistry
from tfsfast.monitoring.server_metrics import (
    install_process_metrics,
    install_server_metrics,
    install_serving_gauges,
)
from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.util.status import Code, ServingError


class Core:
    """What the metrics read of a ServerCore: its event bus and state monitor."""

    def __init__(self) -> None:
        self.event_bus: EventBus[ServableState] = EventBus()
        self.servable_state_monitor = ServableStateMonitor(self.event_bus)


def _points(registry: CollectionRegistry, name: str) -> dict[tuple[str, ...], object]:
    (metric,) = [m for m in registry.collect() if m.descriptor.name == name]
    return {p.labels: p.value for p in metric.points}


def test_model_states_and_load_failures() -> None:
    registry, core = CollectionRegistry(), Core()
    install_server_metrics(core, registry)
    publish = core.event_bus.publish
    publish(ServableState(ServableId("m", 1), ManagerState.AVAILABLE))
    publish(ServableState(ServableId("m", 2), ManagerState.LOADING))
    publish(ServableState(ServableId("m", 2), ManagerState.END,
                          ServingError(Code.NOT_FOUND, "no such file")))
    states = _points(registry, "/tfsfast/model/state")
    assert {labels for labels, value in states.items() if value == 1} == {
        ("m", "1", "AVAILABLE"), ("m", "2", "END")}
    assert len(states) == 2 * len(ManagerState)
    assert _points(registry, "/tfsfast/model/load_failures") == {("m", "NOT_FOUND"): 1}


def test_process_metrics_and_gc() -> None:
    registry = CollectionRegistry()
    uninstall = install_process_metrics("codecs.json=compiled", registry)
    try:
        collections_before = _points(registry, "/tfsfast/python/gc_collections")
        gc.collect()
        assert _points(registry, "/tfsfast/python/gc_collections")[("2",)] == \
            collections_before.get(("2",), 0) + 1
        pause = _points(registry, "/tfsfast/python/gc_pause")[()]
        assert pause.count >= 1  # type: ignore[attr-defined]
        (rss,) = _points(registry, "/tfsfast/process/resident_memory_bytes").values()
        assert isinstance(rss, int) and rss > 1 << 20
        (fds,) = _points(registry, "/tfsfast/process/open_fds").values()
        with open(os.devnull) as _:
            (more,) = _points(registry, "/tfsfast/process/open_fds").values()
        assert more == fds + 1  # type: ignore[operator]
        (cpu,) = _points(registry, "/tfsfast/process/cpu_seconds").values()
        assert isinstance(cpu, float) and cpu > 0
        (build,) = _points(registry, "/tfsfast/build_info")
        assert build[3] == "codecs.json=compiled"
    finally:
        uninstall()


class _Session:
    """A session with one batched signature, ``serving_default``: x float [-1] -> y = x."""

    def __init__(self) -> None:
        x = TensorInfo("x", "x:0", DataType.DT_FLOAT, (-1,))
        self.signatures = {"serving_default": Signature(
            "serving_default", "tensorflow/serving/predict", {"x": x}, {"y": x})}
        self.meta_graph_def = None

    def run(self, key: str, inputs: dict[str, Any], output_aliases: Any = None,
            timeout_in_ms: int = 0) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}

    def close(self) -> None:
        pass


class _Handle:
    def __init__(self, servable: Any) -> None:
        self.servable = servable

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _ServingCore:
    """What the gauges read of a ServerCore: the versions available and a handle to each
    (version 2 is listed but unloaded before its handle is asked for)."""

    def __init__(self, batching: BatchingSession) -> None:
        self._servables = {ServableId("m", 1): SimpleNamespace(batching_session=batching),
                           ServableId("plain", 7): SimpleNamespace(batching_session=None)}
        self.manager = SimpleNamespace(list_available_servable_ids=lambda: [
            *self._servables, ServableId("m", 2)])

    def get_servable_handle(self, name: str, version: int) -> _Handle:
        servable = self._servables.get(ServableId(name, version))
        if servable is None:
            raise ServingError(Code.NOT_FOUND, "unloaded")
        return _Handle(servable)


def test_serving_gauges_read_the_listeners_and_the_batching_queues_when_collected() -> None:
    scheduler = SharedBatchScheduler(SchedulerOptions(1), start=False)
    batching = BatchingSession(_Session(), scheduler, QueueOptions(max_batch_size=100,
                                                                   max_execution_batch_size=100))
    registry = CollectionRegistry()
    listeners: dict[str, Any] = {"http": None, "grpc": None}
    install_serving_gauges(_ServingCore(batching), lambda: listeners["http"],
                           lambda: listeners["grpc"], registry)
    try:
        # Before the listeners serve: no points; an idle queue: depth 0.
        assert _points(registry, "/tfsfast/http/connections") == {}
        assert _points(registry, "/tfsfast/grpc/calls_in_progress") == {}
        depth = "/tfsfast/batching/queue_depth"
        assert _points(registry, depth) == {("m", "1", "serving_default"): 0}
        waiters = [concurrent.futures.Future() for _ in range(3)]
        for waiter in waiters:
            batching.schedule("serving_default", {"x": np.ones(2, np.float32)}, None, 0, None,
                              waiter)
        assert _points(registry, depth) == {("m", "1", "serving_default"): 3}
        while scheduler.step() is not None:
            pass
        assert _points(registry, depth) == {("m", "1", "serving_default"): 0}
        assert [w.result()["y"].tolist() for w in waiters] == [[1.0, 1.0]] * 3

        listeners["http"] = SimpleNamespace(connections={object(), object()},
                                            requests_in_progress=1)
        listeners["grpc"] = SimpleNamespace(calls_in_progress=4)
        assert _points(registry, "/tfsfast/http/connections") == {(): 2}
        assert _points(registry, "/tfsfast/http/requests_in_progress") == {(): 1}
        assert _points(registry, "/tfsfast/grpc/calls_in_progress") == {(): 4}
    finally:
        batching.close()
