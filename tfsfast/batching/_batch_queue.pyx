# cython: language_level=3, boundscheck=False, wraparound=False
"""The batching queue, compiled: tasks in, batches out (TF's ``SharedBatchScheduler`` internals).

A :class:`SchedulerCore` owns any number of :class:`BatchQueue` s (one per model version and
signature) and hands their batches to batch threads, round-robin across queues. Each queue is a
run of closed batches plus one open batch that collects new tasks, with TensorFlow's rules:

- a task larger than ``max_batch_size`` is refused: INVALID_ARGUMENT ``Task size N is larger
  than maximum input batch size M``;
- without splitting, a task that does not fit the open batch closes it and opens a new one,
  unless the queue already holds ``max_enqueued_batches`` batches (the open one included):
  UNAVAILABLE ``The batch scheduling queue to which this task was submitted is full``;
- with ``enable_large_batch_splitting`` batches hold at most ``max_execution_batch_size`` rows;
  a task that does not fit the open batch is split into parts (the open batch's remaining room,
  then full batches), if the queue's capacity allows it (UNAVAILABLE otherwise);
- a closed batch is ready at once; the open batch is ready when full or when
  ``batch_timeout_micros`` has passed since its first task arrived (at once for 0).

When a batch thread takes a batch (``next_batch``), the batch is *formed*: tasks whose caller
went away (``cancelled``, on the task or on the task it was split from) are dropped, and tasks
whose ``deadline`` (``time.monotonic()`` seconds) has passed move to ``Batch.expired``; neither
runs. What a task carries (``payload``) and who waits for it (``waiter``) belong to the caller;
the queue never looks at them.

Thread-safety: every method may be called from any thread. All queue state of a core is guarded
by one pthread mutex that is only ever *waited for* with the GIL released, and no Python callback
runs while it is held, so the mutex and the GIL cannot deadlock. Batch threads sleep in
``next_batch`` on a condition variable, GIL released, until a batch becomes ready, the open
batch's timeout comes, or the core stops; a task arriving when a thread is idle wakes one thread.

The pure-Python twin is :mod:`tfsfast.batching._batch_queue_py`; both are used through
:mod:`tfsfast.batching.batch_queue`.
"""

from libc.math cimport INFINITY, floor
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, time_t, timespec

from tfsfast.util.status import Code, ServingError

IMPLEMENTATION = "compiled"

QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
QUEUE_CLOSED_MESSAGE = (
    "The batch scheduling queue to which this task was submitted has been closed")

# Waits longer than this are waits without a timeout (and never overflow time_t).
cdef double _LONGEST_TIMED_WAIT = 86400.0 * 365

cdef enum:
    _ADDED = 0
    _CLOSED = 1
    _FULL = 2


cdef inline double _now() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return <double>t.tv_sec + <double>t.tv_nsec * 1e-9


def monotonic():
    """The clock deadlines are on: ``time.monotonic()`` (CLOCK_MONOTONIC)."""
    return _now()


def task_too_large(Py_ssize_t size, Py_ssize_t limit):
    return ServingError(Code.INVALID_ARGUMENT,
                        f"Task size {size} is larger than maximum input batch size {limit}")


cdef class BatchWaiter:
    """Base of a task's ``waiter`` that the compiled batching session answers in C.

    A subclass overrides the three C methods, ``waiter_loop`` (the event loop the waiter
    belongs to, as ``get_loop()``), ``waiter_done`` (as ``done()``) and ``waiter_resolve``
    (``set_result(result)`` when ``error`` is None, else ``set_exception(error)``), and keeps
    the Python methods of an asyncio future for the twin, which calls those by name. The
    REST fast path's ``BatchedReply`` is one: it is answered on every batched request.
    """

    cdef object waiter_loop(self):
        raise NotImplementedError

    cdef bint waiter_done(self) except -1:
        raise NotImplementedError

    cdef int waiter_resolve(self, object result, object error) except -1:
        raise NotImplementedError


