# Compiled request counts: declarations for the compiled request paths, which record in C. See
# _request_counts.pyx; _request_counts_py.py is the pure-Python twin.

cdef enum:
    MAX_BUCKETS = 64


cdef long long monotonic_ns() noexcept nogil
cpdef long long now_ns() noexcept


cdef class OkCounts:
    cdef readonly long long count
    cdef long long buckets[MAX_BUCKETS]
    cdef readonly double total

    cpdef void record(self, long long start) noexcept
    cpdef void record_elapsed(self, long long nanoseconds) noexcept


cdef class RequestCounts:
    cdef readonly str entrypoint
    cdef dict _ok
    cdef dict _errors
    cdef dict _runtime

    cpdef OkCounts ok_counts(self, str model_name, str api)
    cpdef OkCounts runtime_counts(self, str model_name, str api)
    cpdef error(self, str model_name, int code)
