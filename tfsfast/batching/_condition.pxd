# The compiled batching queue's mutex and condition variable: declarations for _batch_queue
# (built from _batch_queue_py.py), which calls them in C. See _condition.pyx; _condition_py.py is
# the pure-Python twin.

cimport cython


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass


@cython.final
cdef class Condition:
    cdef pthread_mutex_t _mutex
    cdef pthread_cond_t _cond

    cdef void acquire(self) noexcept
    cdef void release(self) noexcept
    cdef void notify(self) noexcept
    cdef void notify_all(self) noexcept
    cdef void wait_until(self, double deadline) noexcept


cpdef double monotonic() noexcept nogil
