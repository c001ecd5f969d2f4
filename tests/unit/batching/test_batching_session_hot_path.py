"""The batching session's per-task modules: the compiled one against its twin.

``_batching_session`` (compiled) and ``_batching_session_py`` must give the same results to the
byte: the same group keys, the same row views of the outputs (dtype, shape, strides, flags and
base, as numpy's slicing makes them), and every task of a batch answered, even when something
raises outside a run. The scheduler is stepped by hand (no thread).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tfsfast.batching import batching_session
from tfsfast.batching.batching_parameters import (
    BatchingSessionOptions,
    QueueOptions,
    SchedulerOptions,
)
from tfsfast.batching.batching_session import BatchingSession
from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler
from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

PAIRS = implementations(
    ("tfsfast.batching._batch_queue", "tfsfast.batching._batching_session"),
    ("tfsfast.batching._batch_queue_py", "tfsfast.batching._batching_session_py"))
COMPILED = implementations("tfsfast.batching._batching_session",
                           "tfsfast.batching._batching_session_py")[:1]

X = TensorInfo("x", "x:0", DataType.DT_FLOAT, (-1, -1))


class OutputsSession:
    """One signature ``f`` (input x, outputs y and z) whose run returns ``make(rows)``."""

    def __init__(self, make: Callable[[int], dict[str, Any]]) -> None:
        self.make = make
        self.inputs: list[dict[str, Any]] = []  # every run's inputs
        self.signatures = {"f": Signature("f", "tensorflow/serving/predict", {"x": X},
                                          {"y": X, "z": X})}

    def run(self, key: str, inputs: dict[str, Any], output_aliases: Any = None,
            timeout_in_ms: int = 0) -> dict[str, Any]:
        self.inputs.append(inputs)
        return self.make(inputs["x"].shape[0])


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    queue_name, session_name = request.param
    return import_impl(queue_name), import_impl(session_name)


@pytest.fixture
def batching(pair: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    """A function making (BatchingSession, scheduler) over an ``OutputsSession``."""
    schedulers: list[SharedBatchScheduler] = []

    def make(outputs: Callable[[int], dict[str, Any]]) -> tuple[BatchingSession, Any]:
        scheduler = SharedBatchScheduler(SchedulerOptions(1), pair[0], start=False)
        schedulers.append(scheduler)
        session = BatchingSession(OutputsSession(outputs), scheduler,
                                  QueueOptions(max_batch_size=100, max_execution_batch_size=100),
                                  BatchingSessionOptions())
        assert session.implementation is pair[1]
        return session, scheduler

    yield make
    for scheduler in schedulers:
        scheduler.stop()


def run_batch(session: BatchingSession, scheduler: Any, sizes: list[int],
              output_aliases: Any = None) -> list[concurrent.futures.Future[Any]]:
    waiters = []
    for size in sizes:
        waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert session.schedule("f", {"x": np.ones((size, 2), np.float32)}, output_aliases, 0,
                                None, waiter) is not None
        waiters.append(waiter)
    assert scheduler.step() is not None
    assert scheduler.step() is None  # one batch
    return waiters


class Subclass(np.ndarray):
    pass


def _read_only(rows: int) -> np.ndarray:
    array = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    array.flags.writeable = False
    return array


def _odd_strides(rows: int) -> np.ndarray:
    # C-contiguous, but a size-1 dimension with a stride no new array would have.
    base = np.arange(rows * 4, dtype=np.int64).reshape(rows, 4)
    return np.lib.stride_tricks.as_strided(base, (rows, 1, 4), (32, 7, 8))


OUTPUTS: dict[str, Callable[[int], np.ndarray]] = {
    "float rows": lambda rows: np.arange(rows * 3, dtype=np.float32).reshape(rows, 3),
    "vector": lambda rows: np.arange(rows, dtype=np.int64),
    "rank 4": lambda rows: np.zeros((rows, 2, 1, 3), np.float64),
    "zero-size rows": lambda rows: np.zeros((rows, 0), np.float32),
    "strings": lambda rows: np.array([b"a" * i for i in range(rows)], dtype=object),
    "fixed-width strings": lambda rows: np.array([f"s{i}" for i in range(rows)]),
    "big-endian": lambda rows: np.arange(rows, dtype=">i4"),
    "read-only": _read_only,
    "not contiguous": lambda rows: np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)[:, ::2],
    "Fortran order": lambda rows: np.asfortranarray(np.ones((rows, 3), np.float32)),
    "odd strides": _odd_strides,
    "subclass": lambda rows: np.ones((rows, 2), np.float32).view(Subclass),
}


@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_row_views_are_numpys_slices(batching: Any, kind: str) -> None:
    made: list[dict[str, Any]] = []

    def outputs(rows: int) -> dict[str, Any]:
        made.append({"y": OUTPUTS[kind](rows), "z": np.arange(rows)})
        return made[-1]

    session, scheduler = batching(outputs)
    sizes = [2, 0, 3, 1]
    waiters = run_batch(session, scheduler, sizes)
    (full,) = made
    offset = 0
    for size, waiter in zip(sizes, waiters, strict=True):
        result = waiter.result(0)
        assert list(result) == ["y", "z"]
        for alias, got in result.items():
            want = full[alias][offset:offset + size]
            assert type(got) is type(want)
            assert (got.dtype, got.shape, got.strides) == (want.dtype, want.shape, want.strides)
            assert got.flags == want.flags
            assert got.base is want.base
            assert got.__array_interface__["data"] == want.__array_interface__["data"]
            np.testing.assert_array_equal(got, want)
        offset += size


INPUTS: dict[str, Callable[[int, int], np.ndarray]] = {
    "float rows": lambda i, rows: np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + i,
    "vector": lambda i, rows: np.arange(rows, dtype=np.int64) * (i + 1),
    "rank 3": lambda i, rows: np.full((rows, 2, 3), i, np.float64),
    "bool": lambda i, rows: np.arange(rows * 2).reshape(rows, 2) % (i + 2) == 0,
    "half": lambda i, rows: np.full((rows, 2), i / 3, np.float16),
    "big-endian": lambda i, rows: np.arange(rows * 2, dtype=">i4").reshape(rows, 2) - i,
    "zero-size rows": lambda i, rows: np.zeros((rows, 0), np.float32),
    "strings of one width": lambda i, rows: np.array([b"ab"] * rows, "S2").reshape(rows, 1),
    "strings of other widths": lambda i, rows: np.array([b"x" * (i + 1)] * rows,
                                                        f"S{i + 1}").reshape(rows, 1),
    "unicode": lambda i, rows: np.array([f"r{i}"] * rows, "U2").reshape(rows, 1),
    "objects": lambda i, rows: np.array([[b"o" * i]] * rows + [[None]], dtype=object)[:rows],
    "not contiguous": lambda i, rows: (np.arange(rows * 4, dtype=np.float32)
                                       .reshape(rows, 4)[:, ::2] if i % 2 else
                                       np.ones((rows, 2), np.float32)),
    "Fortran order": lambda i, rows: np.asfortranarray(np.full((rows, 3), i, np.float32)),
    "read-only": lambda i, rows: _read_only(rows),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_merged_inputs_are_numpys_concatenation(batching: Any, kind: str) -> None:
    # The compiled session copies same-dtype C-contiguous rows itself; whatever the inputs,
    # the batch's tensor must be what np.concatenate makes of them, in a buffer of its own.
    session, scheduler = batching(lambda rows: {"y": np.zeros((rows, 1)), "z": np.zeros(rows)})
    sizes = [2, 0, 3, 1]
    arrays = [INPUTS[kind](i, size) for i, size in enumerate(sizes)]
    waiters = []
    for array in arrays:
        waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert session.schedule("f", {"x": array}, None, 0, None, waiter) is not None
        waiters.append(waiter)
    while scheduler.step() is not None:
        pass
    for waiter in waiters:
        waiter.result(0)
    merged = [inputs["x"] for inputs in session.session.inputs]
    want = np.concatenate(arrays)
    got = np.concatenate(merged) if len(merged) > 1 else merged[0]  # strings may group apart
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    if want.dtype == object:
        assert got.tolist() == want.tolist()
    else:
        assert got.tobytes() == want.tobytes()
    for batch in merged:
        assert batch.flags.c_contiguous
        assert not any(np.shares_memory(batch, array) for array in arrays if array.size)


def test_an_output_filter_gets_views_in_its_order(batching: Any) -> None:
    session, scheduler = batching(lambda rows: {"y": np.ones((rows, 2)), "z": np.zeros(rows)})
    (waiter,) = run_batch(session, scheduler, [2], ["z", "y"])
    result = waiter.result(0)
    assert list(result) == ["z", "y"]
    assert result["z"].base is not None and result["y"].shape == (2, 2)


def test_a_missing_output_answers_every_task(batching: Any) -> None:
    # The split (after the run) raises: the tasks not answered yet fail INTERNAL.
    session, scheduler = batching(lambda rows: {"y": np.ones((rows, 2))})
    waiters = run_batch(session, scheduler, [1, 2], ["z", "y"])
    for waiter in waiters:
        error = waiter.exception(0)
        assert isinstance(error, ServingError)
        assert (error.code, error.message) == (Code.INTERNAL, "Batched run failed: 'z'")
    assert waiters[0].exception(0) is not waiters[1].exception(0)


def test_a_raise_outside_the_run_answers_every_task(pair: tuple[ModuleType, ModuleType],
                                                    batching: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # A task whose payload is not a request breaks the grouping of the whole batch: the batch's
    # tasks are all answered (INTERNAL), and the error reaches the caller's log.
    session, scheduler = batching(lambda rows: {"y": np.ones((rows, 2)), "z": np.ones(rows)})
    good: concurrent.futures.Future[Any] = concurrent.futures.Future()
    session.schedule("f", {"x": np.ones((1, 2), np.float32)}, None, 0, None, good)
    bad: concurrent.futures.Future[Any] = concurrent.futures.Future()
    session.queue("f").schedule(pair[0].BatchTask(1, object(), bad))
    with caplog.at_level(logging.ERROR):
        assert scheduler.step() is not None
    for waiter in (good, bad):
        error = waiter.exception(0)
        assert isinstance(error, ServingError)
        assert error.code == Code.INTERNAL
        assert error.message.startswith("Batched run failed: ")
    assert "Batch processing failed" in caplog.text


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("pad", [False, True])
def test_group_keys_are_the_twins(name: str, pad: bool) -> None:
    from tfsfast.batching import _batching_session_py as twin

    compiled = import_impl(name)
    arrays = [np.ones((2, 3), np.float32), np.ones((1,), np.int64), np.array([b"ab"]),
              np.array(["x"]), np.array([b"x"], dtype=object), np.ones((0, 2, 0), ">f8"),
              np.ones((1, 1), np.float32).view(np.recarray)]
    for array in arrays:
        assert compiled.group_key([array], pad) == twin.group_key([array], pad)
    assert compiled.group_key(arrays, pad) == twin.group_key(arrays, pad)


@pytest.mark.parametrize("name", COMPILED)
def test_the_compiled_module_runs_over_the_compiled_queue_only(name: str) -> None:
    from tfsfast.batching import _batch_queue_py

    compiled = import_impl(name)
    scheduler = SharedBatchScheduler(SchedulerOptions(1), _batch_queue_py, start=False)
    try:
        assert batching_session.hot_path_for(_batch_queue_py).IMPLEMENTATION == "python"
        with pytest.raises(TypeError, match="compiled batching queue"):
            BatchingSession(OutputsSession(dict), scheduler,
                            QueueOptions(max_batch_size=8, max_execution_batch_size=8),
                            implementation=compiled)
    finally:
        scheduler.stop()
