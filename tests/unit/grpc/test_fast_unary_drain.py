"""The completion-queue loop (``fast_unary``, compiled and twin) while the server drains.

Calls that arrive once the drain has begun are refused at once; calls in progress are answered
as usual, or UNAVAILABLE at the deadline, and then their own late answer is dropped, even once
the loop has stopped (gRPC core aborts the process on a batch for a completion queue that was
shut down).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from tfsfast.server.grpc.fast_unary import FastUnaryMethods, UnaryCall
from tfsfast.testing.test_util import implementations

IMPLS = implementations("tfsfast.server.grpc._fast_unary", "tfsfast.server.grpc._fast_unary_py")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


class Slow:
    """A method whose answer comes from the pool once ``release`` is set."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[UnaryCall] = []
        self.finished = threading.Event()

    def __call__(self, data: bytes, context: UnaryCall) -> Any:
        self.calls.append(context)

        def run() -> bytes:
            self.started.set()
            self.release.wait(30)
            self.finished.set()
            return b"slow:" + data

        return run


class Loop:
    """A grpc.Server with the loop serving /t.S/Slow and /t.S/Echo on a UNIX socket."""

    def __init__(self, impl: Any, tmp_path: Path) -> None:
        self.slow = Slow()
        self.executor = ThreadPoolExecutor(2)
        self.server = grpc.server(self.executor)
        self.fast = FastUnaryMethods({"/t.S/Slow": (self.slow, True),
                                      "/t.S/Echo": (lambda data, context: data, True)},
                                     self.executor, 1000, impl)
        assert self.fast.attach(self.server)
        self.address = f"unix:{tmp_path / 's.sock'}"
        self.server.add_insecure_port(self.address)
        self.server.start()
        self.fast.start()
        self.channel = grpc.insecure_channel(self.address)

    def call(self, method: str, data: bytes = b"x") -> Future:
        return self.channel.unary_unary(f"/t.S/{method}").future(data, timeout=30)

    def stop(self) -> None:
        self.slow.release.set()
        self.channel.close()
        self.server.stop(None).wait()
        self.fast.stop()
        self.executor.shutdown()


@pytest.fixture
def loop(impl: Any, tmp_path: Path) -> Iterator[Loop]:
    served = Loop(impl, tmp_path)
    yield served
    served.stop()


def outcome(future: Future) -> tuple[Any, str | bytes]:
    try:
        return grpc.StatusCode.OK, future.result()
    except grpc.RpcError as e:
        return e.code(), e.details()


def test_new_calls_are_refused_and_calls_in_progress_answered(loop: Loop) -> None:
    slow = loop.call("Slow", b"before")
    assert loop.slow.started.wait(30)
    loop.fast.begin_drain("draining")
    assert outcome(loop.call("Echo", b"after")) == (grpc.StatusCode.UNAVAILABLE, "draining")
    assert len(loop.fast.unanswered()) == 1
    loop.slow.release.set()
    assert outcome(slow) == (grpc.StatusCode.OK, b"slow:before")
    assert loop.fast.unanswered() == []


def test_the_deadline_answers_unavailable_and_the_late_answer_is_dropped(loop: Loop) -> None:
    slow = loop.call("Slow", b"late")
    assert loop.slow.started.wait(30)
    loop.fast.begin_drain("draining")
    [call] = loop.fast.answer_unanswered("too late")
    assert outcome(slow) == (grpc.StatusCode.UNAVAILABLE, "too late")
    assert call.answered and loop.fast.unanswered() == []
    # The server stops and the loop with it while the pool still runs the call: its answer,
    # when it comes, starts no batch.
    loop.server.stop(None).wait()
    loop.fast.stop()
    loop.slow.release.set()
    assert loop.slow.finished.wait(30)
    call.reply(b"after the loop stopped")
    call.fail(14, b"after the loop stopped")


def test_calls_held_are_refused_when_released(loop: Loop) -> None:
    loop.fast.begin_drain("draining")
    loop.fast.hold()
    held = loop.call("Echo", b"held")
    with pytest.raises(grpc.FutureTimeoutError):
        held.result(timeout=0.2)  # not answered while held
    assert loop.fast.unanswered() == []  # a held call is not in progress
    loop.fast.release_held()
    assert outcome(held) == (grpc.StatusCode.UNAVAILABLE, "draining")
    assert outcome(loop.call("Echo")) == (grpc.StatusCode.UNAVAILABLE, "draining")
