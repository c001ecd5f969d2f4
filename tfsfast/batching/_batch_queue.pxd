# The compiled batching queue: declarations shared with any module that cimports it.
# See _batch_queue.pyx for the contracts; _batch_queue_py.py is the pure-Python twin.

from posix.time cimport timespec


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
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


cdef class BatchQueue
cdef class SchedulerCore


cdef class BatchWaiter:
    # An asyncio-style waiter that compiled callers answer through C calls instead of looking
    # up get_loop/done/set_result/set_exception by name (see _batch_queue.pyx).
    cdef object waiter_loop(self)
    cdef bint waiter_done(self) except -1
    cdef int waiter_resolve(self, object result, object error) except -1


cdef class BatchTask:
    cdef readonly Py_ssize_t size
    cdef readonly double deadline
    cdef readonly double enqueue_time
    cdef public bint cancelled
    cdef readonly BatchTask parent
    cdef readonly Py_ssize_t start
    cdef readonly Py_ssize_t stop
    cdef readonly Py_ssize_t index
    cdef readonly Py_ssize_t num_parts
    cdef Py_ssize_t _parts_pending
    cdef readonly list part_results
    cdef readonly object error
    cdef public object payload
    cdef public object waiter

    cpdef bint finish_part(self, Py_ssize_t index, object result, object error)


cdef class Batch:
    cdef readonly list tasks
    cdef readonly list expired
    cdef readonly Py_ssize_t size
    cdef readonly BatchQueue queue
    cdef double _start_time

    cdef int _form(self, double now) except -1


cdef class BatchQueue:
    cdef SchedulerCore _core
    cdef readonly object options
    cdef readonly Py_ssize_t max_batch_size
    cdef readonly Py_ssize_t max_execution_batch_size
    cdef readonly Py_ssize_t max_enqueued_batches
    cdef readonly long long batch_timeout_micros
    cdef readonly bint enable_large_batch_splitting
    cdef double _timeout
    cdef readonly object process_batch
    cdef readonly object reject_tasks
    cdef list _batches
    cdef Py_ssize_t _head
    cdef Batch _open
    cdef readonly bint closed
    cdef Py_ssize_t _num_tasks

    cpdef schedule(self, BatchTask task, bint notify=*)
    cdef int _add(self, BatchTask task, double now) except -1
    cdef int _append(self, BatchTask task, double now) except -1
    cdef int _start_new_batch(self) except -1
    cdef Py_ssize_t _num_batches(self) noexcept
    cdef bint _has_schedulable(self, double now) noexcept
    cdef Batch _take_batch(self, double now)
    cdef list _drain(self)


cdef class SchedulerCore:
    cdef pthread_mutex_t _mutex
    cdef pthread_cond_t _cond
    cdef list _queues
    cdef Py_ssize_t _next
    cdef int _idle
    cdef readonly bint stopped

    cdef void _lock(self) noexcept
    cdef void _unlock(self) noexcept
    cdef void _wait(self, double until) noexcept
    cdef Batch _pick(self, double now, double* wake)
    cdef bint _has_work(self, double now) noexcept
    cdef int _remove_queue(self, BatchQueue queue) except -1
