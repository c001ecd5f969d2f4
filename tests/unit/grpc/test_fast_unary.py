"""The completion-queue loop for unary methods (``fast_unary``) and the Predict inline policy."""

from __future__ import annotations

import importlib
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfsfast import _extensions
from tfsfast.server.grpc import fast_unary
from tfsfast.server.grpc.fast_unary import FastUnaryMethods, UnaryCall
from tfsfast.server.grpc.grpc_server import GrpcServer, GrpcServerOptions
from tfsfast.server.grpc.prediction_service_impl import RunCosts
from tfsfast.server.server_core import ServerCore
from tfsfast.testing.test_util import implementations
from tfsfast.util import run_cost
from tfsfast.util.status import Code, ServingError

from .test_prediction_service_impl import predict_request, rpc_error

LIMIT = 1000
IMPLS = implementations("tfsfast.server.grpc._fast_unary", "tfsfast.server.grpc._fast_unary_py")


@pytest.fixture(scope="module", params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module of the loop's per-call machinery under test."""
    return importlib.import_module(request.param)


def _thread_name(data: bytes, context: UnaryCall) -> bytes:
    return threading.current_thread().name.encode()


def _deferred(data: bytes, context: UnaryCall) -> Any:
    return lambda: b"deferred:" + threading.current_thread().name.encode()


def _fails(data: bytes, context: UnaryCall) -> bytes:
    raise ServingError(Code.NOT_FOUND, data.decode())


def _fails_later(data: bytes, context: UnaryCall) -> Any:
    def run() -> bytes:
        raise ServingError(Code.FAILED_PRECONDITION, "later")

    return run


def _deferred_big(data: bytes, context: UnaryCall) -> Any:
    return lambda: _big(data, context)


def _bug(data: bytes, context: UnaryCall) -> bytes:
    raise ValueError("boom")


def _remaining(data: bytes, context: UnaryCall) -> bytes:
    return repr(context.time_remaining()).encode()


def _echo(data: bytes, context: UnaryCall) -> bytes:
    return data


def _big(data: bytes, context: UnaryCall) -> bytes:
    return b"b" * (LIMIT + 1)


@pytest.fixture(scope="module")
def loop_server(tmp_path_factory: pytest.TempPathFactory, impl: Any) -> Iterator[str]:
    """A grpc.Server with a generic handler for /t.S/Generic and the loop for the rest."""
    executor = ThreadPoolExecutor(2, thread_name_prefix="pool")
    server = grpc.server(executor)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {
        "Generic": grpc.unary_unary_rpc_method_handler(lambda data, context: b"generic")}),))
    methods = {f"/t.S/{name}": entry for name, entry in {
        "Inline": (_thread_name, True), "Pool": (_thread_name, False),
        "Deferred": (_deferred, True), "Fails": (_fails, True), "FailsLater": (_fails_later, True),
        "Bug": (_bug, True), "Remaining": (_remaining, True), "Echo": (_echo, True),
        "Big": (_big, True), "BigLater": (_deferred_big, True),
    }.items()}
    fast = FastUnaryMethods(methods, executor, LIMIT, impl)
    assert fast.attach(server)
    socket = tmp_path_factory.mktemp("loop") / "s.sock"
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    fast.start()
    yield f"unix:{socket}"
    server.stop(None).wait()
    fast.stop()
    executor.shutdown()


def _call(address: str, method: str, data: bytes = b"x", **kwargs: Any) -> bytes:
    with grpc.insecure_channel(address) as channel:
        return channel.unary_unary(f"/t.S/{method}")(data, **kwargs)


def _error(address: str, method: str, data: bytes = b"x") -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        _call(address, method, data, timeout=30)
    return e.value.code(), e.value.details()


def test_inline_handlers_run_on_the_loop_thread_others_in_the_pool(loop_server: str) -> None:
    assert _call(loop_server, "Inline") == b"tfsfast_grpc_unary"
    assert _call(loop_server, "Pool").startswith(b"pool")
    assert _call(loop_server, "Deferred").startswith(b"deferred:pool")
    # Methods the loop does not own still reach grpcio's generic handlers.
    assert _call(loop_server, "Generic") == b"generic"
    assert _error(loop_server, "Missing")[0] == grpc.StatusCode.UNIMPLEMENTED


