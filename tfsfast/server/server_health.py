"""``ServerHealth``: whether one server process is live, ready, and ready for a given model.

The Open Inference Protocol (KServe V2) health API answers from here: REST ``/v2/health/live``,
``/v2/health/ready`` and ``/v2/models/<name>[/versions/<v>]/ready``. So does the draining state
that turns ``grpc.health.v1`` NOT_SERVING, so that REST readiness and gRPC health change together.

- Live: always true; the question is whether the process answers at all, and it does as long as
  a listener does (through the drain too).
- Ready: not draining, and every model of the ServerCore's ModelServerConfig in force has an
  AVAILABLE version. A reload puts its config in force only once every model it adds has an
  AVAILABLE version, and a reload that fails leaves the previous config in force
  (``ServerCore.reload_config``): a reload, under way or failed, never turns readiness off, and
  the models it adds are NOT_FOUND here until it succeeds (the status API meanwhile shows what
  their versions are doing).
- Model ready: not draining, and the model has an AVAILABLE version (or, with a version, that
  version is AVAILABLE). A model that is not in the current config, or a version the state
  monitor has never seen, is NOT_FOUND: an error, where "not ready" is an answer.

Draining starts once (``start_draining``, on SIGTERM) and never ends: the process exits after it.

Thread-safe: answers come from the REST loop and gRPC threads, the drain starts from a signal
handler; model states come from the ServerCore's ServableStateMonitor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tfsfast.core.servable_state import ManagerState
from tfsfast.core.servable_state_monitor import ServableStateAndTime
from tfsfast.server.server_core import ServerCore
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)


def _available(states: dict[int, ServableStateAndTime]) -> bool:
    return any(s.state.manager_state is ManagerState.AVAILABLE for s in states.values())


class ServerHealth:
    """Liveness and readiness of a server over its ServerCore, plus the draining state."""

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self._draining = threading.Event()
        self._lock = threading.Lock()
        self._draining_callbacks: list[Callable[[], None]] = []

    # --- draining ----------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def add_draining_callback(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once when draining starts (right away if it has started), on the
        thread that starts it, before ``start_draining`` returns."""
        with self._lock:
            if not self._draining.is_set():
                self._draining_callbacks.append(callback)
                return
        callback()

    def start_draining(self) -> bool:
        """Turns readiness off for good and runs the draining callbacks; False if it was off."""
        with self._lock:
            if self._draining.is_set():
                return False
            self._draining.set()
            callbacks, self._draining_callbacks = self._draining_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # One listener failing must not keep the others serving.
                _log.exception("A draining callback failed")
        return True

    # --- the V2 health questions ---------------------------------------------------------

    def is_server_live(self) -> bool:
        """True: a process that can run this answers requests (the V2 "server live")."""
        return True

    def is_server_ready(self) -> bool:
        """Not draining, and every configured model has an AVAILABLE version."""
        if self._draining.is_set():
            return False
        states = self._core.servable_state_monitor.get_all_servable_states()
        return all(_available(states.get(model.name, {}))
                   for model in self._core.config.model_config_list.config)

    def is_model_ready(self, name: str, version: int | None = None) -> bool:
        """Not draining, and the model (any version, or ``version``) is AVAILABLE.

        Raises NOT_FOUND ``Model with name <name> does not exist.`` (KServe's text) for a model
        outside the current config, and ``Could not find version <v> of model <name>`` (TF
        Serving's status text) for a version the server has not seen.
        """
        if not self._core.has_model(name):
            raise ServingError(Code.NOT_FOUND, f"Model with name {name} does not exist.")
        states = self._core.servable_state_monitor.get_version_states(name)
        if version is None:
            available = _available(states)
        else:
            state = states.get(version)
            if state is None:
                raise ServingError(Code.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            available = state.state.manager_state is ManagerState.AVAILABLE
        return available and not self._draining.is_set()
