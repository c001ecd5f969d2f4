"""The batching queue and scheduler core, compiled and Python twin alike.

The core is stepped by hand (``next_batch(timeout=0)``) wherever the order matters, so these tests
decide what is ready, not a clock; threads appear only where waking them is the point.
"""

from __future__ import annotations

import importlib
import itertools
import math
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfsfast import _extensions, check_extensions
from tfsfast.batching.batching_parameters import QueueOptions
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.batching._batch_queue", "tfsfast.batching._batch_queue_py")

FULL = "The batch scheduling queue to which this task was submitted is full"
CLOSED = "The batch scheduling queue to which this task was submitted has been closed"
HOUR_MICROS = 3_600_000_000  # a batch timeout no test waits for


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return import_impl(request.param)


class Harness:
    """A core with queues whose processed and rejected tasks are recorded."""

    def __init__(self, impl: ModuleType) -> None:
        self.impl = impl
        self.core = impl.SchedulerCore()
        self.rejected: list[Any] = []

    def queue(self, **options: Any) -> Any:
        options.setdefault("max_execution_batch_size", options.get("max_batch_size", 1000))
        return self.core.add_queue(QueueOptions(**options), lambda batch: None,
                                   self.rejected.extend)

    def task(self, size: int, payload: Any = None, deadline: float = math.inf) -> Any:
        return self.impl.BatchTask(size, payload, None, deadline)

    def schedule(self, queue: Any, *sizes: int) -> list[Any]:
        tasks = [self.task(size, f"t{i}") for i, size in enumerate(sizes)]
        for task in tasks:
            queue.schedule(task)
        return tasks

    def drain(self) -> Iterator[Any]:
        while (batch := self.core.next_batch(0)) is not None:
            yield batch


@pytest.fixture
def harness(impl: ModuleType) -> Iterator[Harness]:
    h = Harness(impl)
    yield h
    h.core.stop()


def sizes(batch: Any) -> list[int]:
    return [task.size for task in batch.tasks]


# --- batch formation ------------------------------------------------------------------------


def test_timeout_zero_batches_whatever_is_waiting(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8)
    tasks = harness.schedule(queue, 1, 2, 3)
    batch = harness.core.next_batch(0)
    assert batch.tasks == tasks
    assert batch.size == 6
    assert batch.queue is queue
    assert batch.expired == []
    assert harness.core.next_batch(0) is None


def test_task_that_does_not_fit_closes_the_open_batch(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8)
    harness.schedule(queue, 3, 3, 3, 5, 8)
    assert [sizes(b) for b in harness.drain()] == [[3, 3], [3, 5], [8]]


def test_open_batch_waits_for_its_timeout_unless_full(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 1, 2)
    assert harness.core.next_batch(0) is None  # partial, and its hour has not passed
    harness.schedule(queue, 1)
    assert sizes(harness.core.next_batch(0)) == [1, 2, 1]  # full now: ready at once


def test_closed_batches_are_ready_before_the_open_batch_times_out(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 3, 3)
    assert [sizes(b) for b in harness.drain()] == [[3]]  # the second is still open
    assert queue.num_enqueued_tasks == 1


def test_partial_batch_runs_once_its_timeout_passes(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=100, batch_timeout_micros=20_000)
    harness.schedule(queue, 1)
    batch = harness.core.next_batch(60)  # returns as soon as the 20 ms have passed
    assert batch is not None and sizes(batch) == [1]


def test_task_larger_than_max_batch_size_is_refused(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4)
    with pytest.raises(ServingError) as info:
        queue.schedule(harness.task(5))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"
    assert queue.num_enqueued_tasks == 0


def test_zero_row_tasks_are_batched(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=2)
    harness.schedule(queue, 0, 2, 0)
    assert [sizes(b) for b in harness.drain()] == [[0, 2, 0]]


