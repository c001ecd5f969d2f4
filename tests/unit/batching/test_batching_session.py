"""BatchingSession: merge, pad, split, deadlines, cancellation and wake-ups, over a fake session.

The scheduler runs without threads and is stepped by hand, so each test decides which requests
meet in a batch. Every test runs with the compiled queue and per-task module, with both Python
twins, and with the twin per-task module over the compiled queue (what a failed build of the
per-task module gives).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
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
from tfsfast.batching.batching_session import BatchingSession
from tfsfast.batching.shared_batch_scheduler import SharedBatchScheduler
from tfsfast.core.servable_id import ServableId
from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.testing.wait import WAIT_SECONDS, wait_until
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

_COMPILED, _TWIN = implementations(
    ("tfsfast.batching._batch_queue", "tfsfast.batching._batching_session"),
    ("tfsfast.batching._batch_queue_py", "tfsfast.batching._batching_session_py"))
IMPLS = [_COMPILED, _TWIN, pytest.param(
    ("tfsfast.batching._batch_queue", "tfsfast.batching._batching_session_py"),
    id="twin_on_compiled_queue", marks=_COMPILED.marks)]

RANK_ZERO = "Batching Run() input tensors must have at least one dimension"
UNEQUAL = "Batching Run() input tensors must have equal 0th-dimension size"
EXPIRED = "Run() timeout exceeded while waiting in batching queue"
CLOSED = "The batch scheduling queue to which this task was submitted has been closed"
FULL = "The batch scheduling queue to which this task was submitted is full"


def _info(alias: str, dtype: DataType, shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(alias, f"{alias}:0", dtype, shape)


def _signature(key: str, inputs: dict[str, TensorInfo], outputs: dict[str, TensorInfo]) -> Any:
    return Signature(key, "tensorflow/serving/predict", inputs, outputs)


FLOAT, INT64, STRING = DataType.DT_FLOAT, DataType.DT_INT64, DataType.DT_STRING


class FakeSession:
    """A runtime session whose signatures compute per row, so every row's answer is known.

    ``predict``: x float [-1, -1], k int64 [-1] -> y = 2x, s = sum(x, axis 1) + k.
    ``words``: w string [-1] -> n = len(w) (int64). ``scalar``: x -> a rank-0 output.
    ``extra_row``: x -> one row too many. ``fails``: raises. ``constant``: no inputs.
    ``calls`` records (signature, {alias: array}, timeout_in_ms) of every run.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, np.ndarray], int]] = []
        x = _info("x", FLOAT, (-1, -1))
        self.signatures = {
            "predict": _signature("predict", {"k": _info("k", INT64, (-1,)), "x": x},
                                  {"s": _info("s", FLOAT, (-1,)), "y": x}),
            "words": _signature("words", {"w": _info("w", STRING, (-1,))},
                                {"n": _info("n", INT64, (-1,))}),
            "scalar": _signature("scalar", {"x": x}, {"y": _info("y", FLOAT, ())}),
            "extra_row": _signature("extra_row", {"x": x}, {"y": x}),
            "fails": _signature("fails", {"x": x}, {"y": x}),
            "constant": _signature("constant", {}, {"c": _info("c", FLOAT, ())}),
        }
        self.meta_graph_def = None
        self.closed = False

    def run(self, key: str, inputs: dict[str, Any], output_aliases: Any = None,
            timeout_in_ms: int = 0) -> dict[str, np.ndarray]:
        self.calls.append((key, {a: np.array(v) for a, v in inputs.items()}, timeout_in_ms))
        for alias, value in inputs.items():
            expected = {"x": np.float32, "k": np.int64}.get(alias)
            if expected is not None and np.asarray(value).dtype != expected:
                raise ServingError(Code.INVALID_ARGUMENT, f"wrong dtype for {alias}")
        if key == "predict":
            x, k = inputs["x"], inputs["k"]
            out = {"s": x.sum(axis=1) + k.astype(np.float32), "y": x * 2}
        elif key == "words":
            out = {"n": np.array([len(w) for w in inputs["w"]], dtype=np.int64)}
        elif key == "scalar":
            out = {"y": np.float32(1.0)}
        elif key == "extra_row":
            out = {"y": np.concatenate([inputs["x"], inputs["x"][:1]])}
        elif key == "fails":
            raise ServingError(Code.INTERNAL, "the graph failed")
        else:
            out = {"c": np.float32(7.0)}
        if output_aliases:
            out = {a: out[a] for a in output_aliases}
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture(params=IMPLS)
def impls(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(the queue module, the per-task module)."""
    queue_name, session_name = request.param
    return import_impl(queue_name), import_impl(session_name)


@pytest.fixture
def impl(impls: tuple[ModuleType, ModuleType]) -> ModuleType:
    """The queue module."""
    return impls[0]


class Setup:
    def __init__(self, impls: tuple[ModuleType, ModuleType], queue: QueueOptions,
                 options: BatchingSessionOptions,
                 run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY) -> None:
        self.fake = FakeSession()
        self.scheduler = SharedBatchScheduler(SchedulerOptions(1), impls[0], start=False)
        self.batching = BatchingSession(self.fake, self.scheduler, queue, options, impls[1],
                                        run_cost_policy)
        assert self.batching.implementation is impls[1]

    def schedule(self, key: str, inputs: dict[str, Any], output_aliases: Any = None,
                 timeout_in_ms: int = 0, deadline: float | None = None) -> Any:
        waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
        task = self.batching.schedule(key, inputs, output_aliases, timeout_in_ms, deadline,
                                      waiter)
        assert task is not None, "expected the run to be batched"
        return waiter

    def step_all(self) -> int:
        batches = 0
        while self.scheduler.step() is not None:
            batches += 1
        return batches


@pytest.fixture
def make(impls: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    made: list[Setup] = []

    def factory(max_batch_size: int = 100, options: BatchingSessionOptions | None = None,
                run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY, **queue: Any) -> Setup:
        queue.setdefault("max_execution_batch_size", max_batch_size)
        setup = Setup(impls, QueueOptions(max_batch_size=max_batch_size, **queue),
                      options or BatchingSessionOptions(), run_cost_policy)
        made.append(setup)
        return setup

    yield factory
    for setup in made:
        setup.scheduler.stop()


def predict_inputs(rows: int, start: float) -> dict[str, np.ndarray]:
    x = (np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + start)
    return {"x": x, "k": np.arange(rows, dtype=np.int64) + int(start)}


def expected_predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x, k = inputs["x"], inputs["k"]
    return {"s": x.sum(axis=1) + k, "y": x * 2}


def assert_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for alias in want:
        np.testing.assert_array_equal(got[alias], want[alias])


# --- correctness ----------------------------------------------------------------------------


def test_every_request_gets_exactly_its_own_rows(make: Any) -> None:
    setup = make()
    requests = [predict_inputs(rows, 100.0 * i) for i, rows in enumerate([1, 3, 2, 5, 1])]
    waiters = [setup.schedule("predict", r) for r in requests]
    assert setup.step_all() == 1
    (call,) = setup.fake.calls
    assert call[0] == "predict"
    np.testing.assert_array_equal(call[1]["x"], np.concatenate([r["x"] for r in requests]))
    for request, waiter in zip(requests, waiters, strict=True):
        assert_outputs(waiter.result(0), expected_predict(request))


def test_batches_respect_max_batch_size(make: Any) -> None:
    setup = make(max_batch_size=4)
    requests = [predict_inputs(rows, 10.0 * i) for i, rows in enumerate([3, 2, 2, 4])]
    waiters = [setup.schedule("predict", r) for r in requests]
    assert setup.step_all() == 3
    assert [c[1]["x"].shape[0] for c in setup.fake.calls] == [3, 4, 4]
    for request, waiter in zip(requests, waiters, strict=True):
        assert_outputs(waiter.result(0), expected_predict(request))


def test_output_filter_naming_every_output_is_batched_in_its_order(make: Any) -> None:
    setup = make()
    request = predict_inputs(2, 1.0)
    waiter = setup.schedule("predict", request, output_aliases=["y", "s"])
    setup.step_all()
    want = expected_predict(request)
    assert_outputs(waiter.result(0), {"y": want["y"], "s": want["s"]})


def test_string_inputs_of_different_widths_merge(make: Any) -> None:
    setup = make()
    a = setup.schedule("words", {"w": np.array([b"a", b"bcd"])})
    b = setup.schedule("words", {"w": np.array([b"efghij"])})
    c = setup.schedule("words", {"w": np.array(["xy"], dtype=object)})
    setup.step_all()
    np.testing.assert_array_equal(a.result(0)["n"], [1, 3])
    np.testing.assert_array_equal(b.result(0)["n"], [6])
    np.testing.assert_array_equal(c.result(0)["n"], [2])


def test_lists_are_converted_with_the_signature_dtype(make: Any) -> None:
    setup = make()
    waiter = setup.schedule("predict", {"x": [[1.0, 2.0]], "k": [3]})
    setup.step_all()
    assert_outputs(waiter.result(0), {"s": np.array([6.0], np.float32),
                                      "y": np.array([[2.0, 4.0]], np.float32)})


def test_requests_of_other_shapes_run_as_their_own_sub_batches(make: Any) -> None:
    setup = make()
    narrow = predict_inputs(2, 0.0)
    wide = {"x": np.ones((1, 3), np.float32), "k": np.array([5], np.int64)}
    narrow_too = predict_inputs(1, 50.0)
    waiters = [setup.schedule("predict", r) for r in (narrow, wide, narrow_too)]
    assert setup.step_all() == 1
    assert [c[1]["x"].shape for c in setup.fake.calls] == [(3, 2), (1, 3)]
    for request, waiter in zip((narrow, wide, narrow_too), waiters, strict=True):
        assert_outputs(waiter.result(0), expected_predict(request))


def test_a_request_of_the_wrong_dtype_fails_alone(make: Any) -> None:
    setup = make()
    good = predict_inputs(2, 0.0)
    bad = {"x": np.ones((1, 2), np.float64), "k": np.array([1], np.int64)}
    good_waiter = setup.schedule("predict", good)
    bad_waiter = setup.schedule("predict", bad)
    setup.step_all()
    assert_outputs(good_waiter.result(0), expected_predict(good))
    with pytest.raises(ServingError) as info:
        bad_waiter.result(0)
    assert (info.value.code, info.value.message) == (Code.INVALID_ARGUMENT,
                                                     "wrong dtype for x")


# --- padding --------------------------------------------------------------------------------


def test_allowed_batch_sizes_pad_with_the_last_tasks_first_row(make: Any) -> None:
    setup = make(max_batch_size=8, options=BatchingSessionOptions(allowed_batch_sizes=(2, 4, 8)))
    first, second = predict_inputs(1, 0.0), predict_inputs(2, 10.0)
    waiters = [setup.schedule("predict", r) for r in (first, second)]
    setup.step_all()
    (call,) = setup.fake.calls
    x = call[1]["x"]
    assert x.shape == (4, 2)
    np.testing.assert_array_equal(x[:3], np.concatenate([first["x"], second["x"]]))
    np.testing.assert_array_equal(x[3], second["x"][0])
    np.testing.assert_array_equal(call[1]["k"][3], second["k"][0])
    for request, waiter in zip((first, second), waiters, strict=True):
        assert_outputs(waiter.result(0), expected_predict(request))


def test_a_batch_of_an_allowed_size_is_not_padded(make: Any) -> None:
    setup = make(max_batch_size=8, options=BatchingSessionOptions(allowed_batch_sizes=(2, 8)))
    setup.schedule("predict", predict_inputs(2, 0.0))
    setup.step_all()
    assert setup.fake.calls[0][1]["x"].shape == (2, 2)


def test_zero_row_batches_are_not_padded(make: Any) -> None:
    setup = make(max_batch_size=8, options=BatchingSessionOptions(allowed_batch_sizes=(4, 8)))
    waiter = setup.schedule("predict", predict_inputs(0, 0.0))
    setup.step_all()
    assert setup.fake.calls[0][1]["x"].shape == (0, 2)
    assert waiter.result(0)["y"].shape == (0, 2)


def test_pad_variable_length_inputs_pads_with_the_first_element(make: Any) -> None:
    setup = make(options=BatchingSessionOptions(pad_variable_length_inputs=True))
    short = {"x": np.array([[5.0, 6.0]], np.float32), "k": np.array([1], np.int64)}
    long = {"x": np.array([[1.0, 2.0, 3.0]], np.float32), "k": np.array([2], np.int64)}
    waiters = [setup.schedule("predict", r) for r in (short, long)]
    setup.step_all()
    (call,) = setup.fake.calls
    np.testing.assert_array_equal(call[1]["x"], [[5.0, 6.0, 5.0], [1.0, 2.0, 3.0]])
    assert_outputs(waiters[0].result(0), {"s": np.array([17.0], np.float32),
                                          "y": np.array([[10.0, 12.0, 10.0]], np.float32)})
    assert_outputs(waiters[1].result(0), expected_predict(long))


def test_an_empty_tensor_that_needs_padding_fails_alone(make: Any) -> None:
    setup = make(options=BatchingSessionOptions(pad_variable_length_inputs=True))
    empty = {"x": np.zeros((1, 0), np.float32), "k": np.array([1], np.int64)}
    good = predict_inputs(1, 3.0)
    empty_waiter = setup.schedule("predict", empty)
    good_waiter = setup.schedule("predict", good)
    setup.step_all()
    with pytest.raises(ServingError) as info:
        empty_waiter.result(0)
    assert (info.value.code, info.value.message) == (
        Code.INVALID_ARGUMENT, "Got empty tensor in batch of non-empty tensors.")
    assert_outputs(good_waiter.result(0), expected_predict(good))


# --- splitting ------------------------------------------------------------------------------


def test_a_split_request_gets_its_parts_joined(make: Any) -> None:
    setup = make(max_batch_size=10, enable_large_batch_splitting=True,
                 max_execution_batch_size=4)
    small, large = predict_inputs(1, 0.0), predict_inputs(10, 100.0)
    waiters = [setup.schedule("predict", r) for r in (small, large)]
    assert setup.step_all() == 3
    assert [c[1]["x"].shape[0] for c in setup.fake.calls] == [4, 4, 3]
    assert_outputs(waiters[0].result(0), expected_predict(small))
    assert_outputs(waiters[1].result(0), expected_predict(large))


def test_a_split_request_fails_when_one_part_fails(make: Any) -> None:
    setup = make(max_batch_size=6, enable_large_batch_splitting=True,
                 max_execution_batch_size=2)
    waiter = setup.schedule("predict", predict_inputs(4, 0.0))
    bad = {"x": np.ones((1, 2), np.float64), "k": np.array([1], np.int64)}
    setup.schedule("predict", bad)  # shares no batch with the parts: they succeed
    setup.step_all()
    assert waiter.result(0)["y"].shape == (4, 2)
    failing = setup.schedule("fails", {"x": np.ones((5, 2), np.float32)})
    setup.step_all()
    with pytest.raises(ServingError) as info:
        failing.result(0)
    assert info.value.message == "the graph failed"


# --- requests that cannot be batched, and bypasses ------------------------------------------


@pytest.mark.parametrize(("inputs", "message"), [
    ({"x": np.float32(1.0), "k": np.array([1])}, RANK_ZERO),
    ({"x": np.ones((2, 2), np.float32), "k": np.array([1], np.int64)}, UNEQUAL),
])
def test_unbatchable_inputs_fail_at_once(make: Any, inputs: dict[str, Any],
                                         message: str) -> None:
    setup = make()
    with pytest.raises(ServingError) as info:
        setup.batching.schedule("predict", inputs, None, 0, None, concurrent.futures.Future())
    assert (info.value.code, info.value.message) == (Code.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(("key", "inputs", "outputs"), [
    ("unknown", {"x": np.ones((1, 2), np.float32)}, None),
    ("predict", predict_inputs(1, 0.0), ["y"]),
    ("predict", predict_inputs(1, 0.0), ["y", "y"]),
    ("predict", {"x": np.ones((1, 2), np.float32)}, None),
    ("predict", {**predict_inputs(1, 0.0), "extra": np.ones(1)}, None),
    ("predict", {"x": np.ones((1, 2), np.float32), "extra": np.ones(1)}, None),
    ("constant", {}, None),
])
def test_runs_matching_no_batched_signature_bypass(make: Any, key: str, inputs: dict[str, Any],
                                                   outputs: Any) -> None:
    setup = make()
    assert setup.batching.schedule(key, inputs, outputs, 0, None, None) is None
    assert "constant" not in setup.batching.batched_signatures


# --- deadlines, errors ----------------------------------------------------------------------


def test_an_expired_deadline_fails_at_once(make: Any, impl: ModuleType) -> None:
    setup = make()
    with pytest.raises(ServingError) as info:
        setup.batching.schedule("predict", predict_inputs(1, 0.0), None, 0,
                                impl.monotonic() - 1, concurrent.futures.Future())
    assert (info.value.code, info.value.message) == (Code.DEADLINE_EXCEEDED, EXPIRED)


def test_a_task_expiring_in_the_queue_fails_and_does_not_run(make: Any, impl: ModuleType) -> None:
    setup = make()
    deadline = impl.monotonic() + 0.05  # time enough to be queued before it passes
    doomed = setup.schedule("predict", predict_inputs(1, 0.0), deadline=deadline)
    live_request = predict_inputs(2, 10.0)
    live = setup.schedule("predict", live_request)
    wait_until(lambda: impl.monotonic() > deadline, "the queued task's deadline to pass")
    setup.step_all()
    with pytest.raises(ServingError) as info:
        doomed.result(0)
    assert (info.value.code, info.value.message) == (Code.DEADLINE_EXCEEDED, EXPIRED)
    (call,) = setup.fake.calls
    np.testing.assert_array_equal(call[1]["x"], live_request["x"])
    assert_outputs(live.result(0), expected_predict(live_request))


def test_run_timeout_is_the_latest_task_deadline(make: Any, impl: ModuleType) -> None:
    setup = make()
    setup.schedule("predict", predict_inputs(1, 0.0), timeout_in_ms=10_000)
    setup.schedule("predict", predict_inputs(1, 0.0), deadline=impl.monotonic() + 20.0)
    setup.step_all()
    assert 10_000 < setup.fake.calls[0][2] <= 20_000
    setup.schedule("predict", predict_inputs(1, 0.0), timeout_in_ms=10_000)
    setup.schedule("predict", predict_inputs(1, 0.0))
    setup.step_all()
    assert setup.fake.calls[1][2] == 0  # one task without a deadline: the run has none


@pytest.mark.parametrize(("key", "code", "message"), [
    ("fails", Code.INTERNAL, "the graph failed"),
    ("scalar", Code.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"),
    ("extra_row", Code.FAILED_PRECONDITION,
     "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
     "of the input tensors"),
])
def test_batch_errors_reach_every_request(make: Any, key: str, code: Code, message: str) -> None:
    setup = make()
    waiters = [setup.schedule(key, {"x": np.ones((n, 2), np.float32)}) for n in (1, 2)]
    setup.step_all()
    errors = []
    for waiter in waiters:
        with pytest.raises(ServingError) as info:
            waiter.result(0)
        errors.append(info.value)
        assert (info.value.code, info.value.message) == (code, message)
    assert errors[0] is not errors[1]


def test_close_fails_waiting_requests_and_refuses_new_ones(
        impls: tuple[ModuleType, ModuleType]) -> None:
    setup = Setup(impls, QueueOptions(max_batch_size=8, max_execution_batch_size=8,
                                     batch_timeout_micros=10**9), BatchingSessionOptions())
    waiter = setup.schedule("predict", predict_inputs(1, 0.0))
    setup.batching.close()
    with pytest.raises(ServingError) as info:
        waiter.result(0)
    assert (info.value.code, info.value.message) == (Code.UNAVAILABLE, CLOSED)
    with pytest.raises(ServingError) as info:
        setup.batching.schedule("predict", predict_inputs(1, 0.0), None, 0, None,
                                concurrent.futures.Future())
    assert (info.value.code, info.value.message) == (Code.UNAVAILABLE, CLOSED)
    setup.batching.close()  # idempotent
    assert setup.fake.calls == []
    setup.scheduler.stop()


def test_create_validates_the_parameters(make: Any) -> None:
    from tfsfast.batching.batching_parameters import BatchingParameters

    setup = make()
    params = BatchingParameters(allowed_batch_sizes=[2, 4])
    with pytest.raises(ServingError) as info:
        BatchingSession.create(setup.fake, setup.scheduler, params)
    assert info.value.message == (
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
        "expected 1000")


# --- through SavedModelBundle.run_async: one wake-up per batch, cancellation, queue full ----


def bundle_over(setup: Setup) -> SavedModelBundle:
    bundle = SavedModelBundle(ServableId("fake", 1), "/fake", setup.fake)
    bundle.batching_session = setup.batching
    return bundle


class LoopTimers:
    """Records the timers the batching session sets on ``loop`` for open batches (its
    ``call_later`` of ``_flush_on_timer``), which still run as usual: ``delays`` has each
    timer's delay (``set`` fires at the first), ``runs_when_fired`` the fake session's count of
    runs when each timer fired, before its flush ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop, setup: Setup) -> None:
        self.delays: list[float] = []
        self.runs_when_fired: list[int] = []
        self.set = asyncio.Event()
        original = loop.call_later

        def fired(callback: Any, *args: Any) -> None:
            self.runs_when_fired.append(len(setup.fake.calls))
            callback(*args)

        def call_later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(callback, "__func__", None) is not BatchingSession._flush_on_timer:
                return original(delay, callback, *args, **kwargs)
            self.delays.append(delay)
            self.set.set()
            return original(delay, fired, callback, *args, **kwargs)

        loop.call_later = call_later  # type: ignore[method-assign]


