"""tfsfast's own metrics, over a real event bus and state monitor."""

from __future__ import annotations

import gc
import os

from tfsfast.core.event_bus import EventBus
from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.core.servable_state_monitor import ServableStateMonitor
from tfsfast.monitoring.collection_registry import CollectionRegistry
from tfsfast.monitoring.server_metrics import install_process_metrics, install_server_metrics
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
