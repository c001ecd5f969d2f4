# The clocks of ``time.monotonic()`` and ``time.time()``, read in C: no Python call and no float
# object per read. Inline, so there is nothing to import. On Linux ``time.perf_counter()`` reads
# the same clock as ``time.monotonic()`` (CLOCK_MONOTONIC), so durations use ``monotonic()`` too.

from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec


cdef inline double _seconds(int clock_id) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock_id, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline double monotonic() noexcept nogil:
    """``time.monotonic()``: the clock of deadlines, timeouts and durations."""
    return _seconds(CLOCK_MONOTONIC)


cdef inline double wall_time() noexcept nogil:
    """``time.time()``."""
    return _seconds(CLOCK_REALTIME)