def count_wake_ups(loop: asyncio.AbstractEventLoop, setup: Setup) -> list[int]:
    """A counter (in ``[0]``) of the batch deliveries that wake ``loop`` from another thread."""
    resolve_futures = setup.batching.implementation.resolve_futures
    count = [0]
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        if callback is resolve_futures:
            count[0] += 1
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    return count


def test_one_event_loop_wake_up_per_batch(make: Any) -> None:
    setup = make()
    bundle = bundle_over(setup)
    requests = [predict_inputs(1 + i % 3, 10.0 * i) for i in range(12)]

    async def main() -> tuple[list[Any], int]:
        wake_ups = count_wake_ups(asyncio.get_running_loop(), setup)
        runs = [asyncio.create_task(bundle.run_async("predict", r)) for r in requests]
        await asyncio.sleep(0)  # every request reaches its queue
        assert await asyncio.to_thread(setup.step_all) == 1
        return await asyncio.gather(*runs), wake_ups[0]

    results, wake_ups = asyncio.run(main())
    assert wake_ups == 1
    for request, result in zip(requests, results, strict=True):
        assert_outputs(result, expected_predict(request))


def test_a_cancelled_request_is_dropped_before_it_runs(make: Any) -> None:
    setup = make()
    bundle = bundle_over(setup)
    gone, stays = predict_inputs(1, 0.0), predict_inputs(2, 50.0)

    async def main() -> tuple[asyncio.Task[Any], Any]:
        first = asyncio.create_task(bundle.run_async("predict", gone))
        second = asyncio.create_task(bundle.run_async("predict", stays))
        await asyncio.sleep(0)
        first.cancel()  # the client went away
        await asyncio.sleep(0)
        await asyncio.to_thread(setup.step_all)
        return first, await second

    first, result = asyncio.run(main())
    assert first.cancelled()
    (call,) = setup.fake.calls
    np.testing.assert_array_equal(call[1]["x"], stays["x"])
    assert_outputs(result, expected_predict(stays))


