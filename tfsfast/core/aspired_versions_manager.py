"""``AspiredVersionsManager``: moves servable streams to the versions their Sources aspire.

Sources say *what* should be loaded (complete aspired-version lists per stream); the manager's
``AspiredVersionPolicy`` says *how* to get there one action at a time, and the manager carries the
actions out: loads (with retries and a resource check), unloads (after in-flight requests let go),
state events on the bus, and a new handle-table snapshot each time the set of AVAILABLE versions
changes. Requests read that snapshot through ``get_servable_handle`` without taking a lock.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tfsfast.core import handle_table as handle_table_lib
from tfsfast.core.aspired_version_policy import (
    Action,
    AspiredServableStateSnapshot,
    AspiredVersionPolicy,
    ServableAction,
)
from tfsfast.core.availability_preserving_policy import AvailabilityPreservingPolicy
from tfsfast.core.event_bus import EventBus
from tfsfast.core.loader import Loader
from tfsfast.core.loader_harness import END_STATES, HarnessState, LoaderHarness
from tfsfast.core.resources import ResourceTracker
from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_handle import ServableHandle, ServingEntry
from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_request import AutoVersionPolicy, ServableRequest
from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.core.target import AspiredVersionsCallback, Target
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)


@dataclass
class AspiredVersionsManagerOptions:
    """Construction options (TF Serving's ``AspiredVersionsManager::Options``).

    ``manage_state_interval_micros``: how often the manager thread runs ``manage_state``; it also
    runs at once whenever a Source emits or a load finishes. -1 starts no thread: the owner (a
    test) calls ``manage_state`` by hand.
    ``num_load_threads`` / ``num_unload_threads``: 0 runs loads/unloads on the manager thread, one
    at a time, as TF Serving does. Loads run on threads of their own (daemon threads, so a load
    that never returns cannot keep the process from exiting), at most ``num_load_threads`` of them
    for versions still aspired: a load whose version stops being aspired is left to finish alone
    and no longer holds back the loads that are wanted (TensorFlow cannot cancel a load).
    ``sleep``: replaces the wait between load retries (tests pass a no-op to step without sleeping).
    """

    manage_state_interval_micros: int = 100_000
    aspired_version_policy: AspiredVersionPolicy = field(
        default_factory=AvailabilityPreservingPolicy)
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    resource_tracker: ResourceTracker | None = None
    servable_event_bus: EventBus[ServableState] | None = None
    sleep: Callable[[float], Any] | None = None
    # The handle table to publish into; None picks the compiled one (or its Python twin).
    handle_table: Any = None
    # How long an unload waits for in-flight requests before it warns (and keeps waiting).
    unload_wait_warning_seconds: float = 10.0


class AspiredVersionsManager(Target[Loader]):
    """The Manager of the serving system (Target of Loaders, source of servable handles).

    Thread-safety: ``get_servable_handle`` is lock-free and may be called from any thread.
    The aspired-versions callback may be called from any thread; it only queues the request.
    ``manage_state`` runs on the manager thread (or the test's), never twice at once.
    """

    def __init__(self, options: AspiredVersionsManagerOptions | None = None) -> None:
        self._options = options or AspiredVersionsManagerOptions()
        self._policy = self._options.aspired_version_policy
        self._bus = self._options.servable_event_bus or EventBus()
        self._resources = self._options.resource_tracker
        self._table = (self._options.handle_table if self._options.handle_table is not None
                       else handle_table_lib.HandleTable())

        self._lock = threading.RLock()  # guards the fields below
        self._harnesses: dict[str, dict[int, LoaderHarness]] = {}
        self._pending: dict[str, list[ServableData[Loader]]] = {}
        self._published: dict[ServableId, ServingEntry] = {}
        self._in_flight: set[ServableId] = set()
        # Loads running on load threads whose version is still aspired: they count against
        # num_load_threads. A load that was abandoned (unaspired) is in _in_flight only.
        self._loading: set[ServableId] = set()

        self._manage_lock = threading.Lock()  # one manage_state at a time
        self._num_load_threads = max(0, self._options.num_load_threads)
        self._unload_executor: ThreadPoolExecutor | None = None
        if self._options.num_unload_threads > 0:
            self._unload_executor = ThreadPoolExecutor(self._options.num_unload_threads,
                                                       thread_name_prefix="tfsfast_unload")
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if self._options.manage_state_interval_micros >= 0:
            self._thread = threading.Thread(target=self._run, name="tfsfast_manager",
                                            daemon=True)
            self._thread.start()

    # --- public API ------------------------------------------------------------------------

    @property
    def event_bus(self) -> EventBus[ServableState]:
        return self._bus

    @property
    def handle_table(self) -> Any:
        """The lock-free snapshot ``get_servable_handle`` reads (``find(name, version, policy)``).

        For hot paths that want the entry without a ServableRequest/ServableHandle per call;
        readers must treat it as read-only (only the manager publishes into it).
        """
        return self._table

    def get_servable_handle(self, request: ServableRequest) -> ServableHandle:
        """A handle to the requested AVAILABLE version; NOT_FOUND if there is none.

        The NOT_FOUND text is TF Serving's (``Servable not found for request: Latest(m)``);
        readiness probes written for TF Serving match on it.
        """
        entry = self._table.find(
            request.name, request.version,
            handle_table_lib.LATEST if request.auto_version_policy == AutoVersionPolicy.LATEST
            else handle_table_lib.EARLIEST)
        if entry is None:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {request}")
        return ServableHandle(entry)

    def list_available_servable_ids(self) -> list[ServableId]:
        with self._lock:
            return sorted(self._published)

    def available_versions(self, name: str) -> list[int]:
        """Versions of ``name`` that requests can reach now, ascending (lock-free)."""
        return self._table.available_versions(name)

    def get_aspired_versions_callback(self) -> AspiredVersionsCallback[Loader]:
        return self._enqueue_aspired_versions_request

    def set_num_load_threads(self, num_load_threads: int) -> None:
        """How many aspired versions may load at once (TF Serving loads with more threads at
        startup, then fewer); 0 loads on the manager thread. Loads under way go on."""
        with self._lock:
            self._num_load_threads = max(0, num_load_threads)
        self._wake.set()

    def manage_state(self) -> None:
        """One round: take queued aspired lists, forget finished versions, act until idle."""
        with self._manage_lock:
            self._handle_pending_aspired_versions_requests()
            self._flush_servables()
            while True:
                action = self._get_next_action()
                if action is None or not self._perform_action(action):
                    break
            self._flush_servables()

    def stop(self, unload_all: bool = True, timeout: float | None = None) -> None:
        """Stops the manager thread; with ``unload_all`` first unloads every version.

        Unloading waits for in-flight requests to release their handles, and loads under way
        are waited for (to unload what they load), up to ``timeout``. Loads already abandoned
        (their version stopped being aspired while they ran) are not waited for, nor is a load
        still running at the timeout: it is left behind on its daemon thread. TensorFlow cannot
        cancel a load, and one that never returns must not keep the server from stopping.
        """
        if unload_all:
            with self._lock:
                abandoned = self._loads_in_flight() - self._loading
                for stream in self._harnesses.values():
                    for harness in stream.values():
                        harness.is_aspired = False
                        harness.cancel_load_retry()
                self._pending.clear()
                self._loading.clear()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                self.manage_state()
                self._wait_for_in_flight(0.05)
                with self._lock:
                    loads = self._loads_in_flight()
                    left = {h.id for stream in self._harnesses.values() for h in stream.values()}
                    abandoned &= loads
                    if left <= abandoned and self._in_flight <= abandoned:
                        break
                if deadline is not None and time.monotonic() > deadline:
                    abandoned = loads
                    if not left <= loads:
                        _log.warning("Manager stopped before every servable was unloaded")
                    break
            for servable_id in sorted(abandoned):
                _log.warning("Not waiting for the load of servable version %s to finish",
                             servable_id)
        self._stopped.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._unload_executor is not None:
            self._unload_executor.shutdown(wait=True)

    def _loads_in_flight(self) -> set[ServableId]:
        """Versions whose load is under way (lock held)."""
        return {servable_id for servable_id in self._in_flight
                if self._harnesses.get(servable_id.name, {}).get(servable_id.version) is not None
                and self._harnesses[servable_id.name][servable_id.version].state
                in (HarnessState.LOAD_APPROVED, HarnessState.LOADING)}

    # --- the aspired-versions callback -------------------------------------------------------

    def _enqueue_aspired_versions_request(self, servable_name: str,
                                          versions: Sequence[ServableData[Loader]]) -> None:
        versions = list(versions)
        wanted = {v.id.version for v in versions}
        with self._lock:
            # A newer list for the same stream replaces a queued older one.
            self._pending[servable_name] = versions
            # Cancel retries at once, not at the next round: a blocked load would delay it.
            for version, harness in self._harnesses.get(servable_name, {}).items():
                if version not in wanted:
                    harness.cancel_load_retry()
        self._wake.set()

    def _handle_pending_aspired_versions_requests(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            for name, versions in pending.items():
                if self._contains_reaspired_versions(name, versions):
                    # A version on its way out is wanted again: wait until it is gone, then
                    # manage it afresh (TF Serving's UnaspireThenImmediatelyReaspire).
                    self._pending.setdefault(name, versions)
                    continue
                self._process_aspired_versions_request(name, versions)

    def _contains_reaspired_versions(self, name: str,
                                     versions: Sequence[ServableData[Loader]]) -> bool:
        stream = self._harnesses.get(name, {})
        return any(v.id.version in stream and not stream[v.id.version].is_aspired
                   for v in versions)

    def _process_aspired_versions_request(self, name: str,
                                          versions: Sequence[ServableData[Loader]]) -> None:
        stream = self._harnesses.setdefault(name, {})
        wanted = {v.id.version for v in versions}
        for version, harness in stream.items():
            if harness.is_aspired and version not in wanted:
                _log.info("Setting is_aspired=false for %s", harness.id)
                harness.is_aspired = False
                harness.cancel_load_retry()
                if harness.id in self._loading:
                    # Nobody wants it any more: the wanted loads do not wait for it to end.
                    self._loading.discard(harness.id)
                    _log.info("The load of %s goes on without holding a load thread", harness.id)
        for data in versions:
            if data.id.version in stream:
                continue  # already managed (and aspired): the new Loader is not needed
            if data.ok:
                harness = LoaderHarness(
                    data.id, data.data,
                    max_num_load_retries=self._options.max_num_load_retries,
                    load_retry_interval_micros=self._options.load_retry_interval_micros,
                    sleep=self._options.sleep,
                    on_retry=self._retry_publisher(data.id))
                stream[data.id.version] = harness
                self._publish_state(harness.id, ManagerState.START)
            else:
                harness = LoaderHarness(data.id, None, error=data.error)
                stream[data.id.version] = harness
                _log.error("Aspired version %s has an error: %s", data.id, data.error)
                self._publish_state(harness.id, ManagerState.END, data.error)
        if not stream:
            del self._harnesses[name]

    def _retry_publisher(self, servable_id: ServableId) -> Callable[[ServingError], None]:
        """Publishes LOADING with the error of an attempt that is about to be retried, so the
        status API says why the version is not available yet (it stays LOADING)."""

        def publish(error: ServingError) -> None:
            self._publish_state(servable_id, ManagerState.LOADING, error)

        return publish

    def _flush_servables(self) -> None:
        """Forgets versions that are no longer aspired and are done (or never started)."""
        with self._lock:
            for name in list(self._harnesses):
                stream = self._harnesses[name]
                for version in list(stream):
                    harness = stream[version]
                    if harness.is_aspired or harness.id in self._in_flight:
                        continue
                    if harness.state == HarnessState.NEW:
                        del stream[version]
                        self._publish_state(harness.id, ManagerState.END)
                    elif harness.state in END_STATES:
                        del stream[version]
                if not stream:
                    del self._harnesses[name]

    # --- policy and actions ------------------------------------------------------------------

    def _get_next_action(self) -> ServableAction | None:
        """The next action over all streams; unloads first, as they free resources."""
        with self._lock:
            actions = []
            for name in sorted(self._harnesses):
                stream = self._harnesses[name]
                snapshot = [AspiredServableStateSnapshot(h.id, h.state, h.is_aspired)
                            for _, h in sorted(stream.items())]
                action = self._policy.get_next_action(snapshot)
                if action is not None:
                    actions.append(action)
            if not actions:
                return None
            actions.sort(key=lambda a: (a.action != Action.UNLOAD, a.id))
            return actions[0]

    def _perform_action(self, action: ServableAction) -> bool:
        """Starts (or, without load threads / an unload pool, runs) the action; False if a load
        has to wait."""
        with self._lock:
            harness = self._harnesses[action.id.name][action.id.version]
            if action.action == Action.LOAD:
                threads = self._num_load_threads
                if threads and len(self._loading) >= threads:
                    return False  # a load thread ending wakes the manager
                if not self._reserve_resources(harness):
                    return harness.state != HarnessState.NEW
                harness.state = HarnessState.LOAD_APPROVED
                self._in_flight.add(harness.id)
                if threads:
                    self._loading.add(harness.id)
                    threading.Thread(target=self._load, args=(harness,), daemon=True,
                                     name=f"tfsfast_load_{harness.id.name}").start()
                    return True
                executor = None
                work: Callable[[LoaderHarness], None] = self._load
            else:
                harness.state = HarnessState.UNLOAD_REQUESTED
                self._publish_state(harness.id, ManagerState.UNLOADING)
                # Stop handing the version out now; the unload waits for the handles to go.
                harness.state = HarnessState.QUIESCING
                # No local keeps the entry: the unload waits for its last reference to go.
                work = self._make_unload(self._published.pop(harness.id, None))
                self._update_handle_table()
                executor = self._unload_executor
                self._in_flight.add(harness.id)
        if executor is None:
            work(harness)
        else:
            future: Future = executor.submit(work, harness)
            future.add_done_callback(lambda f: self._wake.set())
        return True

    def _reserve_resources(self, harness: LoaderHarness) -> bool:
        """Reserves the version's estimate; False if the load must wait or was refused."""
        try:
            estimate = dict(harness.loader.estimate_resources()) if harness.loader else {}
        except Exception as e:
            self._fail(harness, ServingError(Code.UNKNOWN,
                                             f"Error while estimating resources: {e}"))
            return False
        if self._resources is None or self._resources.reserve(estimate):
            harness.resources = estimate
            return True
        if self._in_flight:
            # Something is still loading or unloading; it may free what this load needs.
            harness.state = HarnessState.NEW
            return False
        self._fail(harness, ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"Insufficient resources to load servable {harness.id}: it needs {estimate}, "
            f"in use {self._resources.used}"))
        return False

    def _fail(self, harness: LoaderHarness, error: ServingError) -> None:
        harness.state, harness.status = HarnessState.ERROR, error
        _log.error("Servable %s cannot be loaded: %s", harness.id, error)
        self._publish_state(harness.id, ManagerState.END, error)

    def _load(self, harness: LoaderHarness) -> None:
        self._publish_state(harness.id, ManagerState.LOADING)
        _log.info("Loading servable version %s", harness.id)
        harness.load()
        with self._lock:
            self._in_flight.discard(harness.id)
            self._loading.discard(harness.id)
            if harness.state == HarnessState.READY:
                assert harness.loader is not None  # a READY harness holds its loader
                self._published[harness.id] = ServingEntry(harness.id,
                                                           harness.loader.servable())
                self._update_handle_table()
                _log.info("Successfully loaded servable version %s", harness.id)
                self._publish_state(harness.id, ManagerState.AVAILABLE)
            else:
                if self._resources is not None:
                    self._resources.release(harness.resources)
                self._publish_state(harness.id, ManagerState.END, harness.status)
        self._wake.set()

    def _make_unload(self, entry: ServingEntry | None) -> Callable[[LoaderHarness], None]:
        released = threading.Event()
        if entry is not None:
            weakref.finalize(entry, released.set)
        else:
            released.set()
        del entry  # only the handles (and the finalizer's weak reference) remain

        def unload(harness: LoaderHarness) -> None:
            self._wait_for_release(harness.id, released)
            harness.state = HarnessState.QUIESCED
            _log.info("Unloading servable version %s", harness.id)
            harness.unload()
            with self._lock:
                self._in_flight.discard(harness.id)
                if self._resources is not None:
                    self._resources.release(harness.resources)
                self._publish_state(harness.id, ManagerState.END)
            _log.info("Done unloading servable version %s", harness.id)
            self._wake.set()

        return unload

    def _wait_for_release(self, servable_id: ServableId, released: threading.Event) -> None:
        """Waits until no request holds a handle to the version any more."""
        waited = 0.0
        while not released.wait(1.0):
            waited += 1.0
            # A handle kept alive only by a reference cycle (an exception's traceback, say)
            # is freed by the cycle collector; run it rather than wait for its next pass.
            import gc

            gc.collect()
            if waited == self._options.unload_wait_warning_seconds:
                _log.warning("Unload of %s is waiting for in-flight requests to finish",
                             servable_id)

    def _wait_for_in_flight(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.005)

    # --- publishing --------------------------------------------------------------------------

    def _update_handle_table(self) -> None:
        by_name: dict[str, list[ServingEntry]] = {}
        for servable_id, entry in self._published.items():
            by_name.setdefault(servable_id.name, []).append(entry)
        self._table.update(by_name)

    def _publish_state(self, servable_id: ServableId, state: ManagerState,
                       error: ServingError | None = None) -> None:
        self._bus.publish(ServableState(servable_id, state, error))

    def _run(self) -> None:
        interval = self._options.manage_state_interval_micros / 1e6
        while not self._stopped.is_set():
            try:
                self.manage_state()
            except Exception:  # the manager thread must survive any one bad round
                _log.exception("manage_state failed")
            self._wake.wait(interval if interval > 0 else None)
            self._wake.clear()
