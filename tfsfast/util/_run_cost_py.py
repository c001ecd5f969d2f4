"""``RunCost``: how long a signature's runs take, for deciding where the next one runs.

One source, built twice: imported as it is, this is the pure-Python ``_run_cost_py``; compiled by
Cython with the C declarations of ``_run_cost.pxd`` it is the extension module ``_run_cost``,
whose ``allows`` the compiled batching session calls in C on every batched request (a Python
frame there cost more than the decision). Import ``tfsfast.util.run_cost``, which picks one. The
contract and the constants live here; a change here changes both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tfsfast.util.run_cost import RunCostPolicy

_T = TypeVar("_T")

try:
    import cython
except ModuleNotFoundError:  # Cython builds the compiled module; this one runs without it
    IMPLEMENTATION = "python"
else:
    IMPLEMENTATION = "compiled" if cython.compiled else "python"

# A run this many times slower than the estimate is a spike: alone, it is taken for the machine
# (the thread was preempted, a page fault, a neighbour's burst), not for the model.
SPIKE_FACTOR = 4.0
# How far a slower run (not a spike) moves the estimate towards itself.
RISE = 0.1
# While the estimate is over the limit, one run is still let through to be measured where the
# cheap ones run (a probe), at most every PROBE_INTERVAL seconds and so that probes take at most
# PROBE_SHARE of the time.
PROBE_INTERVAL = 0.05
PROBE_SHARE = 0.01
# Once allowed, runs stay allowed until the estimate passes this many times the limit: a burst of
# preemptions that lifts a microsecond estimate a little must not send the runs to a thread, where
# each batch would wait up to the GIL's switch interval (5 ms) to be handed back.
STAY_FACTOR = 4.0


class RunCost:
    """The estimated seconds per run of one signature, robust to a busy machine.

    The event loop runs a signature itself only while this estimate is tiny (below the
    policy's ``inline_run_max_seconds``, the limit), so it must not be fooled by what a shared
    machine adds to a run's wall time: preemptions, and, for a run on a pool or batch thread,
    the wait for the GIL after it (the loop holds it while busy). Both only ever add time. So:

    - a faster run than the estimate becomes the estimate at once (the fastest recent runs say
      what a run costs);
    - a slower one moves it by ``RISE`` of the difference;
    - a run over ``SPIKE_FACTOR`` times the estimate is ignored when it comes alone; the second
      in a row counts. A model that really got slower (or much larger requests) moves the
      estimate by its second run; one preempted run does not send a microsecond signature to a
      thread;
    - yet runs on a thread under load all wait for the GIL, so none of them is faster than the
      estimate, and once a signature is sent there it would stay: ``allows`` lets a probe run
      where the cheap ones run now and then (``PROBE_INTERVAL``, ``PROBE_SHARE``), whose clean
      measurement brings the estimate down at once if the runs are in fact cheap;
    - and once allowed, runs stay allowed until the estimate passes ``STAY_FACTOR`` times the
      limit (hysteresis: noise near the limit does not flip them back and forth).

    ``seconds`` is the estimate, None until the first run (or a first estimate) gives one.

    Not locked: concurrent ``add`` calls may lose a sample, which only delays the estimate.
    """

    # The estimate is kept as a number and a flag rather than as None-or-a-number, so that the
    # compiled class holds it in a C double.
    __slots__ = ("_allowed", "_limit", "_measured", "_next_probe", "_seconds", "_spiked")

    def __init__(self, policy: RunCostPolicy, seconds: float | None = None) -> None:
        """``policy``: the limit (``inline_run_max_seconds``), read once; ``seconds``: a first
        estimate (None: the first run's time is taken as it is)."""
        self._limit = float(policy.inline_run_max_seconds)
        self._measured = seconds is not None
        self._seconds = 0.0 if seconds is None else float(seconds)
        self._spiked = False
        self._next_probe = 0.0
        self._allowed = False

    @property
    def seconds(self) -> float | None:
        return self._seconds if self._measured else None

    @seconds.setter
    def seconds(self, value: float | None) -> None:
        self._measured = value is not None
        self._seconds = 0.0 if value is None else float(value)

    def add(self, elapsed: float) -> None:
        cost = self._seconds
        if not self._measured or elapsed <= cost:
            self._seconds = elapsed
            self._measured = True
            self._spiked = False
            return
        if elapsed > SPIKE_FACTOR * cost and not self._spiked:
            self._spiked = True
            return
        self._spiked = False
        self._seconds = cost + RISE * (elapsed - cost)

    def timed(self, run: Callable[..., _T], *args: Any) -> _T:
        """``run(*args)``, its wall time added to the estimate (nothing is added when it
        raises)."""
        # The clock through the module's ``time`` (once per run, not per request), so that tests
        # can drive it.
        start = time.perf_counter()
        result = run(*args)
        self.add(time.perf_counter() - start)
        return result

    def below(self) -> bool:
        """Whether runs have been measured and are estimated at less than the limit."""
        return self._measured and self._seconds < self._limit

    def allows(self, now: float | None = None) -> bool:
        """Whether the next run may go where only cheap runs go: ``below()``, or a probe is due
        (then the next one is scheduled). ``now``: ``time.monotonic()`` (read here if None, only
        when a probe could be due)."""
        if not self._measured:
            return False
        cost = self._seconds
        limit = self._limit
        if cost < limit or (self._allowed and cost < STAY_FACTOR * limit):
            self._allowed = True
            return True
        self._allowed = False
        at = time.monotonic() if now is None else now
        due = self._next_probe
        next_probe = at + max(PROBE_INTERVAL, cost / PROBE_SHARE)
        if due == 0.0:  # the first decision over the limit: the first probe comes later
            self._next_probe = next_probe
            return False
        if at < due:
            return False
        self._next_probe = next_probe
        return True

    def __repr__(self) -> str:
        return f"RunCost({self.seconds!r})"