def test_a_full_queue_answers_unavailable_at_once(impls: tuple[ModuleType, ModuleType]) -> None:
    setup = Setup(impls, QueueOptions(max_batch_size=2, max_execution_batch_size=2,
                                     max_enqueued_batches=1, batch_timeout_micros=10**9),
                  BatchingSessionOptions())
    bundle = bundle_over(setup)

    async def main() -> BaseException | None:
        waiting = asyncio.create_task(bundle.run_async("predict", predict_inputs(2, 0.0)))
        await asyncio.sleep(0)
        try:
            await bundle.run_async("predict", predict_inputs(1, 0.0))
        except ServingError as e:
            error: BaseException | None = e
        else:
            error = None
        await asyncio.to_thread(setup.step_all)
        await waiting
        return error

    error = asyncio.run(main())
    assert isinstance(error, ServingError)
    assert (error.code, error.message) == (Code.UNAVAILABLE, FULL)
    setup.scheduler.stop()


def test_run_async_bypass_goes_to_the_executor(make: Any) -> None:
    setup = make()
    bundle = bundle_over(setup)
    submitted: list[Any] = []

    class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    with RecordingExecutor(1) as executor:
        bundle.executor = executor
        result = asyncio.run(bundle.run_async("predict", predict_inputs(1, 0.0), ["y"]))
    assert list(result) == ["y"]
    assert len(submitted) == 1
    assert setup.fake.calls[0][2] == 0


