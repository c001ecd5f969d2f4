"""``LoaderHarness``: one Loader plus the state machine the manager moves it through."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

from tfsfast.core.loader import Loader
from tfsfast.core.servable_id import ServableId
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)


class HarnessState(enum.Enum):
    """TF Serving's ``LoaderHarness::State``, in the order a version normally moves through it."""

    NEW = "new"
    LOAD_REQUESTED = "load_requested"
    LOAD_APPROVED = "load_approved"
    LOADING = "loading"
    READY = "ready"
    UNLOAD_REQUESTED = "unload_requested"
    QUIESCING = "quiescing"
    QUIESCED = "quiesced"
    UNLOADING = "unloading"
    DISABLED = "disabled"  # unloaded; final
    ERROR = "error"        # failed to load; final


END_STATES = frozenset({HarnessState.DISABLED, HarnessState.ERROR})


def backoff_delay_seconds(attempt: int, cap_seconds: float) -> float:
    """Delay before retry ``attempt`` (1-based): exponential from 1 s, capped at ``cap_seconds``
    (0 or less: no delay). The load retries' backoff; object-store listings use it too."""
    if cap_seconds <= 0:
        return 0.0
    return min(cap_seconds, float(2 ** (min(attempt, 63) - 1)))


class LoaderHarness:
    """Wraps a Loader with its state, its aspired flag, and load retries.

    The manager owns the harness; state changes happen on manager-controlled threads and are
    published through ``on_state_change``. ``cancel_load_retry`` may be called from any thread: a
    version that stops being aspired while its load is being retried gives up at the next retry.
    """

    def __init__(self, servable_id: ServableId, loader: Loader | None,
                 error: ServingError | None = None, max_num_load_retries: int = 0,
                 load_retry_interval_micros: int = 0,
                 sleep: Callable[[float], Any] | None = None,
                 on_retry: Callable[[ServingError], Any] | None = None) -> None:
        self.id = servable_id
        self.loader = loader
        self.is_aspired = True
        self.state = HarnessState.NEW if error is None else HarnessState.ERROR
        self.status: ServingError | None = error
        self.max_num_load_retries = max(0, max_num_load_retries)
        self.load_retry_interval_micros = load_retry_interval_micros
        self._cancel = threading.Event()
        self._sleep = sleep
        # Called with the error of each failed attempt that will be retried, so that the
        # version's status shows why it is still loading (a download that failed, say).
        self._on_retry = on_retry
        self.resources: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"LoaderHarness({self.id}, {self.state.name}, aspired={self.is_aspired})"

    def cancel_load_retry(self) -> None:
        self._cancel.set()

    @property
    def load_retry_cancelled(self) -> bool:
        return self._cancel.is_set()

    def retry_delay_seconds(self, attempt: int) -> float:
        """Delay before retry ``attempt`` (1-based): exponential from 1 s, capped at the interval.

        TF Serving waits the full interval (60 s by default) before every retry, so a broken
        model takes five minutes to report; doubling from one second up to the same cap reports in
        about half a minute and never waits longer than the configured interval.
        """
        return backoff_delay_seconds(attempt, self.load_retry_interval_micros / 1e6)

    def load(self) -> None:
        """Runs the Loader's load with retries; ends READY, or ERROR with ``status`` set."""
        assert self.loader is not None
        self.state = HarnessState.LOADING
        attempt = 0
        while True:
            try:
                self.loader.load_with_metadata(Loader.Metadata(self.id))
            except Exception as e:
                err = e if isinstance(e, ServingError) else ServingError(
                    Code.UNKNOWN, f"{type(e).__name__}: {e}")
                _log.error("Loading servable: %s failed: %s", self.id, err)
                if attempt >= self.max_num_load_retries or self.load_retry_cancelled:
                    if self.load_retry_cancelled and attempt < self.max_num_load_retries:
                        _log.info("Load retry cancelled for servable: %s", self.id)
                    self.state, self.status = HarnessState.ERROR, err
                    return
                attempt += 1
                if self._on_retry is not None:
                    self._on_retry(err)
                delay = self.retry_delay_seconds(attempt)
                _log.info("Retrying load on servable version: %s retry: %d in %.1f s",
                          self.id, attempt, delay)
                if self._sleep is not None:
                    self._sleep(delay)
                elif self._cancel.wait(delay):
                    self.state, self.status = HarnessState.ERROR, err
                    return
                continue
            self.state = HarnessState.READY
            return

    def unload(self) -> None:
        assert self.loader is not None
        self.state = HarnessState.UNLOADING
        try:
            self.loader.unload()
        except Exception:
            _log.exception("Unloading servable %s failed", self.id)
        self.state = HarnessState.DISABLED