def test_errors_become_statuses(loop_server: str) -> None:
    assert _error(loop_server, "Fails", b"gone") == (grpc.StatusCode.NOT_FOUND, "gone")
    code, details = _error(loop_server, "Fails", b"y" * 900)
    assert code == grpc.StatusCode.NOT_FOUND and details == "y" * 900
    assert _error(loop_server, "FailsLater") == (grpc.StatusCode.FAILED_PRECONDITION, "later")
    assert _error(loop_server, "Bug") == (grpc.StatusCode.INTERNAL, "ValueError: boom")


def test_long_messages_are_cut_as_tf_serving_does(tmp_path: Path, impl: Any) -> None:
    executor = ThreadPoolExecutor(1)
    server = grpc.server(executor)
    fast = FastUnaryMethods({"/t.S/Fails": (_fails, True)}, executor, 1 << 20, impl)
    assert fast.attach(server)
    server.add_insecure_port(f"unix:{tmp_path / 's.sock'}")
    server.start()
    fast.start()
    try:
        code, details = _error(f"unix:{tmp_path / 's.sock'}", "Fails", b"z" * 2000)
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == "z" * 1024 + "...TRUNCATED"
    finally:
        server.stop(None).wait()
        fast.stop()
        executor.shutdown()


def test_message_limits_name_the_flag(loop_server: str) -> None:
    assert _call(loop_server, "Echo", b"e" * LIMIT) == b"e" * LIMIT
    assert _error(loop_server, "Echo", b"e" * (LIMIT + 1)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"Request message of {LIMIT + 1} bytes exceeds the maximum of {LIMIT} bytes (flag "
        f"--grpc_max_message_bytes)")


def test_responses_above_the_limit_are_refused(loop_server: str) -> None:
    refused = (grpc.StatusCode.RESOURCE_EXHAUSTED,
               f"Response message of {LIMIT + 1} bytes exceeds the maximum of {LIMIT} bytes "
               f"(flag --grpc_max_message_bytes)")
    assert _error(loop_server, "Big") == refused
    assert _error(loop_server, "BigLater") == refused


def test_the_deadline_reaches_the_handler(loop_server: str) -> None:
    assert _call(loop_server, "Remaining") == b"None"
    remaining = float(_call(loop_server, "Remaining", timeout=5))
    assert 0 < remaining <= 5.1  # core converts the deadline between clocks


def test_many_calls_at_once(loop_server: str) -> None:
    with grpc.insecure_channel(loop_server) as channel:
        echo = channel.unary_unary("/t.S/Echo")
        pool = channel.unary_unary("/t.S/Deferred")
        futures = [(echo if i % 2 else pool).future(str(i).encode(), timeout=30)
                   for i in range(200)]
        answers = [f.result() for f in futures]
    assert all(a == str(i).encode() for i, a in enumerate(answers) if i % 2)
    assert all(a.startswith(b"deferred:") for i, a in enumerate(answers) if not i % 2)


def test_the_loop_uses_the_loaded_implementation() -> None:
    assert fast_unary.IMPLEMENTATION == ("python" if _extensions.NO_EXTENSIONS else "compiled")


# --- the tfsfast server with and without the loop ----------------------------------------------


def _predict_answers(core: ServerCore, tmp_path: Path,
                     use_loop: bool) -> tuple[bool, Any, Any]:
    socket = tmp_path / "p.sock"
    server = GrpcServer(core, GrpcServerOptions(port=0, socket_path=str(socket),
                                                fast_unary=use_loop))
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            ok = [stub.Predict(predict_request(x=[2.0, 4.0]), timeout=30) for _ in range(3)]
            ok.append(stub.Predict(predict_request(x=[2.0, 4.0])))  # without a deadline
            error = rpc_error(stub.Predict, predict_request(name="nope"))
        return server._fast is not None, ok, error
    finally:
        server.stop(None).wait()


