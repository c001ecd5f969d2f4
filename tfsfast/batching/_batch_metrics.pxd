# The C declarations that make _batch_metrics_py.py, the one source of BatchMetrics (its
# contract is there), the compiled module tfsfast.batching._batch_metrics: Cython compiles that
# file with these declarations (pure Python mode). The compiled batching session cimports
# BatchMetrics and calls record_run in C.

import cython

cdef tuple _QUEUING_LIMITS
cdef tuple _SIZE_LIMITS


@cython.locals(low=Py_ssize_t, high=Py_ssize_t, middle=Py_ssize_t, limit=double)
cpdef Py_ssize_t bucket_index(tuple limits, double value)


cdef class Histogram:
    cdef readonly tuple limits
    cdef readonly list counts
    cdef readonly double total

    cpdef add(self, double value)


cdef class BatchMetrics:
    cdef readonly str thread_pool_name
    cdef object _lock
    cdef Histogram _queuing
    cdef Histogram _input
    cdef Histogram _processed
    cdef dict _padding
    cdef long long _wrapped

    @cython.locals(task=object, enqueued=double, micros=Py_ssize_t, size=Py_ssize_t,
                   padding=Histogram)
    cpdef record_run(self, list tasks, Py_ssize_t rows, Py_ssize_t padded, double dequeued)
