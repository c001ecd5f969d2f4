"""The batching queue: tasks in, batches out (TF's ``SharedBatchScheduler`` internals).

One source, built twice: imported as it is, this is the pure-Python ``_batch_queue_py``; compiled
by Cython with the C declarations of ``_batch_queue.pxd`` it is the extension module
``_batch_queue``, whose classes the compiled batching session reads and calls in C. Both are used
through :mod:`tfsfast.batching.batch_queue`. The one part written twice is the mutex and
condition variable (:mod:`tfsfast.batching._condition`: pthreads compiled, a
``threading.Condition`` as Python).

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
by its condition's mutex, which is only ever waited for with the GIL released, and no Python
callback runs while it is held, so the mutex and the GIL cannot deadlock. Batch threads sleep in
``next_batch`` on the condition, GIL released, until a batch becomes ready, the open batch's
timeout comes, or the core stops; a task arriving when a thread is idle wakes one thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tfsfast.batching import _condition_py as _condition
from tfsfast.util.status import Code, ServingError

try:
    import cython
except ModuleNotFoundError:  # Cython builds the compiled module; this one runs without it
    IMPLEMENTATION = "python"
else:
    IMPLEMENTATION = "compiled" if cython.compiled else "python"

QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
QUEUE_CLOSED_MESSAGE = (
    "The batch scheduling queue to which this task was submitted has been closed")

# What BatchQueue._add did with a task.
_ADDED = 0
_CLOSED = 1
_FULL = 2

# The clock deadlines are on: CLOCK_MONOTONIC, which the queue reads as ``_condition.monotonic``
# (in C when compiled).
monotonic = time.monotonic


def task_too_large(size: int, limit: int) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT,
                        f"Task size {size} is larger than maximum input batch size {limit}")


class BatchWaiter:
    """Base of a task's ``waiter`` that the compiled batching session answers through C calls.

    Its methods are an asyncio future's, with their names and meaning: ``get_loop()`` (the event
    loop the waiter belongs to, where its outcome is delivered), ``done()``, ``set_result(result)``
    and ``set_exception(error)``. A subclass overrides all four; compiled (``cpdef``), they are
    called in C by the compiled batching session and by name by everyone else, the same methods
    either way. The REST fast path's ``BatchedReply`` is one: it is answered on every batched
    request, without an asyncio future.
    """

    __slots__ = ()

    def get_loop(self) -> Any:
        raise NotImplementedError

    def done(self) -> bool:
        raise NotImplementedError

    def set_result(self, result: Any) -> None:
        raise NotImplementedError

    def set_exception(self, error: Any) -> None:
        raise NotImplementedError


class BatchTask:
    """A unit of work of ``size`` rows (dimension 0) for one queue.

    ``deadline`` is a ``time.monotonic()`` value (infinity for none). The caller may set
    ``cancelled`` at any time (e.g. from its event loop when the client went away); a cancelled
    task is dropped when its batch forms. ``payload`` and ``waiter`` are the caller's.

    A task too large for the open batch under ``enable_large_batch_splitting`` is split by the
    queue into parts: tasks whose ``parent`` is the original task and which cover its rows
    ``[start, stop)`` (a whole task covers ``[0, size)``). The parent keeps one slot per part in
    ``part_results``; the batch threads report each part with :meth:`finish_part`.
    """

    __slots__ = ("_lock", "_parts_pending", "cancelled", "deadline", "enqueue_time", "error",
                 "index", "num_parts", "parent", "part_results", "payload", "size", "start",
                 "stop", "waiter")

    def __init__(self, size: int, payload: Any = None, waiter: Any = None,
                 deadline: float = math.inf) -> None:
        self.size = size
        if self.size < 0:
            raise ValueError(f"task size must be non-negative; was {size}")
        self.start = 0
        self.stop = size
        self.index = 0
        self.num_parts = 1
        self._parts_pending = 0
        self._lock: threading.Lock | None = None
        self.deadline = float(deadline)
        self.enqueue_time = 0.0
        self.cancelled = False
        self.parent: BatchTask | None = None
        self.part_results: list[Any] | None = None
        self.error: Any = None
        self.payload = payload
        self.waiter = waiter

    @property
    def root(self) -> BatchTask:
        """The task the caller scheduled: ``parent`` for a part, else this task."""
        return self if self.parent is None else self.parent

    def finish_part(self, index: int, result: Any, error: Any) -> bool:
        """Records part ``index``'s result (or its error); True for the call that finished the
        last part. Called on the parent, by whichever batch threads ran the parts. The first
        error recorded is kept in ``error``."""
        if self.part_results is None or self._lock is None:
            raise ValueError("finish_part is for tasks split into parts")
        with self._lock:
            if error is not None:
                if self.error is None:
                    self.error = error
            else:
                self.part_results[index] = result
            self._parts_pending -= 1
            return self._parts_pending == 0

    def __repr__(self) -> str:
        if self.parent is not None:
            return (f"BatchTask(part {self.index} of {self.parent.num_parts}, "
                    f"rows [{self.start}, {self.stop}))")
        return f"BatchTask(size={self.size})"


class Batch:
    """Tasks that run together. Handed to ``queue.process_batch`` by a batch thread, formed.

    ``tasks`` are the tasks to run, in arrival order, ``size`` their rows; ``expired`` are the
    tasks whose deadline passed before the batch formed (the processor fails them). The batch is
    owned by the thread that took it.
    """

    __slots__ = ("_start_time", "expired", "queue", "size", "tasks")

    def __init__(self, queue: BatchQueue) -> None:
        self.queue = queue
        self.tasks: list[BatchTask] = []
        self.expired: list[BatchTask] = []
        self.size = 0
        self._start_time = 0.0

    def _form(self, now: float) -> None:
        """Drops the cancelled tasks and moves the expired ones to ``expired``."""
        tasks = self.tasks
        n = len(tasks)
        i = 0
        while i < n:
            task = tasks[i]
            root = task if task.parent is None else task.parent
            if root.cancelled or task.deadline <= now:
                break
            i += 1
        if i == n:
            return  # the usual case: nothing to drop, keep the list as it is
        kept = tasks[:i]
        size = 0
        for task in kept:
            size += task.size
        for task in tasks[i:]:
            root = task if task.parent is None else task.parent
            if root.cancelled:
                continue
            if task.deadline <= now:
                self.expired.append(task)
                continue
            kept.append(task)
            size += task.size
        self.tasks = kept
        self.size = size

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return (f"Batch(size={self.size}, tasks={len(self.tasks)}, "
                f"expired={len(self.expired)})")


class BatchQueue:
    """The tasks of one (model version, signature), batched. Made by ``SchedulerCore.add_queue``.

    ``options`` is a :class:`tfsfast.batching.batching_parameters.QueueOptions` (validated).
    ``process_batch(batch)`` runs on a batch thread for every batch; ``reject_tasks(tasks)``
    receives the tasks still waiting when the queue closes (they never run).
    """

    def __init__(self, core: SchedulerCore, options: Any,
                 process_batch: Callable[[Batch], Any],
                 reject_tasks: Callable[[list[BatchTask]], Any] | None = None) -> None:
        self._core = core
        self.options = options
        self.max_batch_size = int(options.max_batch_size)
        self.enable_large_batch_splitting = bool(options.enable_large_batch_splitting)
        self.max_execution_batch_size = (int(options.max_execution_batch_size)
                                         if self.enable_large_batch_splitting
                                         else self.max_batch_size)
        self.max_enqueued_batches = int(options.max_enqueued_batches)
        self.batch_timeout_micros = int(options.batch_timeout_micros)
        if (self.max_batch_size < 1 or self.max_execution_batch_size < 1
                or self.max_execution_batch_size > self.max_batch_size
                or self.max_enqueued_batches < 1 or self.batch_timeout_micros < 0):
            raise ValueError(f"invalid queue options: {options!r}")
        self._timeout = self.batch_timeout_micros * 1e-6
        self.process_batch = process_batch
        self.reject_tasks = reject_tasks
        self._batches: deque[Batch] = deque()  # closed batches, oldest first
        self._open = Batch(self)
        self.closed = False
        self._num_tasks = 0

    def schedule(self, task: BatchTask, notify: bool = True) -> None:
        """Enqueues ``task`` (once), or raises ``ServingError``: INVALID_ARGUMENT when it is larger
        than ``max_batch_size``, UNAVAILABLE when the queue is full or closed.

        With ``notify`` False no batch thread is woken for it: the caller takes the batch itself
        (``take_batch``) or wakes a thread later (``wake_thread``). A thread that wakes for
        another reason may still take it."""
        if task.size > self.max_batch_size:
            raise task_too_large(task.size, self.max_batch_size)
        core = self._core
        mutex = core._mutex
        mutex.acquire()
        try:
            was_empty = not self._open.tasks
            status = self._add(task, _condition.monotonic())
            if status == _ADDED and notify and core._idle > 0 and (
                    was_empty or self._timeout == 0.0 or self._batches
                    or self._open.size >= self.max_execution_batch_size):
                # Ready now, or a new open batch whose timer an idle thread must start to watch.
                mutex.notify()
        finally:
            mutex.release()
        if status == _FULL:
            raise ServingError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)
        if status == _CLOSED:
            raise ServingError(Code.UNAVAILABLE, QUEUE_CLOSED_MESSAGE)

    def _add(self, task: BatchTask, now: float) -> int:
        if self.closed:
            return _CLOSED
        size = task.size
        task.enqueue_time = now
        if not self.enable_large_batch_splitting:
            if self._open.size + size > self.max_batch_size:
                if self._num_batches() >= self.max_enqueued_batches:
                    return _FULL
                self._start_new_batch()
            self._append(task, now)
            return _ADDED
        max_exec = self.max_execution_batch_size
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
        task._lock = threading.Lock()
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

    def _append(self, task: BatchTask, now: float) -> None:
        open_batch = self._open
        if not open_batch.tasks:
            open_batch._start_time = now
        open_batch.tasks.append(task)
        open_batch.size += task.size
        self._num_tasks += 1

    def _start_new_batch(self) -> None:
        self._batches.append(self._open)
        self._open = Batch(self)

    def _num_batches(self) -> int:
        return len(self._batches) + 1  # TensorFlow counts the open batch, even while empty

    def _has_schedulable(self, now: float) -> bool:
        if self._batches:
            return True
        open_batch = self._open
        return bool(open_batch.tasks) and (
            open_batch.size >= self.max_execution_batch_size
            or now >= open_batch._start_time + self._timeout)

    def _take_batch(self, now: float) -> Batch | None:
        if self._batches:
            batch = self._batches.popleft()
        elif self._has_schedulable(now):
            batch = self._open
            self._open = Batch(self)
        else:
            return None
        self._num_tasks -= len(batch.tasks)
        return batch

    def _drain(self) -> list[BatchTask]:
        tasks: list[BatchTask] = []
        for batch in self._batches:
            tasks.extend(batch.tasks)
        tasks.extend(self._open.tasks)
        self._batches = deque()
        self._open = Batch(self)
        self._num_tasks = 0
        return tasks

    def take_batch(self) -> Batch | None:
        """The next ready batch of this queue, taken and formed in the calling thread (as a
        batch thread would take it), or None when none is ready. The caller processes it."""
        mutex = self._core._mutex
        now = _condition.monotonic()
        batch = None
        mutex.acquire()
        try:
            if not self.closed:
                batch = self._take_batch(now)
        finally:
            mutex.release()
        if batch is not None:
            batch._form(now)
        return batch

    def open_batch_wait(self) -> float | None:
        """Seconds until the open batch is ready by its timeout (0 if it is already), or None
        when the open batch is empty."""
        mutex = self._core._mutex
        mutex.acquire()
        try:
            if not self._open.tasks:
                return None
            wait = self._open._start_time + self._timeout - _condition.monotonic()
        finally:
            mutex.release()
        return max(wait, 0.0)

    def wake_thread(self) -> None:
        """Wakes an idle batch thread to look at the queues (for tasks scheduled without
        ``notify``, e.g. an open batch that must wait for its timeout)."""
        core = self._core
        core._mutex.acquire()
        try:
            if core._idle > 0:
                core._mutex.notify()
        finally:
            core._mutex.release()

    def close(self) -> None:
        """Stops accepting tasks and hands those still waiting to ``reject_tasks``. Batches
        already taken by a batch thread run to completion. Idempotent."""
        core = self._core
        core._mutex.acquire()
        try:
            if self.closed:
                return
            self.closed = True
            tasks = self._drain()
            core._remove_queue(self)
        finally:
            core._mutex.release()
        if tasks and self.reject_tasks is not None:
            self.reject_tasks(tasks)

    @property
    def num_enqueued_tasks(self) -> int:
        """Tasks (parts counted separately) waiting in this queue, not yet taken by a thread."""
        self._core._mutex.acquire()
        try:
            return self._num_tasks
        finally:
            self._core._mutex.release()

    @property
    def num_enqueued_batches(self) -> int:
        """Batches waiting, the open one included (TensorFlow's count)."""
        self._core._mutex.acquire()
        try:
            return self._num_batches()
        finally:
            self._core._mutex.release()

    @property
    def scheduling_capacity(self) -> int:
        """Rows this queue can still accept (TensorFlow's ``SchedulingCapacity``)."""
        self._core._mutex.acquire()
        try:
            return ((self.max_enqueued_batches - self._num_batches())
                    * self.max_execution_batch_size
                    + self.max_execution_batch_size - self._open.size)
        finally:
            self._core._mutex.release()

    def __repr__(self) -> str:
        return (f"BatchQueue(max_batch_size={self.max_batch_size}, "
                f"max_enqueued_batches={self.max_enqueued_batches}, closed={self.closed})")


class SchedulerCore:
    """The queues of one ``SharedBatchScheduler`` and the hand-off of their batches to threads.

    Holds no threads: the owner runs ``next_batch`` in as many threads as it likes (tests may
    call it by hand with a timeout to step the scheduler).
    """

    def __init__(self) -> None:
        self._mutex = _condition.Condition()  # guards every queue of this core
        self._queues: list[BatchQueue] = []
        self._next = 0
        self._idle = 0
        self.stopped = False

    def add_queue(self, options: Any, process_batch: Callable[[Batch], Any],
                  reject_tasks: Callable[[list[BatchTask]], Any] | None = None) -> BatchQueue:
        """A new :class:`BatchQueue` served by this core's threads."""
        queue = BatchQueue(self, options, process_batch, reject_tasks)
        self._mutex.acquire()
        try:
            if self.stopped:
                raise RuntimeError("the batch scheduler has been stopped")
            self._queues.append(queue)
        finally:
            self._mutex.release()
        return queue

    def _remove_queue(self, queue: BatchQueue) -> None:
        for i in range(len(self._queues)):
            if self._queues[i] is queue:
                del self._queues[i]
                if i < self._next:
                    self._next -= 1
                if self._next >= len(self._queues):
                    self._next = 0
                return

    def _pick(self, now: float) -> Batch | None:
        """The next ready batch, round-robin from the queue after the last one served."""
        n = len(self._queues)
        for i in range(n):
            index = (self._next + i) % n
            queue = self._queues[index]
            batch = queue._take_batch(now)
            if batch is not None:
                self._next = (index + 1) % n
                return batch
        return None

    def _wake_time(self, until: float) -> float:
        """``until``, or the earliest time an open batch's timeout comes if sooner."""
        wake = until
        for queue in self._queues:
            if queue._open.tasks:
                wake = min(wake, queue._open._start_time + queue._timeout)
        return wake

    def _has_work(self, now: float) -> bool:
        for queue in self._queues:
            if queue._has_schedulable(now):
                return True
        return False

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """Waits for a ready batch, takes it, forms it and returns it; None once the core is
        stopped, or after ``timeout`` seconds (None: no limit) with nothing ready. The GIL is
        released while waiting."""
        mutex = self._mutex
        now = _condition.monotonic()
        until = math.inf if timeout is None else now + float(timeout)
        batch = None
        mutex.acquire()
        try:
            while not self.stopped:
                batch = self._pick(now)
                if batch is not None:
                    if self._idle > 0 and self._has_work(now):
                        mutex.notify()  # more ready: pass the word on
                    break
                if now >= until:
                    break
                self._idle += 1
                try:
                    mutex.wait_until(self._wake_time(until))
                finally:
                    self._idle -= 1
                now = _condition.monotonic()
        finally:
            mutex.release()
        if batch is not None:
            batch._form(now)
        return batch

    def stop(self) -> None:
        """Closes every queue (their waiting tasks go to ``reject_tasks``) and makes
        ``next_batch`` return None from now on. Idempotent."""
        self._mutex.acquire()
        try:
            if self.stopped:
                return
            self.stopped = True
            queues = list(self._queues)
            self._mutex.notify_all()
        finally:
            self._mutex.release()
        for queue in queues:
            queue.close()

    @property
    def num_queues(self) -> int:
        self._mutex.acquire()
        try:
            return len(self._queues)
        finally:
            self._mutex.release()
