# cython: language_level=3
"""The compiled ``RunCost``: the twin of ``_run_cost_py`` (same rules, constants and contract;
read its docstring). It exists because ``allows`` is asked on every batched request and a Python
frame there cost more than the decision itself; cimporting modules call it in C."""

import time

from libc.math cimport NAN, isnan

from tfsfast.util import _run_cost_py as _twin

IMPLEMENTATION = "compiled"

cdef double _SPIKE_FACTOR = _twin.SPIKE_FACTOR
cdef double _RISE = _twin.RISE
cdef double _PROBE_INTERVAL = _twin.PROBE_INTERVAL
cdef double _PROBE_SHARE = _twin.PROBE_SHARE
cdef double _STAY_FACTOR = _twin.STAY_FACTOR


cdef class RunCost:
    """The estimated seconds per run of one signature; see the twin."""

    def __init__(self, seconds=None):
        self._seconds = NAN if seconds is None else <double>seconds
        self._spiked = False
        self._next_probe = 0.0
        self._allowed = False

    @property
    def seconds(self):
        return None if isnan(self._seconds) else self._seconds

    @seconds.setter
    def seconds(self, value):
        self._seconds = NAN if value is None else <double>value

    cpdef add(self, double elapsed):
        cdef double cost = self._seconds
        if isnan(cost) or elapsed <= cost:
            self._seconds = elapsed
            self._spiked = False
            return None
        if elapsed > _SPIKE_FACTOR * cost and not self._spiked:
            self._spiked = True
            return None
        self._spiked = False
        self._seconds = cost + _RISE * (elapsed - cost)
        return None

    def timed(self, run, *args):
        """``run(*args)``, its wall time added to the estimate (nothing is added when it
        raises)."""
        # The clock through the module's ``time`` (once per run, not per request), so that tests
        # can drive it as they drive the twin's.
        cdef double start = time.perf_counter()
        result = run(*args)
        self.add(time.perf_counter() - start)
        return result

    cpdef bint below(self, double limit):
        return not isnan(self._seconds) and self._seconds < limit

    cpdef bint allows(self, double limit, object now=None):
        cdef double cost = self._seconds, at, due, next_probe, wait
        if isnan(cost):
            return False
        if cost < limit or (self._allowed and cost < _STAY_FACTOR * limit):
            self._allowed = True
            return True
        self._allowed = False
        at = time.monotonic() if now is None else <double>now
        due = self._next_probe
        wait = cost / _PROBE_SHARE
        next_probe = at + (wait if wait > _PROBE_INTERVAL else _PROBE_INTERVAL)
        if due == 0.0:  # the first decision over the limit: the first probe comes later
            self._next_probe = next_probe
            return False
        if at < due:
            return False
        self._next_probe = next_probe
        return True

    def __repr__(self):
        return f"RunCost({self.seconds!r})"
