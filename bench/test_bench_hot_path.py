"""pytest-benchmark suite for hot-path components: the batch queue and the handle table.

Run and keep a baseline, then compare a later run against it::

    .venv/bin/python -m pytest bench/test_bench_hot_path.py --benchmark-only --benchmark-autosave
    .venv/bin/python -m pytest bench/test_bench_hot_path.py --benchmark-only \\
        --benchmark-compare --benchmark-group-by=group

Each benchmark runs with the compiled module and its Python twin (ids ``compiled`` and
``python``), so one run also gives the compiled/twin ratio. Groups:

- ``queue: enqueue+dequeue``: one task scheduled and taken back as a batch (the latency path
  under light load), and 64 tasks scheduled then taken as one batch (per-batch cost under load).
- ``queue: task``: building a ``BatchTask``.
- ``queue: hand-off``: a task scheduled from this thread until a sleeping batch thread has it
  (the condition-variable wake-up; includes thread switches, so it is noisy on shared machines).
- ``batching session``: ``BatchingSession.schedule`` of one request and its batch processed
  (merge, run on a no-op session, split, completion) on this thread.
- ``handle table: find``: ``find`` of the latest version, idle and while another thread swaps
  snapshots with ``update`` as fast as it can.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tfsfast.batching.batching_parameters import (
    BatchingSessionOptions,
    QueueOptions,
    SchedulerOptions,
)
from tfsfast.testing.test_util import implementations

QUEUE_IMPLS = implementations("tfsfast.batching._batch_queue", "tfsfast.batching._batch_queue_py")
TABLE_IMPLS = implementations("tfsfast.core._handle_table", "tfsfast.core._handle_table_py")

LARGE_QUEUE = QueueOptions(max_batch_size=1_000_000, max_execution_batch_size=1_000_000,
                           max_enqueued_batches=1_000_000)


@pytest.fixture(params=QUEUE_IMPLS)
def queue_impl(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


@pytest.fixture(params=TABLE_IMPLS)
def table_impl(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


@pytest.fixture
def core(queue_impl: ModuleType) -> Iterator[Any]:
    core = queue_impl.SchedulerCore()
    yield core
    core.stop()


@pytest.mark.benchmark(group="queue: enqueue+dequeue 1")
def test_enqueue_dequeue_one(benchmark: Any, queue_impl: ModuleType, core: Any) -> None:
    queue = core.add_queue(LARGE_QUEUE, lambda batch: None)
    task_type = queue_impl.BatchTask

    def cycle() -> Any:
        queue.schedule(task_type(1))
        return core.next_batch(0)

    batch = benchmark(cycle)
    assert batch.size == 1


@pytest.mark.benchmark(group="queue: enqueue+dequeue 64")
def test_enqueue_64_dequeue_one_batch(benchmark: Any, queue_impl: ModuleType, core: Any) -> None:
    queue = core.add_queue(LARGE_QUEUE, lambda batch: None)
    task_type = queue_impl.BatchTask

    def cycle() -> Any:
        schedule = queue.schedule
        for _ in range(64):
            schedule(task_type(1))
        return core.next_batch(0)

    batch = benchmark(cycle)
    assert batch.size == 64


@pytest.mark.benchmark(group="queue: task")
def test_task_creation(benchmark: Any, queue_impl: ModuleType) -> None:
    task_type = queue_impl.BatchTask
    task = benchmark(task_type, 4, None, None, 1e18)
    assert task.size == 4


@pytest.mark.benchmark(group="queue: hand-off to a batch thread")
def test_hand_off_to_a_sleeping_batch_thread(benchmark: Any, queue_impl: ModuleType) -> None:
    from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler

    took = threading.Event()
    scheduler = SharedBatchScheduler(SchedulerOptions(1, "bench"), queue_impl)
    try:
        queue = scheduler.add_queue(LARGE_QUEUE, lambda batch: took.set())
        task_type = queue_impl.BatchTask

        def hand_off() -> bool:
            took.clear()
            queue.schedule(task_type(1))
            return took.wait(10)

        assert benchmark(hand_off)
    finally:
        scheduler.stop()


class _NoOpSession:
    def __init__(self) -> None:
        from tfsfast.runtime.dtypes import DataType
        from tfsfast.runtime.signature import Signature, TensorInfo

        x = TensorInfo("x", "x:0", DataType.DT_FLOAT, (-1, 1))
        self.signatures = {"serving_default": Signature(
            "serving_default", "tensorflow/serving/predict", {"x": x}, {"y": x})}

    def run(self, key: str, inputs: dict[str, Any], output_aliases: Any,
            timeout_in_ms: int) -> dict[str, Any]:
        return {"y": inputs["x"]}


@pytest.mark.benchmark(group="batching session: schedule+process 1")
def test_batching_session_one_request(benchmark: Any, queue_impl: ModuleType) -> None:
    from tfsfast.batching.batching_session import BatchingSession
    from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler

    scheduler = SharedBatchScheduler(SchedulerOptions(1), queue_impl, start=False)
    session = BatchingSession(_NoOpSession(), scheduler, LARGE_QUEUE, BatchingSessionOptions())
    inputs = {"x": np.ones((1, 1), np.float32)}

    def one() -> Any:
        waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
        session.schedule("serving_default", inputs, None, 0, None, waiter)
        scheduler.step()
        return waiter.result(0)

    try:
        assert benchmark(one)["y"].shape == (1, 1)
    finally:
        scheduler.stop()


def _table(table_impl: ModuleType) -> tuple[Any, dict[str, list[Any]]]:
    from tfsfast.core.servable_handle import ServingEntry
    from tfsfast.core.servable_id import ServableId

    snapshot = {f"model{m}": [ServingEntry(ServableId(f"model{m}", v), (m, v)) for v in (1, 2, 3)]
                for m in range(20)}
    table = table_impl.HandleTable()
    table.update(snapshot)
    return table, snapshot


@pytest.mark.benchmark(group="handle table: find latest")
def test_handle_table_find_idle(benchmark: Any, table_impl: ModuleType) -> None:
    table, _ = _table(table_impl)
    entry = benchmark(table.find, "model7", None, table_impl.LATEST)
    assert entry.servable == (7, 3)


def _find_beside_a_swapping_thread(benchmark: Any, table_impl: ModuleType,
                                   same_table: bool) -> None:
    """``find`` while another thread swaps snapshots in a loop: into the table being read
    (``same_table``), or into another table, which costs the reader the same GIL sharing but
    nothing of the table's own. The pair's ratio is what swapping does to reads."""
    table, snapshot = _table(table_impl)
    target = table if same_table else _table(table_impl)[0]
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        while not stop.is_set():
            target.update(snapshot)
            swaps += 1

    updater = threading.Thread(target=swap, daemon=True)
    updater.start()
    try:
        entry = benchmark(table.find, "model7", None, table_impl.LATEST)
    finally:
        stop.set()
        updater.join(10)
    assert entry.servable == (7, 3)
    assert swaps > 0


@pytest.mark.benchmark(group="handle table: find latest")
def test_handle_table_find_during_updates(benchmark: Any, table_impl: ModuleType) -> None:
    _find_beside_a_swapping_thread(benchmark, table_impl, same_table=True)


@pytest.mark.benchmark(group="handle table: find latest")
def test_handle_table_find_beside_updates_elsewhere(benchmark: Any,
                                                    table_impl: ModuleType) -> None:
    _find_beside_a_swapping_thread(benchmark, table_impl, same_table=False)