cdef class BatchTask:
    """A unit of work of ``size`` rows (dimension 0) for one queue.

    ``deadline`` is a ``time.monotonic()`` value (infinity for none). The caller may set
    ``cancelled`` at any time (e.g. from its event loop when the client went away); a cancelled
    task is dropped when its batch forms. ``payload`` and ``waiter`` are the caller's.

    A task too large for the open batch under ``enable_large_batch_splitting`` is split by the
    queue into parts: tasks whose ``parent`` is the original task and which cover its rows
    ``[start, stop)`` (a whole task covers ``[0, size)``). The parent keeps one slot per part in
    ``part_results``; the batch threads report each part with :meth:`finish_part`.
    """

    def __cinit__(self, Py_ssize_t size, object payload=None, object waiter=None,
                  double deadline=INFINITY):
        if size < 0:
            raise ValueError(f"task size must be non-negative; was {size}")
        self.size = size
        self.start = 0
        self.stop = size
        self.index = 0
        self.num_parts = 1
        self._parts_pending = 0
        self.deadline = deadline
        self.enqueue_time = 0.0
        self.cancelled = False
        self.parent = None
        self.part_results = None
        self.error = None
        self.payload = payload
        self.waiter = waiter

    @property
    def root(self):
        """The task the caller scheduled: ``parent`` for a part, else this task."""
        return self if self.parent is None else self.parent

    cpdef bint finish_part(self, Py_ssize_t index, object result, object error):
        """Records part ``index``'s result (or its error); True for the call that finished the
        last part. Called on the parent, by whichever batch threads ran the parts: the GIL makes
        the record-and-count step atomic, as no Python code runs inside it. The first error
        recorded is kept in ``error``."""
        if self.part_results is None:
            raise ValueError("finish_part is for tasks split into parts")
        if error is not None:
            if self.error is None:
                self.error = error
        else:
            self.part_results[index] = result
        self._parts_pending -= 1
        return self._parts_pending == 0

    def __repr__(self):
        if self.parent is not None:
            return (f"BatchTask(part {self.index} of {self.parent.num_parts}, "
                    f"rows [{self.start}, {self.stop}))")
        return f"BatchTask(size={self.size})"


cdef class Batch:
    """Tasks that run together. Handed to ``queue.process_batch`` by a batch thread, formed.

    ``tasks`` are the tasks to run, in arrival order, ``size`` their rows; ``expired`` are the
    tasks whose deadline passed before the batch formed (the processor fails them). The batch is
    owned by the thread that took it.
    """

    def __cinit__(self, BatchQueue queue):
        self.queue = queue
        self.tasks = []
        self.expired = []
        self.size = 0
        self._start_time = 0.0

    cdef int _form(self, double now) except -1:
        cdef BatchTask task, root
        cdef list kept
        cdef Py_ssize_t i, n = len(self.tasks)
        for i in range(n):
            task = <BatchTask>self.tasks[i]
            root = task if task.parent is None else task.parent
            if root.cancelled or task.deadline <= now:
                break
        else:
            return 0  # the usual case: nothing to drop, keep the list as it is
        kept = self.tasks[:i]
        self.size = 0
        for task in kept:
            self.size += task.size
        for task in self.tasks[i:]:
            root = task if task.parent is None else task.parent
            if root.cancelled:
                continue
            if task.deadline <= now:
                self.expired.append(task)
                continue
            kept.append(task)
            self.size += task.size
        self.tasks = kept
        return 0

    @property
    def num_tasks(self):
        return len(self.tasks)

    def __len__(self):
        return len(self.tasks)

    def __repr__(self):
        return (f"Batch(size={self.size}, tasks={len(self.tasks)}, "
                f"expired={len(self.expired)})")


