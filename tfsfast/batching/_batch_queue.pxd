# The C declarations that make _batch_queue_py.py, the one source of the batching queue (its
# contracts are there), the compiled module tfsfast.batching._batch_queue: Cython compiles that
# file with these declarations (pure Python mode). Modules that cimport the queue's classes read
# their fields and call schedule, finish_part and the BatchWaiter methods in C.

import cython

# The twin's _condition_py under the same name: compiled, the queue takes the pthread mutex and
# waits on its condition variable in C.
from tfsfast.batching cimport _condition

cdef int _ADDED
cdef int _CLOSED
cdef int _FULL


cdef class BatchQueue
cdef class SchedulerCore


cdef class BatchWaiter:
    # An asyncio future's methods, which compiled callers call in C (see _batch_queue_py.py).
    cpdef object get_loop(self)
    cpdef bint done(self) except -1
    cpdef set_result(self, object result)
    cpdef set_exception(self, object error)


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
    cdef object _lock
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

    @cython.locals(tasks=list, kept=list, task=BatchTask, root=BatchTask, n=Py_ssize_t,
                   i=Py_ssize_t, size=Py_ssize_t)
    cdef _form(self, double now)


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
    cdef object _batches
    cdef Batch _open
    cdef readonly bint closed
    cdef Py_ssize_t _num_tasks

    @cython.locals(core=SchedulerCore, mutex=_condition.Condition, was_empty=bint, status=int)
    cpdef schedule(self, BatchTask task, bint notify=*)

    @cython.locals(size=Py_ssize_t, max_exec=Py_ssize_t, room=Py_ssize_t, n=Py_ssize_t,
                   i=Py_ssize_t, start=Py_ssize_t, part_size=Py_ssize_t, part=BatchTask)
    cdef int _add(self, BatchTask task, double now) except -1

    @cython.locals(open_batch=Batch)
    cdef _append(self, BatchTask task, double now)

    cdef _start_new_batch(self)
    cdef Py_ssize_t _num_batches(self) except -1

    @cython.locals(open_batch=Batch)
    cdef bint _has_schedulable(self, double now) except -1

    @cython.locals(batch=Batch)
    cdef Batch _take_batch(self, double now)

    @cython.locals(tasks=list, batch=Batch)
    cdef list _drain(self)

    @cython.locals(mutex=_condition.Condition, now=double, batch=Batch)
    cpdef Batch take_batch(self)


cdef class SchedulerCore:
    cdef _condition.Condition _mutex
    cdef list _queues
    cdef Py_ssize_t _next
    cdef int _idle
    cdef readonly bint stopped

    @cython.locals(i=Py_ssize_t)
    cdef _remove_queue(self, BatchQueue queue)

    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, index=Py_ssize_t, queue=BatchQueue, batch=Batch)
    cdef Batch _pick(self, double now)

    @cython.locals(wake=double, queue=BatchQueue)
    cdef double _wake_time(self, double until) except? -1

    @cython.locals(queue=BatchQueue)
    cdef bint _has_work(self, double now) except -1

    @cython.locals(mutex=_condition.Condition, now=double, until=double, batch=Batch)
    cpdef Batch next_batch(self, object timeout=*)