def test_run_async_without_batching_honours_the_deadline() -> None:
    fake = FakeSession()
    bundle = SavedModelBundle(ServableId("fake", 1), "/fake", fake)
    with pytest.raises(ServingError) as info:
        asyncio.run(bundle.run_async("predict", predict_inputs(1, 0.0),
                                     deadline=time.monotonic() - 1))
    assert info.value.code == Code.DEADLINE_EXCEEDED
    assert fake.calls == []
    result = asyncio.run(bundle.run_async("predict", predict_inputs(1, 0.0), timeout_in_ms=5000,
                                          deadline=time.monotonic() + 3600))
    assert list(result) == ["s", "y"]
    assert fake.calls[0][2] == 5000


def test_sync_run_is_batched_too(make: Any) -> None:
    setup = make()
    bundle = bundle_over(setup)
    request = predict_inputs(2, 1.0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(bundle.run, "predict", request)
        # The batch thread (this one) sleeps until the request is queued: its arrival wakes it.
        assert setup.scheduler.step(WAIT_SECONDS) is not None
        assert_outputs(pending.result(WAIT_SECONDS), expected_predict(request))


def test_bundle_close_closes_queues_then_the_session(make: Any) -> None:
    setup = make(batch_timeout_micros=10**9)
    bundle = bundle_over(setup)
    waiter = setup.schedule("predict", predict_inputs(1, 0.0))
    bundle.close()
    assert setup.fake.closed
    with pytest.raises(ServingError) as info:
        waiter.result(0)
    assert info.value.code == Code.UNAVAILABLE


# --- microsecond batches run on the event loop ------------------------------------------------


@pytest.fixture
def any_run_is_cheap() -> RunCostPolicy:
    """Every measured batch run counts as microseconds, however slow this machine is."""
    return RunCostPolicy(10.0)


def measure_on_a_thread(setup: Setup) -> None:
    """One batch run on a (stepped) batch thread: the signature's first measurement."""
    waiter = setup.schedule("predict", predict_inputs(1, 0.0))
    setup.step_all()
    waiter.result(0)
    setup.fake.calls.clear()


def test_cheap_batches_run_on_the_loop_that_queued_them(make: Any,
                                                        any_run_is_cheap: RunCostPolicy) -> None:
    setup = make(run_cost_policy=any_run_is_cheap)
    bundle = bundle_over(setup)
    measure_on_a_thread(setup)
    requests = [predict_inputs(1 + i % 3, 10.0 * i) for i in range(12)]

    async def main() -> tuple[list[Any], int]:
        wake_ups = count_wake_ups(asyncio.get_running_loop(), setup)
        # No batch thread is stepped: only the loop can run these.
        results = await asyncio.gather(*(bundle.run_async("predict", r) for r in requests))
        return results, wake_ups[0]

    results, wake_ups = asyncio.run(main())
    assert wake_ups == 0
    assert len(setup.fake.calls) == 1  # the requests of one loop turn: one batch
    for request, result in zip(requests, results, strict=True):
        assert_outputs(result, expected_predict(request))


def test_requests_from_threads_still_wait_for_a_batch_thread(
        make: Any, any_run_is_cheap: RunCostPolicy) -> None:
    setup = make(run_cost_policy=any_run_is_cheap)
    measure_on_a_thread(setup)
    request = predict_inputs(2, 5.0)
    waiter = setup.schedule("predict", request)  # a concurrent.futures waiter: no loop

    async def a_loop_turn() -> None:
        await asyncio.sleep(0)

    asyncio.run(a_loop_turn())
    assert not waiter.done() and setup.fake.calls == []
    assert setup.step_all() == 1
    assert_outputs(waiter.result(0), expected_predict(request))


def test_the_loop_does_not_run_an_open_batch_within_its_timeout(
        make: Any, any_run_is_cheap: RunCostPolicy) -> None:
    setup = make(max_batch_size=4, batch_timeout_micros=3_600_000_000,
                 run_cost_policy=any_run_is_cheap)
    bundle = bundle_over(setup)
    first, second = predict_inputs(1, 0.0), predict_inputs(3, 10.0)
    batcher = setup.batching._batchers["predict"]
    batcher.cost.seconds = 1e-6  # measured cheap

    async def turns() -> list[Any]:
        timers = LoopTimers(asyncio.get_running_loop(), setup)
        one = asyncio.ensure_future(bundle.run_async("predict", first))
        await timers.set.wait()  # the loop's flush found the batch open: it waits for its hour
        assert len(timers.delays) == 1 and 3500 < timers.delays[0] <= 3600
        assert not one.done() and setup.fake.calls == []
        assert setup.batching.queue("predict").num_enqueued_tasks == 1
        two = asyncio.ensure_future(bundle.run_async("predict", second))  # fills the batch
        return list(await asyncio.gather(one, two))

    results = asyncio.run(turns())
    assert len(setup.fake.calls) == 1
    assert_outputs(results[0], expected_predict(first))
    assert_outputs(results[1], expected_predict(second))


def test_batches_too_slow_for_the_loop_go_back_to_the_threads(make: Any) -> None:
    setup = make(run_cost_policy=RunCostPolicy(1e-3))
    bundle = bundle_over(setup)
    batcher = setup.batching._batchers["predict"]
    batcher.cost.seconds = 1e-6
    request = predict_inputs(1, 0.0)

    async def on_the_loop() -> Any:
        return await bundle.run_async("predict", request)

    assert_outputs(asyncio.run(on_the_loop()), expected_predict(request))
    assert batcher.cost.seconds is not None  # measured on the loop
    # The batches' estimate is now past the limit: the next request goes to the threads.
    batcher.cost.seconds = 1.0

    async def on_a_thread() -> Any:
        loop = asyncio.get_running_loop()
        run = asyncio.ensure_future(bundle.run_async("predict", request))
        await asyncio.sleep(0)  # a loop turn: the request is queued
        assert setup.batching.queue("predict").num_enqueued_tasks == 1
        assert loop not in batcher.flushing and loop not in batcher.timers  # left to a thread
        assert not run.done()
        await asyncio.to_thread(setup.step_all)
        return await run

    assert_outputs(asyncio.run(on_a_thread()), expected_predict(request))
    assert batcher.cost.seconds < 1.0  # the thread's faster run is the estimate at once


def test_the_loop_takes_an_open_batch_when_its_timeout_comes(
        make: Any, any_run_is_cheap: RunCostPolicy) -> None:
    # No batch thread runs (the scheduler is stepped by hand, and not at all here): a partial
    # batch is answered by the loop's timer once its 50 ms have passed, and not before (which
    # the timer's firing shows, whatever the time it took).
    setup = make(max_batch_size=8, batch_timeout_micros=50_000, run_cost_policy=any_run_is_cheap)
    bundle = bundle_over(setup)
    setup.batching._batchers["predict"].cost.seconds = 1e-6  # measured cheap
    requests = [predict_inputs(1, 0.0), predict_inputs(2, 10.0)]

    async def main() -> tuple[list[Any], LoopTimers]:
        timers = LoopTimers(asyncio.get_running_loop(), setup)
        results = await asyncio.wait_for(
            asyncio.gather(*(bundle.run_async("predict", r) for r in requests)), WAIT_SECONDS)
        return list(results), timers

    results, timers = asyncio.run(main())
    # The loop's flush found the batch open and set a timer for the rest of its timeout;
    # nothing ran until the timer fired, and then the batch did.
    [delay] = timers.delays
    assert 0 < delay <= 0.05
    assert timers.runs_when_fired == [0]
    assert len(setup.fake.calls) == 1  # both in the one timed-out batch
    for request, result in zip(requests, results, strict=True):
        assert_outputs(result, expected_predict(request))