cdef class BatchQueue:
    """The tasks of one (model version, signature), batched. Made by ``SchedulerCore.add_queue``.

    ``options`` is a :class:`tfsfast.batching.batching_parameters.QueueOptions` (validated).
    ``process_batch(batch)`` runs on a batch thread for every batch; ``reject_tasks(tasks)``
    receives the tasks still waiting when the queue closes (they never run).
    """

    def __cinit__(self, SchedulerCore core, object options, object process_batch,
                  object reject_tasks=None):
        self._core = core
        self.options = options
        self.max_batch_size = options.max_batch_size
        self.enable_large_batch_splitting = bool(options.enable_large_batch_splitting)
        self.max_execution_batch_size = (options.max_execution_batch_size
                                         if self.enable_large_batch_splitting
                                         else self.max_batch_size)
        self.max_enqueued_batches = options.max_enqueued_batches
        self.batch_timeout_micros = options.batch_timeout_micros
        if (self.max_batch_size < 1 or self.max_execution_batch_size < 1
                or self.max_execution_batch_size > self.max_batch_size
                or self.max_enqueued_batches < 1 or self.batch_timeout_micros < 0):
            raise ValueError(f"invalid queue options: {options!r}")
        self._timeout = self.batch_timeout_micros * 1e-6
        self.process_batch = process_batch
        self.reject_tasks = reject_tasks
        self._batches = []
        self._head = 0
        self._open = Batch(self)
        self.closed = False
        self._num_tasks = 0

    cpdef schedule(self, BatchTask task, bint notify=True):
        """Enqueues ``task`` (once), or raises ``ServingError``: INVALID_ARGUMENT when it is larger
        than ``max_batch_size``, UNAVAILABLE when the queue is full or closed.

        With ``notify`` False no batch thread is woken for it: the caller takes the batch itself
        (``take_batch``) or wakes a thread later (``wake_thread``). A thread that wakes for
        another reason may still take it."""
        cdef SchedulerCore core = self._core
        cdef int status
        cdef bint was_empty
        if task.size > self.max_batch_size:
            raise task_too_large(task.size, self.max_batch_size)
        core._lock()
        try:
            was_empty = len(self._open.tasks) == 0
            status = self._add(task, _now())
            if status == _ADDED and notify and core._idle > 0 and (
                    was_empty or self._timeout == 0.0 or len(self._batches) > self._head
                    or self._open.size >= self.max_execution_batch_size):
                # Ready now, or a new open batch whose timer an idle thread must start to watch.
                pthread_cond_signal(&core._cond)
        finally:
            core._unlock()
        if status == _FULL:
            raise ServingError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)
        if status == _CLOSED:
            raise ServingError(Code.UNAVAILABLE, QUEUE_CLOSED_MESSAGE)

    cdef int _add(self, BatchTask task, double now) except -1:
        cdef Py_ssize_t size = task.size, max_exec = self.max_execution_batch_size
        cdef Py_ssize_t room, n, i, start, part_size
        cdef BatchTask part
        if self.closed:
            return _CLOSED
        task.enqueue_time = now
        if not self.enable_large_batch_splitting:
            if self._open.size + size > self.max_batch_size:
                if self._num_batches() >= self.max_enqueued_batches:
                    return _FULL
                self._start_new_batch()
            self._append(task, now)
            return _ADDED
        room = max_exec - self._open.size
        if size > (self.max_enqueued_batches - self._num_batches()) * max_exec + room:
            return _FULL
        if size <= room:
            self._append(task, now)
            return _ADDED
        # Split: the open batch's remaining room first, then full batches.
        n = (1 if room > 0 else 0) + (size - room + max_exec - 1) // max_exec
        task.num_parts = n
        task._parts_pending = n
        task.part_results = [None] * n
        start = 0
        for i in range(n):
            part_size = room if (i == 0 and room > 0) else min(max_exec, size - start)
            part = BatchTask(part_size, None, None, task.deadline)
            part.parent = task
            part.start = start
            part.stop = start + part_size
            part.index = i
            part.enqueue_time = now
            start += part_size
            if self._open.size + part_size > max_exec:
                self._start_new_batch()
            self._append(part, now)
        return _ADDED

    cdef int _append(self, BatchTask task, double now) except -1:
        cdef Batch open_batch = self._open
        if len(open_batch.tasks) == 0:
            open_batch._start_time = now
        open_batch.tasks.append(task)
        open_batch.size += task.size
        self._num_tasks += 1
        return 0

    cdef int _start_new_batch(self) except -1:
        self._batches.append(self._open)
        self._open = Batch(self)
        return 0

    cdef Py_ssize_t _num_batches(self) noexcept:
        # TensorFlow counts the open batch, even while empty.
        return len(self._batches) - self._head + 1

    cdef bint _has_schedulable(self, double now) noexcept:
        cdef Batch open_batch = self._open
        if len(self._batches) > self._head:
            return True
        return len(open_batch.tasks) > 0 and (
            open_batch.size >= self.max_execution_batch_size
            or now >= open_batch._start_time + self._timeout)

    cdef Batch _take_batch(self, double now):
        cdef Batch batch
        if len(self._batches) > self._head:
            batch = <Batch>self._batches[self._head]
            self._batches[self._head] = None
            self._head += 1
            if self._head == len(self._batches):
                self._batches = []
                self._head = 0
            elif self._head >= 64 and self._head * 2 > len(self._batches):
                del self._batches[:self._head]
                self._head = 0
        elif self._has_schedulable(now):
            batch = self._open
            self._open = Batch(self)
        else:
            return None
        self._num_tasks -= len(batch.tasks)
        return batch

    cdef list _drain(self):
        cdef list tasks = []
        cdef Py_ssize_t i
        for i in range(self._head, len(self._batches)):
            tasks.extend((<Batch>self._batches[i]).tasks)
        tasks.extend(self._open.tasks)
        self._batches = []
        self._head = 0
        self._open = Batch(self)
        self._num_tasks = 0
        return tasks

    def take_batch(self):
        """The next ready batch of this queue, taken and formed in the calling thread (as a
        batch thread would take it), or None when none is ready. The caller processes it."""
        cdef SchedulerCore core = self._core
        cdef double now = _now()
        cdef Batch batch = None
        core._lock()
        try:
            if not self.closed:
                batch = self._take_batch(now)
        finally:
            core._unlock()
        if batch is not None:
            batch._form(now)
        return batch

    def open_batch_wait(self):
        """Seconds until the open batch is ready by its timeout (0 if it is already), or None
        when the open batch is empty."""
        cdef SchedulerCore core = self._core
        cdef double wait
        core._lock()
        try:
            if len(self._open.tasks) == 0:
                return None
            wait = self._open._start_time + self._timeout - _now()
        finally:
            core._unlock()
        return wait if wait > 0.0 else 0.0

    def wake_thread(self):
        """Wakes an idle batch thread to look at the queues (for tasks scheduled without
        ``notify``, e.g. an open batch that must wait for its timeout)."""
        cdef SchedulerCore core = self._core
        core._lock()
        try:
            if core._idle > 0:
                pthread_cond_signal(&core._cond)
        finally:
            core._unlock()

    def close(self):
        """Stops accepting tasks and hands those still waiting to ``reject_tasks``. Batches
        already taken by a batch thread run to completion. Idempotent."""
        cdef SchedulerCore core = self._core
        cdef list tasks
        core._lock()
        try:
            if self.closed:
                return
            self.closed = True
            tasks = self._drain()
            core._remove_queue(self)
        finally:
            core._unlock()
        if tasks and self.reject_tasks is not None:
            self.reject_tasks(tasks)

    @property
    def num_enqueued_tasks(self):
        """Tasks (parts counted separately) waiting in this queue, not yet taken by a thread."""
        self._core._lock()
        try:
            return self._num_tasks
        finally:
            self._core._unlock()

    @property
    def num_enqueued_batches(self):
        """Batches waiting, the open one included (TensorFlow's count)."""
        self._core._lock()
        try:
            return self._num_batches()
        finally:
            self._core._unlock()

    @property
    def scheduling_capacity(self):
        """Rows this queue can still accept (TensorFlow's ``SchedulingCapacity``)."""
        self._core._lock()
        try:
            return ((self.max_enqueued_batches - self._num_batches())
                    * self.max_execution_batch_size
                    + self.max_execution_batch_size - self._open.size)
        finally:
            self._core._unlock()

    def __repr__(self):
        return (f"BatchQueue(max_batch_size={self.max_batch_size}, "
                f"max_enqueued_batches={self.max_enqueued_batches}, closed={self.closed})")