def test_predict_answers_the_same_with_and_without_the_loop(core: ServerCore,
                                                            tmp_path: Path) -> None:
    fast, fast_ok, fast_error = _predict_answers(core, tmp_path, use_loop=True)
    generic, generic_ok, generic_error = _predict_answers(core, tmp_path, use_loop=False)
    assert fast and not generic
    assert fast_ok == generic_ok and list(fast_ok[0].outputs["y"].float_val) == [3.0, 4.0]
    assert fast_error == generic_error == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")


def test_stop_lets_a_call_in_the_pool_finish_within_the_grace(tmp_path: Path,
                                                               impl: Any) -> None:
    started, stopping = threading.Event(), threading.Event()

    def slow(data: bytes, context: UnaryCall) -> Any:
        def run() -> bytes:
            started.set()
            assert stopping.wait(30)  # still in the pool when the stop begins
            return b"done"
        return run

    executor = ThreadPoolExecutor(1)
    server = grpc.server(executor)
    fast = FastUnaryMethods({"/t.S/Slow": (slow, True)}, executor, LIMIT, impl)
    assert fast.attach(server)
    server.add_insecure_port(f"unix:{tmp_path / 's.sock'}")
    server.start()
    fast.start()
    with grpc.insecure_channel(f"unix:{tmp_path / 's.sock'}") as channel:
        future = channel.unary_unary("/t.S/Slow").future(b"", timeout=30)
        assert started.wait(10)
        stopped = server.stop(5)
        stopping.set()
        assert future.result() == b"done"
    assert stopped.wait(10)
    fast.stop()
    executor.shutdown()


# --- RunCosts: which Predict runs stay on the loop thread -------------------------------------


class _Bundle:
    """Runs take ``seconds`` of a fake clock (real sleeps overshoot on a busy machine)."""

    clock = [0.0]

    def __init__(self, seconds: float, batching: object = None) -> None:
        self.seconds = seconds
        self.batching_session = batching

    def run(self, key: str, inputs: Any, aliases: Any, timeout: int) -> dict[str, Any]:
        self.clock[0] += self.seconds
        return {"y": key}


@pytest.fixture()
def costs(monkeypatch: pytest.MonkeyPatch) -> RunCosts:
    monkeypatch.setattr(run_cost._impl, "time",
                        types.SimpleNamespace(perf_counter=lambda: _Bundle.clock[0],
                                              monotonic=time.monotonic))
    return RunCosts(run_cost.RunCostPolicy(100e-6))


def test_unmeasured_slow_and_batched_runs_go_to_the_pool(costs: RunCosts) -> None:
    fast, slow, batched = _Bundle(1e-5), _Bundle(0.01), _Bundle(1e-5, batching=object())
    assert not costs.runs_inline(fast, "v1", "s")  # never measured
    assert costs.run(fast, "v1", "s", {}, None, 0) == {"y": "s"}
    assert costs.runs_inline(fast, "v1", "s")
    assert not costs.runs_inline(fast, "v1", "other") and not costs.runs_inline(fast, "v2", "s")
    costs.run(slow, "slow", "s", {}, None, 0)
    assert not costs.runs_inline(slow, "slow", "s")
    costs.run(batched, "batched", "s", {}, None, 0)
    assert not costs.runs_inline(batched, "batched", "s")


def test_one_slow_run_does_not_move_a_fast_signature_but_a_slow_streak_does(
        costs: RunCosts) -> None:
    bundle = _Bundle(1e-5)
    costs.run(bundle, "v", "s", {}, None, 0)
    bundle.seconds = 5e-4  # a preemption-sized outlier, alone: ignored
    costs.run(bundle, "v", "s", {}, None, 0)
    assert costs.runs_inline(bundle, "v", "s")
    for _ in range(30):  # a streak: past STAY_FACTOR times the limit, the loop lets go
        costs.run(bundle, "v", "s", {}, None, 0)
    assert not costs.runs_inline(bundle, "v", "s")
    bundle.seconds = 1e-5  # one fast run is believed at once
    costs.run(bundle, "v", "s", {}, None, 0)
    assert costs.runs_inline(bundle, "v", "s")
