"""The batching queue, pure Python: the reference twin of :mod:`tfsfast.batching._batch_queue`.

Same classes, rules, messages and contracts as the compiled module (read its docstring); the
differences are only in how: a ``threading.Condition`` instead of a pthread mutex and condition
variable, and a lock where the compiled module relies on the GIL for :meth:`BatchTask.finish_part`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tfsfast.util.status import Code, ServingError

IMPLEMENTATION = "python"

QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
QUEUE_CLOSED_MESSAGE = (
    "The batch scheduling queue to which this task was submitted has been closed")

monotonic = time.monotonic

_ADDED, _CLOSED, _FULL = 0, 1, 2


def task_too_large(size: int, limit: int) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT,
                        f"Task size {size} is larger than maximum input batch size {limit}")


class BatchTask:
    """A unit of work of ``size`` rows; see the compiled module's ``BatchTask``."""

    __slots__ = ("_lock", "_parts_pending", "cancelled", "deadline", "enqueue_time", "error",
                 "index", "num_parts", "parent", "part_results", "payload", "size", "start",
                 "stop", "waiter")

    def __init__(self, size: int, payload: Any = None, waiter: Any = None,
                 deadline: float = math.inf) -> None:
        if size < 0:
            raise ValueError(f"task size must be non-negative; was {size}")
        self.size = size
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
        return self if self.parent is None else self.parent

    def finish_part(self, index: int, result: Any, error: Any) -> bool:
        """Records part ``index``'s outcome; True for the call that finished the last part."""
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
    """Tasks that run together; see the compiled module's ``Batch``."""

    __slots__ = ("_start_time", "expired", "queue", "size", "tasks")

    def __init__(self, queue: BatchQueue) -> None:
        self.queue = queue
        self.tasks: list[BatchTask] = []
        self.expired: list[BatchTask] = []
        self.size = 0
        self._start_time = 0.0

    def _form(self, now: float) -> None:
        kept: list[BatchTask] = []
        size = 0
        for task in self.tasks:
            if task.root.cancelled:
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
    """The tasks of one (model version, signature); see the compiled module's ``BatchQueue``."""

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
        """Enqueues ``task`` or raises ``ServingError``; ``notify`` False wakes no batch thread
        (see the compiled module)."""
        if task.size > self.max_batch_size:
            raise task_too_large(task.size, self.max_batch_size)
        core = self._core
        with core._cond:
            was_empty = not self._open.tasks
            status = self._add(task, monotonic())
            if status == _ADDED and notify and core._idle > 0 and (
                    was_empty or self._timeout == 0.0 or self._batches
                    or self._open.size >= self.max_execution_batch_size):
                core._cond.notify()
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
        return len(self._batches) + 1  # the open batch counts, even while empty

    def _has_schedulable(self, now: float) -> bool:
        open_batch = self._open
        if self._batches:
            return True
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
        tasks = [task for batch in self._batches for task in batch.tasks]
        tasks.extend(self._open.tasks)
        self._batches = deque()
        self._open = Batch(self)
        self._num_tasks = 0
        return tasks

    def take_batch(self) -> Batch | None:
        """The next ready batch, taken and formed in the calling thread; None if none is."""
        now = monotonic()
        batch = None
        with self._core._cond:
            if not self.closed:
                batch = self._take_batch(now)
        if batch is not None:
            batch._form(now)
        return batch

    def open_batch_wait(self) -> float | None:
        """Seconds until the open batch is ready by its timeout (0 if it is already), or None
        when it is empty."""
        with self._core._cond:
            if not self._open.tasks:
                return None
            wait = self._open._start_time + self._timeout - monotonic()
        return max(wait, 0.0)

    def wake_thread(self) -> None:
        """Wakes an idle batch thread to look at the queues."""
        with self._core._cond:
            if self._core._idle > 0:
                self._core._cond.notify()

    def close(self) -> None:
        """Stops accepting tasks; waiting ones go to ``reject_tasks``. Idempotent."""
        with self._core._cond:
            if self.closed:
                return
            self.closed = True
            tasks = self._drain()
            self._core._remove_queue(self)
        if tasks and self.reject_tasks is not None:
            self.reject_tasks(tasks)

    @property
    def num_enqueued_tasks(self) -> int:
        with self._core._cond:
            return self._num_tasks

    @property
    def num_enqueued_batches(self) -> int:
        with self._core._cond:
            return self._num_batches()

    @property
    def scheduling_capacity(self) -> int:
        with self._core._cond:
            return ((self.max_enqueued_batches - self._num_batches())
                    * self.max_execution_batch_size
                    + self.max_execution_batch_size - self._open.size)

    def __repr__(self) -> str:
        return (f"BatchQueue(max_batch_size={self.max_batch_size}, "
                f"max_enqueued_batches={self.max_enqueued_batches}, closed={self.closed})")


class SchedulerCore:
    """The queues of one ``SharedBatchScheduler``; see the compiled module's ``SchedulerCore``."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queues: list[BatchQueue] = []
        self._next = 0
        self._idle = 0
        self.stopped = False

    def add_queue(self, options: Any, process_batch: Callable[[Batch], Any],
                  reject_tasks: Callable[[list[BatchTask]], Any] | None = None) -> BatchQueue:
        queue = BatchQueue(self, options, process_batch, reject_tasks)
        with self._cond:
            if self.stopped:
                raise RuntimeError("the batch scheduler has been stopped")
            self._queues.append(queue)
        return queue

    def _remove_queue(self, queue: BatchQueue) -> None:
        for i, q in enumerate(self._queues):
            if q is queue:
                del self._queues[i]
                if i < self._next:
                    self._next -= 1
                if self._next >= len(self._queues):
                    self._next = 0
                return

    def _pick(self, now: float) -> tuple[Batch | None, float]:
        wake = math.inf
        n = len(self._queues)
        for i in range(n):
            index = (self._next + i) % n
            queue = self._queues[index]
            batch = queue._take_batch(now)
            if batch is not None:
                self._next = (index + 1) % n
                return batch, wake
            if queue._open.tasks:
                wake = min(wake, queue._open._start_time + queue._timeout)
        return None, wake

    def _has_work(self, now: float) -> bool:
        return any(queue._has_schedulable(now) for queue in self._queues)

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """Waits for a ready batch and returns it formed; None once stopped or after
        ``timeout`` seconds with nothing ready."""
        now = monotonic()
        until = math.inf if timeout is None else now + timeout
        batch = None
        with self._cond:
            while not self.stopped:
                batch, wake = self._pick(now)
                if batch is not None:
                    if self._idle > 0 and self._has_work(now):
                        self._cond.notify()
                    break
                if now >= until:
                    break
                wait = min(wake, until) - now
                self._idle += 1
                try:
                    self._cond.wait(None if math.isinf(wait) else wait)
                finally:
                    self._idle -= 1
                now = monotonic()
        if batch is not None:
            batch._form(now)
        return batch

    def stop(self) -> None:
        with self._cond:
            if self.stopped:
                return
            self.stopped = True
            queues = list(self._queues)
            self._cond.notify_all()
        for queue in queues:
            queue.close()

    @property
    def num_queues(self) -> int:
        with self._cond:
            return len(self._queues)