def test_negative_task_size_is_a_programming_error(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.BatchTask(-1)


@pytest.mark.parametrize("options", [
    {"max_batch_size": 0},
    {"max_batch_size": 4, "max_enqueued_batches": 0},
    {"max_batch_size": 4, "batch_timeout_micros": -1},
    {"max_batch_size": 4, "enable_large_batch_splitting": True, "max_execution_batch_size": 5},
])
def test_invalid_queue_options_are_refused(harness: Harness, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        harness.queue(**options)


# --- the queue bound ------------------------------------------------------------------------


def test_full_queue_answers_unavailable_at_once(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, max_enqueued_batches=2,
                          batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 4, 4)  # one closed batch and a full open one: 2 batches
    with pytest.raises(ServingError) as info:
        queue.schedule(harness.task(1))
    assert (info.value.code, info.value.message) == (Code.UNAVAILABLE, FULL)
    assert queue.num_enqueued_batches == 2
    harness.core.next_batch(0)  # a thread takes one: room for one more batch
    queue.schedule(harness.task(1))
    assert queue.num_enqueued_tasks == 2


def test_a_task_that_fits_the_open_batch_is_accepted_when_full(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, max_enqueued_batches=1,
                          batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 2, 1, 1)  # all in the one open batch
    with pytest.raises(ServingError):
        queue.schedule(harness.task(1))
    assert queue.num_enqueued_tasks == 3


def test_scheduling_capacity_counts_rows(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, max_enqueued_batches=3,
                          batch_timeout_micros=HOUR_MICROS)
    assert queue.scheduling_capacity == 12
    harness.schedule(queue, 3, 2)
    assert queue.scheduling_capacity == (3 - 2) * 4 + (4 - 2)


# --- splitting ------------------------------------------------------------------------------


def test_large_task_is_split_across_batches(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=10, enable_large_batch_splitting=True,
                          max_execution_batch_size=4, max_enqueued_batches=10)
    small, large = harness.schedule(queue, 3, 10)
    batches = list(harness.drain())
    assert [sizes(b) for b in batches] == [[3, 1], [4], [4], [1]]
    parts = [task for batch in batches for task in batch.tasks][1:]
    assert [(p.parent, p.index, p.start, p.stop) for p in parts] == [
        (large, 0, 0, 1), (large, 1, 1, 5), (large, 2, 5, 9), (large, 3, 9, 10)]
    assert all(p.root is large and p.deadline == large.deadline for p in parts)
    assert large.num_parts == 4
    assert large.part_results == [None] * 4
    assert small.parent is None and small.root is small
    assert (small.start, small.stop, small.num_parts) == (0, 3, 1)


def test_split_starts_a_new_batch_when_the_open_one_is_full(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8, enable_large_batch_splitting=True,
                          max_execution_batch_size=4)
    harness.schedule(queue, 4, 6)
    assert [sizes(b) for b in harness.drain()] == [[4], [4], [2]]


def test_splitting_still_refuses_tasks_above_max_batch_size(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8, enable_large_batch_splitting=True,
                          max_execution_batch_size=4)
    with pytest.raises(ServingError) as info:
        queue.schedule(harness.task(9))
    assert info.value.message == "Task size 9 is larger than maximum input batch size 8"


def test_splitting_queue_is_full_when_the_task_exceeds_its_capacity(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8, enable_large_batch_splitting=True,
                          max_execution_batch_size=4, max_enqueued_batches=2,
                          batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 3)
    assert queue.scheduling_capacity == 5
    with pytest.raises(ServingError) as info:
        queue.schedule(harness.task(6))
    assert (info.value.code, info.value.message) == (Code.UNAVAILABLE, FULL)
    harness.schedule(queue, 5)
    assert queue.scheduling_capacity == 0


def test_finish_part_keeps_results_and_the_first_error(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8, enable_large_batch_splitting=True,
                          max_execution_batch_size=2)
    (task,) = harness.schedule(queue, 6)
    assert task.num_parts == 3
    assert task.finish_part(2, "c", None) is False
    assert task.finish_part(0, None, "first") is False
    assert task.finish_part(1, None, "second") is True
    assert task.part_results == [None, None, "c"]
    assert task.error == "first"


def test_finish_part_is_for_split_tasks(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.BatchTask(1).finish_part(0, None, None)


# --- formation: deadlines and cancellation --------------------------------------------------


def test_expired_tasks_are_set_apart_and_cancelled_ones_dropped(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=10)
    live = harness.task(1, "live")
    expired = harness.task(2, "expired", deadline=harness.impl.monotonic() - 1)
    cancelled = harness.task(3, "cancelled")
    later = harness.task(1, "later", deadline=harness.impl.monotonic() + 3600)
    for task in (live, expired, cancelled, later):
        queue.schedule(task)
    cancelled.cancelled = True
    batch = harness.core.next_batch(0)
    assert batch.tasks == [live, later]
    assert batch.expired == [expired]
    assert batch.size == 2


def test_cancelling_a_split_task_drops_all_its_parts(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=8, enable_large_batch_splitting=True,
                          max_execution_batch_size=2)
    (task,) = harness.schedule(queue, 6)
    first = harness.core.next_batch(0)
    assert sizes(first) == [2]
    task.cancelled = True
    rest = list(harness.drain())
    assert [b.tasks for b in rest] == [[], []]


# --- fairness, close, stop ------------------------------------------------------------------


def test_threads_serve_queues_round_robin(harness: Harness) -> None:
    a = harness.queue(max_batch_size=1)
    b = harness.queue(max_batch_size=1)
    harness.schedule(a, 1, 1, 1)
    harness.schedule(b, 1, 1, 1)
    order = ["a" if batch.queue is a else "b" for batch in harness.drain()]
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_close_rejects_waiting_tasks_and_refuses_new_ones(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=2, batch_timeout_micros=HOUR_MICROS)
    tasks = harness.schedule(queue, 2, 1)
    assert harness.core.num_queues == 1
    queue.close()
    assert harness.rejected == tasks
    assert queue.closed
    assert harness.core.num_queues == 0
    with pytest.raises(ServingError) as info:
        queue.schedule(harness.task(1))
    assert (info.value.code, info.value.message) == (Code.UNAVAILABLE, CLOSED)
    queue.close()  # idempotent
    assert harness.rejected == tasks


def test_closing_one_queue_keeps_the_round_robin_going(harness: Harness) -> None:
    queues = [harness.queue(max_batch_size=1) for _ in range(3)]
    for queue in queues:
        harness.schedule(queue, 1, 1)
    first = harness.core.next_batch(0)
    assert first.queue is queues[0]
    queues[1].close()
    assert [b.queue for b in harness.drain()] == [queues[2], queues[0], queues[2]]


def test_stop_closes_queues_and_ends_next_batch(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=2, batch_timeout_micros=HOUR_MICROS)
    (task,) = harness.schedule(queue, 1)
    harness.core.stop()
    assert harness.rejected == [task]
    assert harness.core.stopped
    assert harness.core.next_batch(None) is None  # returns at once: stopped
    with pytest.raises(RuntimeError):
        harness.queue(max_batch_size=1)


# --- waking batch threads -------------------------------------------------------------------


def _next_batch_in_thread(core: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(core.next_batch(None)), daemon=True)
    thread.start()
    return thread, got


def test_a_waiting_thread_wakes_for_a_new_task(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4)
    thread, got = _next_batch_in_thread(harness.core)
    (task,) = harness.schedule(queue, 1)
    thread.join(30)
    assert not thread.is_alive()
    assert got[0].tasks == [task]


def test_a_waiting_thread_wakes_for_an_open_batch_timeout(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, batch_timeout_micros=20_000)
    thread, got = _next_batch_in_thread(harness.core)
    (task,) = harness.schedule(queue, 1)  # not full: the thread must wake at its timeout
    thread.join(30)
    assert not thread.is_alive()
    assert got[0].tasks == [task]


def test_a_task_scheduled_without_notify_waits_for_wake_thread(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4)
    thread, got = _next_batch_in_thread(harness.core)
    time.sleep(0.5)  # let the thread go to sleep in next_batch
    task = harness.task(1)
    queue.schedule(task, False)  # its caller takes the batch itself, or wakes a thread later
    time.sleep(0.3)
    assert thread.is_alive() and queue.num_enqueued_tasks == 1
    queue.wake_thread()
    thread.join(30)
    assert not thread.is_alive()
    assert got[0].tasks == [task]


def test_take_batch_forms_the_next_ready_batch_in_the_caller(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4)
    kept, gone, late = harness.task(1), harness.task(2), harness.task(1, deadline=0.0)
    for task in (kept, gone):
        queue.schedule(task, False)
    gone.cancelled = True
    queue.schedule(late, False)  # expires in the queue
    batch = queue.take_batch()
    assert batch.tasks == [kept] and batch.size == 1 and batch.expired == [late]
    assert queue.take_batch() is None
    assert harness.core.next_batch(0) is None


def test_take_batch_leaves_an_open_batch_within_its_timeout(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, batch_timeout_micros=HOUR_MICROS)
    harness.schedule(queue, 1)
    assert queue.take_batch() is None
    assert queue.num_enqueued_tasks == 1
    harness.schedule(queue, 3)  # full: ready
    assert sizes(queue.take_batch()) == [1, 3]


def test_open_batch_wait_says_when_the_open_batch_times_out(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4, batch_timeout_micros=HOUR_MICROS)
    assert queue.open_batch_wait() is None  # nothing open
    harness.schedule(queue, 1)
    assert 3000 < queue.open_batch_wait() <= 3600
    at_once = harness.queue(max_batch_size=4)
    harness.schedule(at_once, 1)
    assert at_once.open_batch_wait() == 0.0


def test_take_batch_of_a_closed_queue_is_none(harness: Harness) -> None:
    queue = harness.queue(max_batch_size=4)
    harness.schedule(queue, 1)
    queue.close()
    assert queue.take_batch() is None
    assert [t.payload for t in harness.rejected] == ["t0"]


def test_stop_wakes_waiting_threads(harness: Harness) -> None:
    harness.queue(max_batch_size=4)
    threads = [_next_batch_in_thread(harness.core) for _ in range(3)]
    harness.core.stop()
    for thread, got in threads:
        thread.join(30)
        assert not thread.is_alive()
        assert got == [None]


def test_next_batch_gives_up_after_its_timeout(harness: Harness) -> None:
    harness.queue(max_batch_size=4)
    assert harness.core.next_batch(0.01) is None


def test_concurrent_producers_and_consumers_lose_nothing(harness: Harness) -> None:
    """Every task scheduled by 4 threads comes out in exactly one batch of at most 8 rows."""
    queue = harness.queue(max_batch_size=8, max_enqueued_batches=1_000_000)
    seen: list[Any] = []
    seen_lock = threading.Lock()
    oversized: list[int] = []

    def consume() -> None:
        while (batch := harness.core.next_batch(None)) is not None:
            if batch.size > 8:
                oversized.append(batch.size)
            with seen_lock:
                seen.extend(task.payload for task in batch.tasks)

    def produce(worker: int) -> None:
        for i in range(2000):
            queue.schedule(harness.task(1 + (i % 3), (worker, i)))

    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
    producers = [threading.Thread(target=produce, args=(w,), daemon=True) for w in range(4)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join(120)
    # Everything produced is now enqueued or taken; let the consumers empty the queue.
    while queue.num_enqueued_tasks:
        threading.Event().wait(0.01)
    harness.core.stop()
    for thread in consumers:
        thread.join(120)
    assert not oversized
    assert sorted(seen) == sorted((w, i) for w in range(4) for i in range(2000))


# --- the compiled queue against its twin, on random operation sequences ---------------------

_TWIN = "tfsfast.batching._batch_queue_py"
_COMPILED = "tfsfast.batching._batch_queue"


def _run_ops(module: ModuleType, options: QueueOptions,
             ops: list[tuple[str, int]]) -> tuple[list[Any], list[tuple[int, int, int]]]:
    """The outcome of each op, then every (task id, start, stop) row range that left the queue:
    in batches, or (at the end) rejected by close."""
    core = module.SchedulerCore()
    rejected: list[Any] = []
    queue = core.add_queue(options, lambda batch: None, rejected.extend)
    outcomes: list[Any] = []
    ranges: list[tuple[int, int, int]] = []

    def record(tasks: list[Any]) -> list[tuple[int, int, int]]:
        rows = [(t.root.payload, t.start, t.stop) for t in tasks]
        ranges.extend(rows)
        return rows

    for n, (op, size) in enumerate(ops):
        if op == "schedule":
            try:
                queue.schedule(module.BatchTask(size, n))
                outcomes.append("ok")
            except ServingError as e:
                outcomes.append(e.code.name)
        else:
            batch = core.next_batch(0)
            if batch is not None:
                assert batch.size <= options.max_execution_batch_size
            outcomes.append(None if batch is None else record(batch.tasks))
    outcomes.append((queue.num_enqueued_tasks, queue.num_enqueued_batches,
                     queue.scheduling_capacity))
    core.stop()  # closes the queue: what is still waiting is rejected
    outcomes.append(record(rejected))
    return outcomes, ranges


@st.composite
def _scenarios(draw: Any) -> tuple[QueueOptions, list[tuple[str, int]]]:
    max_batch = draw(st.integers(1, 12))
    splitting = draw(st.booleans())
    options = QueueOptions(
        max_batch_size=max_batch,
        batch_timeout_micros=draw(st.sampled_from([0, HOUR_MICROS])),
        max_enqueued_batches=draw(st.integers(1, 5)),
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=draw(st.integers(1, max_batch)) if splitting else max_batch)
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("schedule"), st.integers(0, max_batch + 2)),
        st.tuples(st.just("take"), st.just(0))), max_size=40))
    return options, ops


@settings(max_examples=200, deadline=None)
@given(_scenarios())
def test_compiled_queue_matches_its_twin(scenario: tuple[QueueOptions, Any]) -> None:
    """The twin keeps every accepted task's rows, once, in order (split parts contiguous), and
    the compiled queue gives exactly the twin's outcomes."""
    options, ops = scenario
    twin = _run_ops(importlib.import_module(_TWIN), options, ops)
    outcomes, ranges = twin
    accepted = [n for n, ((op, _), out) in enumerate(zip(ops, outcomes, strict=False))
                if op == "schedule" and out == "ok"]
    by_task: dict[int, list[tuple[int, int]]] = {}
    for task, start, stop in ranges:
        by_task.setdefault(task, []).append((start, stop))
    assert sorted(by_task) == accepted
    for task, parts in by_task.items():
        assert parts[0][0] == 0 and parts[-1][1] == ops[task][1]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    if not _extensions.NO_EXTENSIONS:
        # The same source compiled: a comparison only if it really is the extension module.
        assert check_extensions.check_module(_COMPILED).status == "compiled"
        assert _run_ops(importlib.import_module(_COMPILED), options, ops) == twin
