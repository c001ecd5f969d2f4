"""``ServerCore``: the serving pipeline behind both APIs, built from a ``ModelServerConfig``.

FileSystemStoragePathSource (polls base paths) → SavedModelBundleSourceAdapter (path → Loader)
→ AspiredVersionsManager (→ ServableStateMonitor for status). ``reload_config`` applies a new
model list; ``get_servable_handle`` resolves a model spec (name + version | label | latest) to a
handle on the request path.

A reload either applies or fails, within a bound, and a failed reload changes nothing: see
``reload_config``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tfsfast.core.aspired_version_policy import AspiredVersionPolicy
from tfsfast.core.aspired_versions_manager import (
    AspiredVersionsManager,
    AspiredVersionsManagerOptions,
)
from tfsfast.core.availability_preserving_policy import AvailabilityPreservingPolicy
from tfsfast.core.event_bus import EventBus
from tfsfast.core.resources import RAM, ResourceTracker
from tfsfast.core.servable_handle import ServableHandle
from tfsfast.core.servable_request import ServableRequest
from tfsfast.core.servable_state import ManagerState, ServableState
from tfsfast.core.servable_state_monitor import ServableStateMonitor
from tfsfast.core.target import connect_source_to_target
from tfsfast.servables.saved_model_bundle_factory import (
    SavedModelBundleFactory,
    SessionBundleConfig,
)
from tfsfast.servables.saved_model_bundle_source_adapter import SavedModelBundleSourceAdapter
from tfsfast.server import model_config as mc
from tfsfast.sources.file_system_storage_path_source import (
    FileSystemStoragePathSource,
    FileSystemStoragePathSourceConfig,
    ServableToMonitor,
    check_base_path,
)
from tfsfast.sources.servable_version_policy import ServableVersionPolicy
from tfsfast.storage.model_cache import ModelCache
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)


@dataclass
class ServerCoreOptions:
    """What the server core is built with (TF Serving's ``ServerCore::Options``)."""

    model_server_config: Any = None  # ModelServerConfig; may be set later via reload_config
    file_system_poll_wait_seconds: int = 30
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    num_load_threads: int = 0
    num_unload_threads: int = 0
    num_initial_load_threads: int = 4 * (os.cpu_count() or 1)
    allow_version_labels: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    total_model_memory_limit_bytes: int | None = None
    aspired_version_policy: Callable[[], AspiredVersionPolicy] = AvailabilityPreservingPolicy
    session_bundle_config: SessionBundleConfig = field(default_factory=SessionBundleConfig)
    # How long a reload (any config after the first) may take, waiting for its new models
    # included, before it fails and the previous config stays in force (the server's
    # --reload_config_timeout_seconds; TF Serving's servable_state_waiter_timeout, which waits for
    # ever by default). None waits for ever. The first config waits for ever, as TF Serving's
    # startup does.
    reload_config_timeout_seconds: float | None = 600.0
    manage_state_interval_micros: int = 100_000
    # Where versions on object stores (gs://, s3://) are downloaded before they load; None:
    # $TFSFAST_MODEL_CACHE_DIR, else <temp dir>/tfsfast-model-cache (see ModelCache).
    model_cache_dir: str | None = None


SHUTTING_DOWN = "Config reload not applied: the server is shutting down"


class ServerCore:
    """Owns the lifecycle components; thread-safe.

    ``create`` blocks until every configured model has an AVAILABLE version (or fails with the
    versions that did not load), as TF Serving's startup does.

    Loads after the first config run on load threads, ``num_load_threads`` of them (at least one:
    TF Serving's 0, "in the manager thread", loads one at a time here too, but a load that never
    returns cannot stop the manager from unloading, or from loading what a later reload asks for).
    """

    def __init__(self, options: ServerCoreOptions) -> None:
        self.options = options
        self.event_bus: EventBus[ServableState] = EventBus()
        self.servable_state_monitor = ServableStateMonitor(self.event_bus, 1000)
        tracker = (ResourceTracker({RAM: options.total_model_memory_limit_bytes})
                   if options.total_model_memory_limit_bytes else None)
        self.manager = AspiredVersionsManager(AspiredVersionsManagerOptions(
            manage_state_interval_micros=options.manage_state_interval_micros,
            aspired_version_policy=options.aspired_version_policy(),
            num_load_threads=options.num_initial_load_threads,
            num_unload_threads=options.num_unload_threads,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            resource_tracker=tracker,
            servable_event_bus=self.event_bus))
        self.bundle_factory = SavedModelBundleFactory(options.session_bundle_config)
        self.model_cache = ModelCache(options.model_cache_dir)
        self._adapter = SavedModelBundleSourceAdapter(self.bundle_factory, self.model_cache)
        connect_source_to_target(self._adapter, self.manager)
        self._source: FileSystemStoragePathSource | None = None
        self._config = mc.ModelServerConfig()
        # model name -> label -> version; replaced whole, read without a lock.
        self._labels: dict[str, dict[str, int]] = {}
        # Reloads take turns (_reloading). _reload_cv also counts servable state events
        # (_state_events) and records, for the reload under way, the states of the models it
        # adds (_added_states) from the moment it starts: TF Serving's fresh
        # ServableStateMonitor, so that what earlier configs left in the server's monitor
        # (an unload, an old failure) does not count. Never held while calling the manager, the
        # source or the bus: the bus delivers events to it with their locks held.
        self._reload_cv = threading.Condition()
        self._reloading = False
        self._reloads_stopped = False
        self._state_events = 0
        self._added_states: dict[str, dict[int, ServableState]] = {}
        self.event_bus.subscribe(self._on_servable_state)
        # Called with each config put in force; _config changes under the lock, so a listener
        # added at any moment sees every config from the one in force then.
        self._config_listeners_lock = threading.Lock()
        self._config_listeners: list[Callable[[Any], None]] = []

    @classmethod
    def create(cls, options: ServerCoreOptions) -> ServerCore:
        core = cls(options)
        try:
            if options.model_server_config is not None:
                core.reload_config(options.model_server_config)
            core.manager.set_num_load_threads(max(1, options.num_load_threads))
        except BaseException:
            core.stop()
            raise
        return core

    # --- config ----------------------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self._config

    def reload_config(self, new_config: Any, timeout: float | None = None) -> None:
        """Applies a new ModelServerConfig (TF Serving's ``ReloadConfig``), or fails and leaves
        the config in force as it was.

        The first config is TF Serving's startup: it is applied, and this call waits (for ever)
        until every model has an AVAILABLE version.

        Later configs apply all or nothing. Models the new list drops are unloaded and models it
        changes follow their new entry, as in TF Serving; models it adds are loaded first, while
        the previous config stays in force, and the new config is applied only once each of them
        has an AVAILABLE version. The call returns when the new config is in force (``config``,
        V2 readiness) and what it dropped no longer answers. (A model it adds answers requests
        as soon as it has loaded, as in TF Serving, even before the reload is over.) It fails,
        with the previous config still in force and every model it adds unloaded again, when:

        - a model it adds, or whose base path it changes, names a base path that cannot be listed:
          INVALID_ARGUMENT ``Could not find base path <p> for servable <m> with error <e>`` (TF
          Serving's text), at once, before anything changes;
        - a model it adds fails to load: UNKNOWN ``N model(s) did not become available:
          {{{name: m version: v} due to error: <status>}, }`` (TF Serving's text);
        - a model it adds has no AVAILABLE version when ``reload_config_timeout_seconds`` (or
          ``timeout``, the caller's deadline, if shorter) has passed: the same UNKNOWN text, each
          model with what it was still doing (``{name: m version: v} did not finish loading``,
          ``{m: no version found under base path <p>``) and the bound;
        - the server is shutting down (``stop_reloading``): UNAVAILABLE ``Config reload not
          applied: the server is shutting down``;
        - the config itself is invalid (the validation errors, as TF Serving's).

        TF Serving instead applies the config before waiting, for ever, for the new models: a
        missing base path wedges it, and a failure leaves the failed models in the config. Here
        a failed reload's models keep, in the status API, the state they reached (END with the
        load error, or LOADING for a load that has not returned: TensorFlow cannot cancel it).

        Reloads run one at a time; one that cannot start before its deadline fails with
        DEADLINE_EXCEEDED.
        """
        deadline, within = self._reload_bound(timeout)
        with self._reload_turn(deadline):
            if self._source is None:
                self._apply_first_config(new_config)
            else:
                self._reload(new_config, deadline, within)

    def edit_config(self, edits: Callable[[Any], Iterable[Any]],
                    timeout: float | None = None) -> None:
        """Applies the configs ``edits(config in force)`` yields, each as ``reload_config``
        applies a config, in one reload turn: no other reload (a gRPC ReloadConfig, a poll of
        the config file) runs between reading the config in force and the last edit, so an edit
        is never lost to one that raced it.

        ``edits`` gets a copy of the config in force and yields each next config after the one
        before has been applied (a failed one ends the turn with its error; the ones before it
        stay applied); it runs on this thread, within the turn. ``timeout`` bounds the whole
        turn, as ``reload_config``'s.
        """
        deadline, within = self._reload_bound(timeout)
        with self._reload_turn(deadline):
            current = mc.ModelServerConfig()
            current.CopyFrom(self._config)
            for new_config in edits(current):
                if self._source is None:
                    self._apply_first_config(new_config)
                else:
                    self._reload(new_config, deadline, within)

    def _reload_bound(self, timeout: float | None) -> tuple[float | None, str]:
        """The deadline of a reload the caller bounds by ``timeout``, and how its errors name
        the bound."""
        bound = self.options.reload_config_timeout_seconds
        if timeout is not None and (bound is None or timeout < bound):
            bound, within = max(0.0, timeout), "the caller's deadline"
        else:
            within = f"the reload timeout of {bound:g} s"
        return (None if bound is None else time.monotonic() + bound), within

    def stop_reloading(self, wait_seconds: float = 0.0) -> None:
        """Fails the reload under way (after it has rolled back) and every later one with
        UNAVAILABLE: the server is shutting down. Waits up to ``wait_seconds`` for the reload
        under way to finish its rollback. Idempotent; any thread."""
        deadline = time.monotonic() + wait_seconds
        with self._reload_cv:
            self._reloads_stopped = True
            self._reload_cv.notify_all()
            while self._reloading and time.monotonic() < deadline:
                self._reload_cv.wait(deadline - time.monotonic())

    @contextlib.contextmanager
    def _reload_turn(self, deadline: float | None) -> Iterator[None]:
        """Waits for the reload under way to end, then holds the turn for this one."""
        with self._reload_cv:
            while self._reloading and not self._reloads_stopped:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ServingError(Code.DEADLINE_EXCEEDED,
                                       "Config reload not applied: the reload before it was "
                                       "still under way at its deadline")
                self._reload_cv.wait(remaining)
            if self._reloads_stopped:
                raise ServingError(Code.UNAVAILABLE, SHUTTING_DOWN)
            self._reloading = True
        try:
            yield
        finally:
            with self._reload_cv:
                self._reloading = False
                self._added_states = {}
                self._reload_cv.notify_all()

    def _check_transition(self, new_config: Any) -> str | None:
        """The config kind, after TF Serving's checks; None for an empty config."""
        kind = new_config.WhichOneof("config")
        if kind == "custom_model_config":
            raise ServingError(Code.UNIMPLEMENTED,
                               "ModelServer does not yet support custom model config.")
        if (self._source is not None and self._config.WhichOneof("config") != kind
                and kind is not None):
            raise ServingError(
                Code.FAILED_PRECONDITION,
                "Cannot transition to requested config. It is only legal to transition from "
                "one ModelConfigList to another.")
        if kind is None:
            _log.info("Taking no action for empty config.")
            return None
        mc.validate_model_config_list(new_config)
        if self._source is not None:
            mc.validate_no_models_change_platforms(self._config, new_config)
        return kind

    def _apply_first_config(self, new_config: Any) -> None:
        if self._check_transition(new_config) is None:
            return
        self._labels = self._model_version_label_map(new_config)
        self._put_in_force(new_config)
        _log.info("Adding/updating models.")
        self._source = FileSystemStoragePathSource.create(
            self._storage_path_source_config(new_config.model_config_list.config))
        connect_source_to_target(self._source, self._adapter)
        self._wait_until_models_available(
            [m.name for m in new_config.model_config_list.config], "servable")
        _log.info("Finished adding/updating models")

    def _reload(self, new_config: Any, deadline: float | None, within: str) -> None:
        if self._check_transition(new_config) is None:
            return
        labels = self._model_version_label_map(new_config)
        old_models = {m.name: m for m in self._config.model_config_list.config}
        new_models = list(new_config.model_config_list.config)
        for model in new_models:
            old = old_models.get(model.name)
            if old is None or old.base_path != model.base_path:
                check_base_path(model.name, model.base_path)
        added = [m for m in new_models if m.name not in old_models]
        dropped = [name for name in old_models if name not in {m.name for m in new_models}]
        assert self._source is not None
        _log.info("Adding/updating models.")
        if added:
            with self._reload_cv:
                self._added_states = {m.name: {} for m in added}
            # The previous config plus the models added: nothing served changes until they load.
            self._apply_source_config([*old_models.values(), *added])
            failure = self._wait_until_added_models_available(added, deadline, within)
            if failure is not None:
                _log.info("Reload failed; the previous config stays in force")
                self._apply_source_config(old_models.values())
                self._wait_until_not_served([m.name for m in added], deadline)
                raise failure
        self._apply_source_config(new_models)
        self._labels = labels
        self._put_in_force(new_config)
        self._wait_until_not_served(dropped, deadline)
        _log.info("Finished adding/updating models")

    def add_config_listener(self, listener: Callable[[Any], None]) -> None:
        """Calls ``listener(config)`` now with the config in force, then with each config a
        reload puts in force, from the reloading thread. A listener must return at once (a
        reload waits for it) and not call back into the core."""
        with self._config_listeners_lock:
            self._config_listeners.append(listener)
            listener(self._config)

    def _put_in_force(self, config: Any) -> None:
        with self._config_listeners_lock:
            self._config = config
            for listener in self._config_listeners:
                try:
                    listener(config)
                except Exception:  # the config is in force whatever a listener does
                    _log.exception("A model config listener failed")

    def _apply_source_config(self, models: Iterable[Any]) -> None:
        assert self._source is not None
        self._source.update_config(self._storage_path_source_config(models))
        # Apply the change now rather than at the next poll (which, with a poll wait of 0,
        # would never come).
        self._source.poll_file_system_and_invoke_callback()

    def _storage_path_source_config(self, models: Iterable[Any]
                                    ) -> FileSystemStoragePathSourceConfig:
        servables = []
        for model in models:
            _log.info(" (Re-)adding model: %s", model.name)
            servables.append(ServableToMonitor(
                servable_name=model.name, base_path=model.base_path,
                version_policy=ServableVersionPolicy.from_proto(model.model_version_policy)))
        return FileSystemStoragePathSourceConfig(
            servables=servables,
            file_system_poll_wait_seconds=self.options.file_system_poll_wait_seconds,
            # A failing object-store listing backs off as a failing load does.
            listing_retry_max_seconds=self.options.load_retry_interval_micros / 1e6)

    # --- waiting -----------------------------------------------------------------------------

    def _on_servable_state(self, state: ServableState) -> None:
        with self._reload_cv:
            self._state_events += 1
            versions = self._added_states.get(state.id.name)
            if versions is not None:
                versions[state.id.version] = state
            self._reload_cv.notify_all()

    def _wait_for(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Waits until ``done()`` (evaluated after each servable state event, without
        ``_reload_cv``), the deadline, or ``stop_reloading``; returns ``done()``'s last value."""
        while True:
            with self._reload_cv:
                seen = self._state_events
            if done():
                return True
            with self._reload_cv:
                while self._state_events == seen and not self._reloads_stopped:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._reload_cv.wait(remaining)
                if self._reloads_stopped:
                    return False

    def _added_model_outcome(self, name: str) -> tuple[bool, list[ServableState]]:
        """(settled, the failed versions) for a model the reload under way adds.

        Settled once a version is AVAILABLE (no failures), or once every version seen has ended
        and one of them with an error. A version that ended without an error is an unload (of
        an earlier config's version) and settles nothing.
        """
        with self._reload_cv:
            states = list(self._added_states.get(name, {}).values())
        if any(s.manager_state is ManagerState.AVAILABLE for s in states):
            return True, []
        failed = [s for s in states if s.manager_state is ManagerState.END and s.health]
        if failed and all(s.manager_state is ManagerState.END for s in states):
            return True, failed
        return False, []

    def _wait_until_added_models_available(self, added: list[Any], deadline: float | None,
                                           within: str) -> ServingError | None:
        """None once every added model has an AVAILABLE version; otherwise the reload's error."""
        names = sorted(m.name for m in added)
        self._wait_for(lambda: all(self._added_model_outcome(n)[0] for n in names), deadline)
        with self._reload_cv:
            if self._reloads_stopped:
                return ServingError(Code.UNAVAILABLE, SHUTTING_DOWN)
        base_paths = {m.name: m.base_path for m in added}
        parts = []
        for name in names:
            settled, failed = self._added_model_outcome(name)
            if settled:
                parts += [f"{{{s.id} due to error: {s.health}}}, "
                          for s in sorted(failed, key=lambda s: s.id)]
            else:
                parts.append(f"{{{self._pending_model(name, base_paths[name], within)}}}, ")
        if not parts:
            return None
        return ServingError(Code.UNKNOWN, f"{len(parts)} model(s) did not become available: "
                                          f"{{{''.join(parts)}}}")

    def _pending_model(self, name: str, base_path: str, within: str) -> str:
        """What an added model was still doing at the deadline, from the server's monitor (a
        load from an earlier reload that has not returned counts: this one waits behind it)."""
        live = self.servable_state_monitor.get_live_servable_states().get(name, {})
        if not live:
            return f"{name}: no version found under base path {base_path} within {within}"
        state = live[max(live)].state
        if state.manager_state is ManagerState.LOADING:
            return f"{state.id} did not finish loading within {within}"
        if state.manager_state is ManagerState.START:
            return f"{state.id} did not start loading within {within}"
        return (f"{state.id} was still being unloaded (from an earlier config) at the end of "
                f"{within}")

    def _wait_until_not_served(self, names: list[str], deadline: float | None) -> None:
        """Waits until no version of ``names`` answers requests (bounded by the deadline: the
        manager may be busy with another version's unload)."""
        if not names:
            return
        wanted = set(names)

        def done() -> bool:
            return not any(sid.name in wanted
                           for sid in self.manager.list_available_servable_ids())

        if not self._wait_for(done, deadline):
            _log.info("Models %s are being unloaded", ", ".join(sorted(wanted)))

    def _wait_until_models_available(self, names: list[str], noun: str) -> None:
        """The first config's wait: for ever, as TF Serving's startup."""
        if not names:
            return
        requests = [ServableRequest.latest(n) for n in names]
        ok, states = self.servable_state_monitor.wait_until_servables_reach_state(
            requests, ManagerState.AVAILABLE)
        if ok:
            return
        failed = {sid: s for sid, s in states.items() if s != ManagerState.AVAILABLE}
        parts = []
        for sid in sorted(failed):
            state = self.servable_state_monitor.get_state(sid)
            error = f" due to error: {state.health}" if state and state.health else ""
            parts.append(f"{{{sid}{error}}}, ")
        raise ServingError(Code.UNKNOWN,
                           f"{len(failed)} {noun}(s) did not become available: "
                           f"{{{''.join(parts)}}}")

    def _model_version_label_map(self, config: Any) -> dict[str, dict[str, int]]:
        """The labels of ``config``, checked as TF Serving's ``UpdateModelVersionLabelMap``."""
        new_map: dict[str, dict[str, int]] = {}
        for model in config.model_config_list.config:
            states = self.servable_state_monitor.get_version_states(model.name)
            for label, version in model.version_labels.items():
                allow = False
                if self.options.allow_version_labels_for_unavailable_models:
                    existing = self._labels.get(model.name, {}).get(label)
                    allow = existing is None or existing == version
                state = states.get(version)
                if not allow and (state is None or
                                  state.state.manager_state != ManagerState.AVAILABLE):
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model.name}, "
                        f"which is not currently available for inference")
                new_map.setdefault(model.name, {})[label] = version
        if not self.options.allow_version_labels and new_map:
            raise ServingError(Code.FAILED_PRECONDITION,
                               "Model version labels are not currently allowed by the server.")
        return new_map

    # --- request path ----------------------------------------------------------------------

    def get_model_version_for_label(self, model_name: str, label: str) -> int:
        version = self._labels.get(model_name, {}).get(label)
        if version is None:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {label}")
        return version

    def servable_request(self, name: str, version: int | None = None,
                         label: str | None = None) -> ServableRequest:
        """The ServableRequest for a model spec: a version, a label, or the latest."""
        if version is not None:
            return ServableRequest.specific(name, version)
        if label is not None:
            return ServableRequest.specific(name, self.get_model_version_for_label(name, label))
        return ServableRequest.latest(name)

    def get_servable_handle(self, name: str, version: int | None = None,
                            label: str | None = None) -> ServableHandle:
        return self.manager.get_servable_handle(self.servable_request(name, version, label))

    def has_model(self, name: str) -> bool:
        return any(m.name == name for m in self._config.model_config_list.config)

    # --- shutdown --------------------------------------------------------------------------

    def stop(self, timeout: float | None = 30.0) -> None:
        """Fails reloads (``stop_reloading``), stops polling and unloads every model (waiting up
        to ``timeout`` for requests; not for loads, which TensorFlow cannot cancel)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # The reload under way rolls back first, so that nothing it adds loads during the stop.
        # (Only the first config, at startup, can hold its turn longer: it waits for ever.)
        self.stop_reloading(wait_seconds=30.0 if timeout is None else timeout)
        if self._source is not None:
            self._source.stop()
        self.manager.stop(unload_all=True, timeout=None if deadline is None
                          else max(0.0, deadline - time.monotonic()))
        self.model_cache.close()
