"""What the completion-queue loop (compiled and twin) hands the access log: a line per call.

A real grpc.Server with the loop on a UNIX socket; ``RecordingLog`` takes the ``record_grpc``
calls (the lines the log makes of them are tested with the log, ``tests/unit/server``). A line
is recorded by the thread whose answer went out, once the answer's batch has started, so a test
waits for it after its call returned.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from tfsfast.server.access_log import REQUEST_PREFIX_BYTES
from tfsfast.server.grpc.fast_unary import FastUnaryMethods, UnaryCall
from tfsfast.testing.test_util import implementations
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code, ServingError

LIMIT = 1000
IMPLS = implementations("tfsfast.server.grpc._fast_unary", "tfsfast.server.grpc._fast_unary_py")


@pytest.fixture(scope="module", params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


class RecordingLog:
    """Takes the loop's ``record_grpc`` calls: (received, peer, method, request head, code,
    bytes in, bytes out)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, object, str, bytes, int, int, int]] = []
        self._lock = threading.Lock()

    def record_grpc(self, received: float, peer: object, method: str, request_head: bytes,
                    code: int, bytes_in: int, bytes_out: int) -> None:
        with self._lock:
            self.lines.append((received, peer, method, request_head, code, bytes_in, bytes_out))

    def calls(self) -> list[tuple[str, bytes, int, int, int]]:
        """(method, request head, code, bytes in, bytes out) of each line, in order."""
        with self._lock:
            return [line[2:] for line in self.lines]


def _echo(data: bytes, context: UnaryCall) -> bytes:
    return data


def _fails(data: bytes, context: UnaryCall) -> bytes:
    raise ServingError(Code.NOT_FOUND, "gone")


def _later(data: bytes, context: UnaryCall) -> Any:
    return lambda: b"later:" + data


def _big(data: bytes, context: UnaryCall) -> bytes:
    return b"b" * (LIMIT + 1)


class Loop:
    """A grpc.Server whose /t.S/* methods the loop serves, with a RecordingLog."""

    def __init__(self, impl: Any, tmp_path: Path, methods: dict[str, tuple[Any, bool]]) -> None:
        self.log = RecordingLog()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="pool")
        self.server = grpc.server(self.executor)
        self.fast = FastUnaryMethods({f"/t.S/{name}": entry for name, entry in methods.items()},
                                     self.executor, LIMIT, impl, access_log=self.log)
        assert self.fast.attach(self.server)
        self.socket = tmp_path / "s.sock"
        self.server.add_insecure_port(f"unix:{self.socket}")
        self.server.start()
        self.fast.start()
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")

    def call(self, method: str, data: bytes) -> bytes:
        return self.channel.unary_unary(f"/t.S/{method}")(data, timeout=30)

    def error(self, method: str, data: bytes) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as e:
            self.call(method, data)
        return e.value.code()

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()
        self.fast.stop()
        self.executor.shutdown()


@pytest.fixture
def loop(impl: Any, tmp_path: Path) -> Iterator[Loop]:
    loop = Loop(impl, tmp_path, {"Echo": (_echo, True), "Pool": (_echo, False),
                                 "Fails": (_fails, True), "Later": (_later, True),
                                 "Big": (_big, True)})
    yield loop
    loop.close()


def test_every_answer_is_recorded_with_its_code_and_sizes(loop: Loop) -> None:
    long_request = bytes(range(256)) * 2
    assert loop.call("Echo", b"abc") == b"abc"
    assert loop.call("Pool", long_request) == long_request
    assert loop.error("Fails", b"x" * 10) == grpc.StatusCode.NOT_FOUND
    assert loop.call("Later", b"zz") == b"later:zz"
    assert loop.error("Big", b"") == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait_until(lambda: len(loop.log.lines) == 5, "five lines")
    assert loop.log.calls() == [
        ("/t.S/Echo", b"abc", int(Code.OK), 3, 3),
        ("/t.S/Pool", long_request[:REQUEST_PREFIX_BYTES], int(Code.OK), 512, 512),
        ("/t.S/Fails", b"x" * 10, int(Code.NOT_FOUND), 10, 0),
        ("/t.S/Later", b"zz", int(Code.OK), 2, 8),
        ("/t.S/Big", b"", int(Code.RESOURCE_EXHAUSTED), 0, 0),
    ]
    # gRPC core's peer: a UNIX socket's client, which has no path of its own.
    assert {line[1] for line in loop.log.lines} == {b"unix:"}
    # The time the message arrived, on time.monotonic()'s clock, in order.
    times = [line[0] for line in loop.log.lines]
    assert times == sorted(times) and times[0] > 0


def test_a_call_refused_while_draining_is_recorded(loop: Loop) -> None:
    loop.fast.begin_drain("draining")
    assert loop.error("Echo", b"abc") == grpc.StatusCode.UNAVAILABLE
    wait_until(lambda: loop.log.lines, "its line")
    assert loop.log.calls() == [("/t.S/Echo", b"", int(Code.UNAVAILABLE), 0, 0)]


def test_one_line_for_a_call_answered_by_the_drain_deadline(impl: Any, tmp_path: Path) -> None:
    """The drain answers a call still running; the call's own answer, later, is dropped, and
    so is its line."""
    started, release = threading.Event(), threading.Event()

    def slow(data: bytes, context: UnaryCall) -> bytes:
        started.set()
        release.wait()
        return b"too late"

    loop = Loop(impl, tmp_path, {"Slow": (slow, False)})
    try:
        future = loop.channel.unary_unary("/t.S/Slow").future(b"abc", timeout=30)
        assert started.wait(60)
        loop.fast.answer_unanswered("deadline")
        with pytest.raises(grpc.RpcError) as e:
            future.result()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        # The pool's one thread has tried to answer once this job runs.
        loop.executor.submit(lambda: None).result()
        assert loop.log.calls() == [("/t.S/Slow", b"abc", int(Code.UNAVAILABLE), 3, 0)]
    finally:
        loop.close()

