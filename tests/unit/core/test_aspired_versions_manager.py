"""AspiredVersionsManager, stepped by hand (no manager thread, no sleeps)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tfsfast.core.aspired_versions_manager import (
    AspiredVersionsManager,
    AspiredVersionsManagerOptions,
)
from tfsfast.core.event_bus import EventBus
from tfsfast.core.resource_preserving_policy import ResourcePreservingPolicy
from tfsfast.core.resources import RAM, ResourceTracker
from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_request import ServableRequest
from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.core.servable_state_monitor import ServableStateMonitor
from tfsfast.testing.fake_loader import FakeLoader
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

TABLES = implementations("tfsfast.core._handle_table", "tfsfast.core._handle_table_py")


class Harness:
    """A manager with no thread, its bus, monitor and a log of every state event."""

    def __init__(self, table_module: str, **options: object) -> None:
        self.bus: EventBus[ServableState] = EventBus()
        self.events: list[tuple[int, ManagerState]] = []
        self.bus.subscribe(lambda s: self.events.append((s.id.version, s.manager_state)))
        self.monitor = ServableStateMonitor(self.bus)
        opts = AspiredVersionsManagerOptions(
            manage_state_interval_micros=-1, servable_event_bus=self.bus,
            handle_table=import_impl(table_module).HandleTable(),
            load_retry_interval_micros=0, sleep=lambda s: None)
        for k, v in options.items():
            setattr(opts, k, v)
        self.manager = AspiredVersionsManager(opts)
        self.callback = self.manager.get_aspired_versions_callback()

    def aspire(self, *loaders: tuple[int, object], name: str = "m") -> None:
        data = []
        for version, loader in loaders:
            if isinstance(loader, ServingError):
                data.append(ServableData(ServableId(name, version), error=loader))
            else:
                data.append(ServableData(ServableId(name, version), loader))
        self.callback(name, data)

    def latest(self, name: str = "m") -> object:
        with self.manager.get_servable_handle(ServableRequest.latest(name)) as handle:
            return handle.servable


@pytest.fixture(params=TABLES)
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(request.param)
    yield harness
    harness.manager.stop(unload_all=True, timeout=5)


def test_loads_aspired_version_and_serves_it(h: Harness) -> None:
    with pytest.raises(ServingError) as e:
        h.manager.get_servable_handle(ServableRequest.latest("m"))
    assert e.value.code == Code.NOT_FOUND
    assert e.value.message == "Servable not found for request: Latest(m)"
    h.aspire((1, FakeLoader("v1")))
    h.manager.manage_state()
    assert h.latest() == "v1"
    assert h.events == [(1, ManagerState.START), (1, ManagerState.LOADING),
                        (1, ManagerState.AVAILABLE)]
    assert h.manager.list_available_servable_ids() == [ServableId("m", 1)]


def test_specific_earliest_and_not_found_texts(h: Harness) -> None:
    h.aspire((1, FakeLoader("v1")), (2, FakeLoader("v2")))
    h.manager.manage_state()
    m = h.manager
    assert m.get_servable_handle(ServableRequest.specific("m", 1)).servable == "v1"
    assert m.get_servable_handle(ServableRequest.earliest("m")).servable == "v1"
    assert m.get_servable_handle(ServableRequest.latest("m")).servable == "v2"
    with pytest.raises(ServingError) as e:
        m.get_servable_handle(ServableRequest.specific("m", 3))
    assert (e.value.code, e.value.message) == (
        Code.NOT_FOUND, "Servable not found for request: Specific(m, 3)")
    with pytest.raises(ServingError, match=r"Earliest\(x\)"):
        m.get_servable_handle(ServableRequest.earliest("x"))


def test_availability_preserving_loads_new_before_unloading_old(h: Harness) -> None:
    log: list[tuple[str, object]] = []
    h.aspire((1, FakeLoader("v1", log=log)))
    h.manager.manage_state()
    h.aspire((2, FakeLoader("v2", log=log)))
    h.manager.manage_state()
    assert log == [("load", "v1"), ("load", "v2"), ("unload", "v1")]
    assert h.latest() == "v2"
    assert h.events.index((2, ManagerState.AVAILABLE)) < h.events.index(
        (1, ManagerState.UNLOADING))
    assert h.events[-1] == (1, ManagerState.END)


def test_old_version_serves_while_new_one_loads() -> None:
    h = Harness("tfsfast.core._handle_table_py", num_load_threads=1)
    block = threading.Event()
    v1, v2 = FakeLoader("v1"), FakeLoader("v2", block=block)
    h.aspire((1, v1))
    h.manager.manage_state()  # v1 loads on a load thread
    assert h.monitor.wait_until_servables_reach_state(
        [ServableRequest.specific("m", 1)], ManagerState.AVAILABLE, timeout=10)[0]
    h.manager.set_num_load_threads(1)
    h.aspire((2, v2))
    h.manager.manage_state()  # starts loading v2 on the load thread
    assert v2.load_started.wait(10)
    h.manager.manage_state()  # v2 still loading: v1 must stay
    assert h.latest() == "v1" and v1.calls == ["load"]
    block.set()
    ok, _ = h.monitor.wait_until_servables_reach_state(
        [ServableRequest.specific("m", 2)], ManagerState.AVAILABLE, timeout=10)
    assert ok
    h.manager.manage_state()
    assert h.latest() == "v2" and v1.calls == ["load", "unload"]
    h.manager.stop(timeout=5)


def test_an_abandoned_load_holds_back_no_wanted_load_nor_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    """A load that never returns, once its version is no longer aspired, frees its load thread
    slot and stop does not wait for it; its thread is a daemon (it cannot keep a process alive).
    """
    h = Harness("tfsfast.core._handle_table_py", num_load_threads=1)
    never = threading.Event()
    hung, wanted = FakeLoader("hung", block=never), FakeLoader("wanted")
    try:
        h.aspire((1, hung), name="hung")
        h.manager.manage_state()
        assert hung.load_started.wait(10)
        h.aspire((1, wanted), name="m")
        h.manager.manage_state()
        assert wanted.calls == []  # the only load thread is taken
        h.aspire(name="hung")
        h.manager.manage_state()
        assert h.monitor.wait_until_servables_reach_state(
            [ServableRequest.specific("m", 1)], ManagerState.AVAILABLE, timeout=10)[0]
        assert h.latest() == "wanted"
        assert [t.daemon for t in threading.enumerate() if t.name == "tfsfast_load_hung"] == [
            True]
        assert h.monitor.get_state(ServableId("hung", 1)).manager_state == ManagerState.LOADING
        with caplog.at_level("WARNING", logger="tfsfast.core.aspired_versions_manager"):
            h.manager.stop(timeout=None)  # returns all the same
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            "Not waiting for the load of servable version {name: hung version: 1} to finish"]
        assert wanted.calls == ["load", "unload"]
    finally:
        never.set()


def test_stop_waits_for_a_wanted_load_up_to_its_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    """A load under way when stop begins is waited for (then unloaded), up to the timeout."""
    h = Harness("tfsfast.core._handle_table_py", num_load_threads=1)
    finish, never = threading.Event(), threading.Event()
    slow, hung = FakeLoader("slow", block=finish), FakeLoader("hung", block=never)
    try:
        h.aspire((1, slow), name="slow")
        h.manager.manage_state()
        assert slow.load_started.wait(10)
        stopping = threading.Thread(target=h.manager.stop, kwargs={"timeout": None})
        stopping.start()
        stopping.join(0.2)
        assert stopping.is_alive()  # waiting for the load
        finish.set()
        stopping.join(10)
        assert not stopping.is_alive() and slow.calls == ["load", "unload"]
        h = Harness("tfsfast.core._handle_table_py", num_load_threads=1)
        h.aspire((1, hung), name="hung")
        h.manager.manage_state()
        assert hung.load_started.wait(10)
        with caplog.at_level("WARNING", logger="tfsfast.core.aspired_versions_manager"):
            h.manager.stop(timeout=0.5)
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            "Not waiting for the load of servable version {name: hung version: 1} to finish"]
    finally:
        never.set()


def test_resource_preserving_unloads_old_first() -> None:
    h = Harness("tfsfast.core._handle_table_py", aspired_version_policy=ResourcePreservingPolicy())
    log: list[tuple[str, object]] = []
    h.aspire((1, FakeLoader("v1", log=log)))
    h.manager.manage_state()
    h.aspire((2, FakeLoader("v2", log=log)))
    h.manager.manage_state()
    assert log == [("load", "v1"), ("unload", "v1"), ("load", "v2")]
    assert h.latest() == "v2"
    h.manager.stop(timeout=5)


def test_retry_on_load_error_finally_succeeds(h: Harness) -> None:
    loader = FakeLoader("v1", fail_times=2)
    h.manager._options.max_num_load_retries = 2
    h.aspire((1, loader))
    h.manager.manage_state()
    assert loader.calls == ["load", "load", "load"]
    assert h.latest() == "v1"


def test_retry_on_load_error_finally_fails(h: Harness) -> None:
    loader = FakeLoader("v1", fail_times=-1)
    h.manager._options.max_num_load_retries = 2
    h.aspire((1, loader))
    h.manager.manage_state()
    assert loader.calls == ["load", "load", "load"]
    state = h.monitor.get_state(ServableId("m", 1))
    assert state.manager_state == ManagerState.END
    assert state.health.message == "load failed (attempt 3)"
    # Still aspired and failed: the same list again must not trigger new attempts.
    h.aspire((1, FakeLoader("again")))
    h.manager.manage_state()
    assert loader.calls == ["load", "load", "load"]


def test_load_failure_keeps_serving_the_old_version(h: Harness) -> None:
    h.aspire((1, FakeLoader("v1")))
    h.manager.manage_state()
    h.aspire((2, FakeLoader("v2", fail_times=-1)))
    h.manager._options.max_num_load_retries = 0
    h.manager.manage_state()
    assert h.latest() == "v1"
    assert h.monitor.get_state(ServableId("m", 2)).manager_state == ManagerState.END


def test_erroneous_aspired_version_is_reported(h: Harness) -> None:
    h.aspire((1, ServingError(Code.NOT_FOUND, "bad path")))
    h.manager.manage_state()
    state = h.monitor.get_state(ServableId("m", 1))
    assert state.manager_state == ManagerState.END
    assert str(state.health) == "NOT_FOUND: bad path"


def test_unaspire_unloads_everything(h: Harness) -> None:
    h.aspire((1, FakeLoader("v1")))
    h.manager.manage_state()
    h.aspire()
    h.manager.manage_state()
    with pytest.raises(ServingError):
        h.latest()
    assert h.events[-2:] == [(1, ManagerState.UNLOADING), (1, ManagerState.END)]


def test_unaspire_then_immediately_reaspire() -> None:
    """A version wanted again while it unloads is loaded afresh once the unload is done."""
    h = Harness("tfsfast.core._handle_table_py", num_unload_threads=1)
    first, second = FakeLoader("first"), FakeLoader("second")
    h.aspire((1, first))
    h.manager.manage_state()
    handle = h.manager.get_servable_handle(ServableRequest.latest("m"))  # delays the unload
    h.aspire()
    h.manager.manage_state()
    h.aspire((1, second))
    h.manager.manage_state()
    assert second.calls == []  # still waiting for the first to be unloaded
    handle.release()
    assert first.unloaded.wait(10)
    for _ in range(100):
        h.manager.manage_state()
        if second.calls:
            break
        first.unloaded.wait(0.01)
    assert second.calls == ["load"]
    assert h.latest() == "second"
    h.manager.stop(timeout=5)


def test_unload_waits_for_handles_in_flight() -> None:
    h = Harness("tfsfast.core._handle_table_py", num_unload_threads=1)
    loader = FakeLoader("v1")
    h.aspire((1, loader))
    h.manager.manage_state()
    handle = h.manager.get_servable_handle(ServableRequest.latest("m"))
    h.aspire()
    h.manager.manage_state()
    with pytest.raises(ServingError):  # no longer handed out...
        h.latest()
    assert handle.servable == "v1"  # ...but the request holding it still works
    assert not loader.unloaded.wait(0.2)
    del handle
    assert loader.unloaded.wait(10)
    h.manager.stop(timeout=5)


def test_insufficient_resources_refuses_load(h: Harness) -> None:
    h.manager._resources = ResourceTracker({RAM: 100})
    h.aspire((1, FakeLoader("v1", resources={RAM: 60})), name="a")
    h.manager.manage_state()
    h.aspire((1, FakeLoader("v1", resources={RAM: 60})), name="b")
    h.manager.manage_state()
    assert h.latest("a") == "v1"
    state = h.monitor.get_state(ServableId("b", 1))
    assert state.manager_state == ManagerState.END
    assert state.health.code == Code.RESOURCE_EXHAUSTED
    assert "Insufficient resources to load servable {name: b version: 1}" in state.health.message


def test_resources_released_after_unload(h: Harness) -> None:
    tracker = ResourceTracker({RAM: 100})
    h.manager._resources = tracker
    h.aspire((1, FakeLoader("v1", resources={RAM: 60})))
    h.manager.manage_state()
    assert tracker.used == {RAM: 60}
    h.aspire((2, FakeLoader("v2", resources={RAM: 30})))
    h.manager.manage_state()
    assert tracker.used == {RAM: 30}
    assert h.latest() == "v2"


def test_multiple_streams_are_independent(h: Harness) -> None:
    h.aspire((1, FakeLoader("a1")), name="a")
    h.aspire((5, FakeLoader("b5")), name="b")
    h.manager.manage_state()
    assert h.latest("a") == "a1" and h.latest("b") == "b5"
    h.aspire(name="a")
    h.manager.manage_state()
    assert h.latest("b") == "b5"
    with pytest.raises(ServingError):
        h.latest("a")


def test_revert_to_smaller_version_number(h: Harness) -> None:
    h.aspire((2, FakeLoader("v2")))
    h.manager.manage_state()
    h.aspire((1, FakeLoader("v1")))
    h.manager.manage_state()
    assert h.latest() == "v1"
    assert h.manager.list_available_servable_ids() == [ServableId("m", 1)]


def test_manager_thread_reacts_without_manual_steps() -> None:
    bus: EventBus[ServableState] = EventBus()
    monitor = ServableStateMonitor(bus)
    manager = AspiredVersionsManager(AspiredVersionsManagerOptions(
        manage_state_interval_micros=1_000_000, servable_event_bus=bus))
    manager.get_aspired_versions_callback()("m", [ServableData(ServableId("m", 1),
                                                               FakeLoader("v1"))])
    ok, states = monitor.wait_until_servables_reach_state(
        [ServableRequest.latest("m")], ManagerState.AVAILABLE, timeout=10)
    assert ok and states == {ServableId("m", 1): ManagerState.AVAILABLE}
    manager.stop(timeout=5)
    assert monitor.get_state(ServableId("m", 1)).manager_state == ManagerState.END


def test_requests_never_miss_during_swaps() -> None:
    """Readers looping on Latest during repeated version swaps always get a handle."""
    h = Harness("tfsfast.core._handle_table_py")
    h.aspire((1, FakeLoader(1)))
    h.manager.manage_state()
    stop = threading.Event()
    failures: list[Exception] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with h.manager.get_servable_handle(ServableRequest.latest("m")) as handle:
                    assert handle.servable is not None
            except Exception as e:
                failures.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for v in range(2, 40):
        h.aspire((v, FakeLoader(v)))
        h.manager.manage_state()
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert h.latest() == 39
    h.manager.stop(timeout=5)
