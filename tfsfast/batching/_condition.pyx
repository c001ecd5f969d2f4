# cython: language_level=3
"""The batching queue's mutex and condition variable, compiled: a pthread mutex and condition
variable, with timed waits on CLOCK_MONOTONIC.

A separate implementation from its twin :mod:`tfsfast.batching._condition_py` (a
``threading.Condition``), not the same source compiled: what makes this one worth having is what
pure Python cannot say. The mutex is only ever *waited for* with the GIL released (a holder may
need the GIL to finish: a Python allocation, a dealloc), and taking it uncontended is one
``pthread_mutex_trylock``, no Python call. The queue calls these methods in C under the names
the twin's have (the contract is the twin's docstring).
"""

cimport cython
from libc.math cimport floor
from posix.time cimport CLOCK_MONOTONIC, time_t, timespec

from tfsfast._cdefs cimport clock

from tfsfast.batching._condition_py import LONGEST_TIMED_WAIT


cdef extern from "<pthread.h>" nogil:
    int pthread_mutex_init(pthread_mutex_t* mutex, const pthread_mutexattr_t* attr)
    int pthread_mutex_destroy(pthread_mutex_t* mutex)
    int pthread_mutex_lock(pthread_mutex_t* mutex)
    int pthread_mutex_trylock(pthread_mutex_t* mutex)
    int pthread_mutex_unlock(pthread_mutex_t* mutex)
    int pthread_condattr_init(pthread_condattr_t* attr)
    int pthread_condattr_setclock(pthread_condattr_t* attr, int clock_id)
    int pthread_condattr_destroy(pthread_condattr_t* attr)
    int pthread_cond_init(pthread_cond_t* cond, const pthread_condattr_t* attr)
    int pthread_cond_destroy(pthread_cond_t* cond)
    int pthread_cond_signal(pthread_cond_t* cond)
    int pthread_cond_broadcast(pthread_cond_t* cond)
    int pthread_cond_wait(pthread_cond_t* cond, pthread_mutex_t* mutex)
    int pthread_cond_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex,
                               const timespec* abstime)


cdef double _LONGEST_TIMED_WAIT = LONGEST_TIMED_WAIT


cpdef double monotonic() noexcept nogil:
    """The clock of ``wait_until``'s deadlines: ``time.monotonic()`` (CLOCK_MONOTONIC, which
    the condition variable's timed waits are set to)."""
    return clock.monotonic()


@cython.final
cdef class Condition:
    """A mutex and a condition variable on it; see the twin."""

    def __cinit__(self):
        cdef pthread_condattr_t attr
        pthread_mutex_init(&self._mutex, NULL)
        pthread_condattr_init(&attr)
        # Timed waits are on the clock deadlines use, immune to wall-clock changes.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self._cond, &attr)
        pthread_condattr_destroy(&attr)

    def __dealloc__(self):
        pthread_cond_destroy(&self._cond)
        pthread_mutex_destroy(&self._mutex)

    cdef void acquire(self) noexcept:
        # Waiting for the mutex always happens without the GIL: a holder may need the GIL
        # to finish (a Python allocation, a dealloc), and must be able to get it.
        if pthread_mutex_trylock(&self._mutex) != 0:
            with nogil:
                pthread_mutex_lock(&self._mutex)

    cdef void release(self) noexcept:
        pthread_mutex_unlock(&self._mutex)

    cdef void notify(self) noexcept:
        pthread_cond_signal(&self._cond)

    cdef void notify_all(self) noexcept:
        pthread_cond_broadcast(&self._cond)

    cdef void wait_until(self, double deadline) noexcept:
        cdef timespec ts
        cdef double whole
        if deadline - monotonic() > _LONGEST_TIMED_WAIT:
            with nogil:
                pthread_cond_wait(&self._cond, &self._mutex)
            return
        whole = floor(deadline)
        ts.tv_sec = <time_t>whole
        ts.tv_nsec = <long>((deadline - whole) * 1e9)
        if ts.tv_nsec >= 1000000000:
            ts.tv_sec += 1
            ts.tv_nsec -= 1000000000
        with nogil:
            pthread_cond_timedwait(&self._cond, &self._mutex, &ts)
