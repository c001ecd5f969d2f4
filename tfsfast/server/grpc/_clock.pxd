# The clocks of Python's time.time and time.perf_counter, read in C (for _fast_unary and
# _predict_fast_path; nothing to import: the functions are inline).

from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec


cdef inline double _seconds(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline double wall_time() noexcept nogil:
    """``time.time()``."""
    return _seconds(CLOCK_REALTIME)


cdef inline double perf_counter() noexcept nogil:
    """``time.perf_counter()`` (CLOCK_MONOTONIC on Linux)."""
    return _seconds(CLOCK_MONOTONIC)
