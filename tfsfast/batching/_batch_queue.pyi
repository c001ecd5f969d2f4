"""Type stubs for the compiled batching queue (the twin, ``_batch_queue_py``, is typed inline)."""

from collections.abc import Callable
from typing import Any, Final

IMPLEMENTATION: Final[str]
QUEUE_FULL_MESSAGE: Final[str]
QUEUE_CLOSED_MESSAGE: Final[str]

def monotonic() -> float: ...
def task_too_large(size: int, limit: int) -> Any: ...

class BatchTask:
    size: int
    deadline: float
    enqueue_time: float
    cancelled: bool
    parent: BatchTask | None
    start: int
    stop: int
    index: int
    num_parts: int
    part_results: list[Any] | None
    error: Any
    payload: Any
    waiter: Any
    def __init__(self, size: int, payload: Any = None, waiter: Any = None,
                 deadline: float = ...) -> None: ...
    @property
    def root(self) -> BatchTask: ...
    def finish_part(self, index: int, result: Any, error: Any) -> bool: ...

class Batch:
    tasks: list[BatchTask]
    expired: list[BatchTask]
    size: int
    queue: BatchQueue
    @property
    def num_tasks(self) -> int: ...
    def __len__(self) -> int: ...

class BatchQueue:
    options: Any
    max_batch_size: int
    max_execution_batch_size: int
    max_enqueued_batches: int
    batch_timeout_micros: int
    enable_large_batch_splitting: bool
    process_batch: Callable[[Batch], Any]
    reject_tasks: Callable[[list[BatchTask]], Any] | None
    closed: bool
    def schedule(self, task: BatchTask, notify: bool = True) -> None: ...
    def take_batch(self) -> Batch | None: ...
    def open_batch_wait(self) -> float | None: ...
    def wake_thread(self) -> None: ...
    def close(self) -> None: ...
    @property
    def num_enqueued_tasks(self) -> int: ...
    @property
    def num_enqueued_batches(self) -> int: ...
    @property
    def scheduling_capacity(self) -> int: ...

class SchedulerCore:
    stopped: bool
    def add_queue(self, options: Any, process_batch: Callable[[Batch], Any],
                  reject_tasks: Callable[[list[BatchTask]], Any] | None = None) -> BatchQueue: ...
    def next_batch(self, timeout: float | None = None) -> Batch | None: ...
    def stop(self) -> None: ...
    @property
    def num_queues(self) -> int: ...
