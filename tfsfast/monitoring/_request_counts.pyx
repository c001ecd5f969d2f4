# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled request counts; the same contract as ``_request_counts_py`` (its twin).

What differs is how (see the twin for why): an ``OkCounts`` is a C count, a C histogram over a
C copy of the latency samplers' limits and a C sum, and the compiled fast paths call ``record`` as
a C method with a start taken from the C clock, so a request costs no Python call and no
object. Every ``RequestCounts`` made is kept (its counts must not vanish from a counter) and
summed into the DEFAULT registry's ``request_count``, ``request_latency`` and
``runtime_latency`` at each collection (``register_partial``).
"""

import threading

from libc.time cimport timespec
from posix.time cimport clock_gettime, CLOCK_MONOTONIC

from tfsfast.monitoring.collection_registry import DEFAULT, Point, sum_values
from tfsfast.monitoring.metrics import HistogramValue
from tfsfast.monitoring.serving_metrics import REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY
from tfsfast.util.status import Code

__all__ = ["OkCounts", "RequestCounts", "now_ns"]

_LIMITS = REQUEST_LATENCY.bucket_limits
# One copy of the limits serves both samplers (TF Serving gives them the same buckets).
assert RUNTIME_LATENCY.bucket_limits == _LIMITS
cdef double _limits[MAX_BUCKETS]
cdef int _nlimits = len(_LIMITS)
if _nlimits > MAX_BUCKETS:
    raise ImportError(f"request_latency has {_nlimits} buckets; at most {MAX_BUCKETS} are kept")
for _i, _limit in enumerate(_LIMITS):
    _limits[_i] = _limit


cdef long long monotonic_ns() noexcept nogil:
    # The clock of time.monotonic_ns, which the twin reads.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


cpdef long long now_ns() noexcept:
    """A request's start, for ``OkCounts.record``."""
    return monotonic_ns()


cdef class OkCounts:
    """The OK requests of one (model, API): a count and their latencies' histogram."""

    def __cinit__(self):
        cdef int i
        for i in range(MAX_BUCKETS):
            self.buckets[i] = 0

    cpdef void record(self, long long start) noexcept:
        """One request answered OK, begun at ``start`` (``now_ns()``)."""
        self.record_elapsed(monotonic_ns() - start)

    cpdef void record_elapsed(self, long long nanoseconds) noexcept:
        """One that took ``nanoseconds``."""
        cdef long long usec = nanoseconds // 1000
        cdef double value = <double>usec
        # bisect_right: the first limit above the value; the last bucket takes the rest.
        cdef int lo = 0, hi = _nlimits, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if value < _limits[mid]:
                hi = mid
            else:
                lo = mid + 1
        if lo >= _nlimits:
            lo = _nlimits - 1
        self.buckets[lo] += 1
        self.count += 1
        self.total += value

    def bucket_counts(self):
        return tuple(self.buckets[i] for i in range(_nlimits))


cdef class RequestCounts:
    """One answering thread's counts (see the twin's module docstring)."""

    def __init__(self, str entrypoint):
        self.entrypoint = entrypoint
        self._ok = {}
        self._errors = {}
        self._runtime = {}
        with _lock:
            _all.append(self)

    cpdef OkCounts ok_counts(self, str model_name, str api):
        key = (model_name, api)
        counts = self._ok.get(key)
        if counts is None:
            counts = self._ok.setdefault(key, OkCounts())
        return counts

    cpdef OkCounts runtime_counts(self, str model_name, str api):
        key = (model_name, api)
        counts = self._runtime.get(key)
        if counts is None:
            counts = self._runtime.setdefault(key, OkCounts())
        return counts

    cpdef error(self, str model_name, int code):
        key = (model_name, Code(code).name)
        self._errors[key] = self._errors.get(key, 0) + 1

    def count_points(self):
        """``request_count``'s points (summed over APIs; the collection sums across
        instances)."""
        cdef OkCounts ok
        counts = {}
        for (model_name, _), ok in list(self._ok.items()):
            counts[(model_name, "OK")] = counts.get((model_name, "OK"), 0) + ok.count
        for labels, n in list(self._errors.items()):
            counts[labels] = counts.get(labels, 0) + n
        return [Point(labels, n) for labels, n in counts.items()]

    def latency_points(self):
        cdef OkCounts ok
        points = []
        for (model_name, api), ok in list(self._ok.items()):
            if ok.count:
                points.append(Point((model_name, api, self.entrypoint),
                                    HistogramValue(_LIMITS, ok.bucket_counts(), ok.total)))
        return points

    def runtime_points(self):
        cdef OkCounts run
        points = []
        for (model_name, api), run in list(self._runtime.items()):
            if run.count:
                points.append(Point((model_name, api, "TF1"),
                                    HistogramValue(_LIMITS, run.bucket_counts(), run.total)))
        return points


_lock = threading.Lock()
_all = []


def _summed(points_of):
    with _lock:
        instances = list(_all)
    merged = {}
    for instance in instances:
        for point in getattr(instance, points_of)():
            merged[point.labels] = sum_values(merged.get(point.labels), point.value)
    return [Point(labels, value) for labels, value in merged.items()]


DEFAULT.register_partial(REQUEST_COUNT.descriptor.name, lambda: _summed("count_points"))
DEFAULT.register_partial(REQUEST_LATENCY.descriptor.name, lambda: _summed("latency_points"))
DEFAULT.register_partial(RUNTIME_LATENCY.descriptor.name, lambda: _summed("runtime_points"))