cdef class SchedulerCore:
    """The queues of one ``SharedBatchScheduler`` and the hand-off of their batches to threads.

    Holds no threads: the owner runs ``next_batch`` in as many threads as it likes (tests may
    call it by hand with a timeout to step the scheduler).
    """

    def __cinit__(self):
        cdef pthread_condattr_t attr
        pthread_mutex_init(&self._mutex, NULL)
        pthread_condattr_init(&attr)
        # Timed waits are on the clock deadlines use, immune to wall-clock changes.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self._cond, &attr)
        pthread_condattr_destroy(&attr)
        self._queues = []
        self._next = 0
        self._idle = 0
        self.stopped = False

    def __dealloc__(self):
        pthread_cond_destroy(&self._cond)
        pthread_mutex_destroy(&self._mutex)

    cdef void _lock(self) noexcept:
        # Waiting for the mutex always happens without the GIL: a holder may need the GIL
        # to finish (a Python allocation, a dealloc), and must be able to get it.
        if pthread_mutex_trylock(&self._mutex) != 0:
            with nogil:
                pthread_mutex_lock(&self._mutex)

    cdef void _unlock(self) noexcept:
        pthread_mutex_unlock(&self._mutex)

    cdef void _wait(self, double until) noexcept:
        cdef timespec ts
        cdef double whole
        if until - _now() > _LONGEST_TIMED_WAIT:
            with nogil:
                pthread_cond_wait(&self._cond, &self._mutex)
            return
        whole = floor(until)
        ts.tv_sec = <time_t>whole
        ts.tv_nsec = <long>((until - whole) * 1e9)
        if ts.tv_nsec >= 1000000000:
            ts.tv_sec += 1
            ts.tv_nsec -= 1000000000
        with nogil:
            pthread_cond_timedwait(&self._cond, &self._mutex, &ts)

    def add_queue(self, object options, object process_batch, object reject_tasks=None):
        """A new :class:`BatchQueue` served by this core's threads."""
        cdef BatchQueue queue = BatchQueue(self, options, process_batch, reject_tasks)
        self._lock()
        try:
            if self.stopped:
                raise RuntimeError("the batch scheduler has been stopped")
            self._queues.append(queue)
        finally:
            self._unlock()
        return queue

    cdef int _remove_queue(self, BatchQueue queue) except -1:
        cdef Py_ssize_t i
        for i in range(len(self._queues)):
            if self._queues[i] is queue:
                del self._queues[i]
                if i < self._next:
                    self._next -= 1
                if self._next >= len(self._queues):
                    self._next = 0
                return 0
        return 0

    cdef Batch _pick(self, double now, double* wake):
        """The next ready batch, round-robin from the queue after the last one served; else
        None, lowering ``wake`` to the earliest time an open batch's timeout comes."""
        cdef Py_ssize_t i, index, n = len(self._queues)
        cdef BatchQueue queue
        cdef Batch batch
        cdef double ready
        for i in range(n):
            index = (self._next + i) % n
            queue = <BatchQueue>self._queues[index]
            batch = queue._take_batch(now)
            if batch is not None:
                self._next = (index + 1) % n
                return batch
            if len(queue._open.tasks) > 0:
                ready = queue._open._start_time + queue._timeout
                if ready < wake[0]:
                    wake[0] = ready
        return None

    cdef bint _has_work(self, double now) noexcept:
        cdef BatchQueue queue
        for queue in self._queues:
            if queue._has_schedulable(now):
                return True
        return False

    def next_batch(self, timeout=None):
        """Waits for a ready batch, takes it, forms it and returns it; None once the core is
        stopped, or after ``timeout`` seconds (None: no limit) with nothing ready. The GIL is
        released while waiting."""
        cdef double now = _now()
        cdef double until = INFINITY if timeout is None else now + <double>timeout
        cdef double wake
        cdef Batch batch = None
        self._lock()
        try:
            while not self.stopped:
                wake = until
                batch = self._pick(now, &wake)
                if batch is not None:
                    if self._idle > 0 and self._has_work(now):
                        pthread_cond_signal(&self._cond)  # more ready: pass the word on
                    break
                if now >= until:
                    break
                self._idle += 1
                self._wait(wake)
                self._idle -= 1
                now = _now()
        finally:
            self._unlock()
        if batch is not None:
            batch._form(now)
        return batch

    def stop(self):
        """Closes every queue (their waiting tasks go to ``reject_tasks``) and makes
        ``next_batch`` return None from now on. Idempotent."""
        cdef list queues
        self._lock()
        try:
            if self.stopped:
                return
            self.stopped = True
            queues = list(self._queues)
            pthread_cond_broadcast(&self._cond)
        finally:
            self._unlock()
        for queue in queues:
            queue.close()

    @property
    def num_queues(self):
        self._lock()
        try:
            return len(self._queues)
        finally:
            self._unlock()
