"""``AccessLogInterceptor``: a line per call of grpcio's services, and the calls unchanged.

Two real grpc.Servers serve the same handlers, one with the interceptor: every call must get the
same answer (or the same status and details) from both, and the interceptor's server a line per
call. ``RecordingLog`` takes the ``record_grpc`` calls (the lines the log makes of them are
tested with the log, ``tests/unit/server``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from tfsfast.server.access_log import REQUEST_PREFIX_BYTES
from tfsfast.server.grpc.access_log_interceptor import AccessLogInterceptor
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code

Request = get_model_status_pb2.GetModelStatusRequest
Response = get_model_status_pb2.GetModelStatusResponse


class RecordingLog:
    """Takes ``record_grpc`` calls: (received, peer, method, request head, code, bytes in,
    bytes out)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, object, str, bytes, int, int, int]] = []
        self._lock = threading.Lock()

    def record_grpc(self, received: float, peer: object, method: str, request_head: bytes,
                    code: int, bytes_in: int, bytes_out: int) -> None:
        with self._lock:
            self.lines.append((received, peer, method, request_head, code, bytes_in, bytes_out))

    def calls(self) -> list[tuple[object, str, bytes, int, int, int]]:
        """(peer, method, request head, code, bytes in, bytes out) of each line."""
        with self._lock:
            return [line[1:] for line in self.lines]


def _response(name: str) -> Any:
    response = Response()
    version = response.model_version_status.add()
    version.version = 7
    version.status.error_message = name
    return response


def _status(request: Any, context: grpc.ServicerContext) -> Any:
    name = request.model_spec.name
    if name == "missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no model missing")
    if name == "bug":
        raise ValueError("bug")
    if name == "soft":
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("set, not aborted")
    return _response(name)


def _count(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    for i in range(3):
        yield _response(f"{request.model_spec.name}{i}")


def _sum(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
    return _response("+".join(request.model_spec.name for request in requests))


def _each(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        yield _response(request.model_spec.name.upper())


def _raw(data: bytes, context: grpc.ServicerContext) -> bytes:
    return b"raw:" + data


HANDLER = grpc.method_handlers_generic_handler("t.S", {
    "Status": grpc.unary_unary_rpc_method_handler(
        _status, request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString),
    "Count": grpc.unary_stream_rpc_method_handler(
        _count, request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString),
    "Sum": grpc.stream_unary_rpc_method_handler(
        _sum, request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString),
    "Each": grpc.stream_stream_rpc_method_handler(
        _each, request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString),
    "Raw": grpc.unary_unary_rpc_method_handler(_raw),
})


class Served:
    def __init__(self, socket: Path, interceptors: list[Any] | None) -> None:
        self.executor = ThreadPoolExecutor(4)
        self.server = grpc.server(self.executor, interceptors=interceptors)
        self.server.add_generic_rpc_handlers((HANDLER,))
        self.server.add_insecure_port(f"unix:{socket}")
        self.server.start()
        self.channel = grpc.insecure_channel(f"unix:{socket}")

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()
        self.executor.shutdown()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Served, Served, RecordingLog]]:
    log = RecordingLog()
    plain = Served(tmp_path / "plain.sock", None)
    logged = Served(tmp_path / "logged.sock", [AccessLogInterceptor(log)])
    yield plain, logged, log
    plain.close()
    logged.close()


def request(name: str) -> bytes:
    message = Request()
    message.model_spec.name = name
    message.model_spec.version.value = 7
    return message.SerializeToString()


def outcome(served: Served, kind: str, method: str, argument: bytes | list[bytes]) -> Any:
    """What a client gets: the response bytes (a list for a stream), or (code, details)."""
    call = getattr(served.channel, kind)(f"/t.S/{method}")
    try:
        result = call(argument if isinstance(argument, bytes) else iter(argument), timeout=30)
        return list(result) if kind.endswith("_stream") else result
    except grpc.RpcError as e:
        return e.code(), e.details()


UNDECODABLE = b"\xff\xff not a message"
CALLS: list[tuple[str, str, bytes | list[bytes]]] = [
    ("unary_unary", "Status", request("m")),
    ("unary_unary", "Status", request("missing")),
    ("unary_unary", "Status", request("bug")),
    ("unary_unary", "Status", request("soft")),
    ("unary_unary", "Status", UNDECODABLE),
    ("unary_stream", "Count", request("c")),
    ("stream_unary", "Sum", [request("a"), request("bb")]),
    ("stream_stream", "Each", [request("x"), request("y")]),
    ("unary_unary", "Raw", b"bytes"),
    ("unary_unary", "Missing", b"?"),
]


def test_calls_are_answered_as_without_it_and_each_gets_a_line(
        servers: tuple[Served, Served, RecordingLog]) -> None:
    plain, logged, log = servers
    for kind, method, argument in CALLS:
        assert outcome(logged, kind, method, argument) == outcome(plain, kind, method, argument)
    wait_until(lambda: len(log.lines) == len(CALLS), "a line per call")
    size = len(_response("m").SerializeToString())
    soft = len(_response("soft").SerializeToString())
    count = sum(len(_response(f"c{i}").SerializeToString()) for i in range(3))
    each = len(_response("X").SerializeToString()) + len(_response("Y").SerializeToString())
    lines = sorted(log.calls(), key=lambda line: (line[1], line[2]))
    assert lines == sorted([
        ("unix:", "/t.S/Status", request("m"), int(Code.OK), len(request("m")), size),
        ("unix:", "/t.S/Status", request("missing"), int(Code.NOT_FOUND),
         len(request("missing")), 0),
        ("unix:", "/t.S/Status", request("bug"), int(Code.UNKNOWN), len(request("bug")), 0),
        ("unix:", "/t.S/Status", request("soft"), int(Code.FAILED_PRECONDITION),
         len(request("soft")), soft),
        ("unix:", "/t.S/Status", UNDECODABLE, int(Code.INTERNAL), len(UNDECODABLE), 0),
        ("unix:", "/t.S/Count", request("c"), int(Code.OK), len(request("c")), count),
        ("unix:", "/t.S/Sum", request("a"), int(Code.OK),
         len(request("a")) + len(request("bb")), len(_response("a+bb").SerializeToString())),
        ("unix:", "/t.S/Each", request("x"), int(Code.OK), 2 * len(request("x")), each),
        ("unix:", "/t.S/Raw", b"bytes", int(Code.OK), 5, 9),
        (None, "/t.S/Missing", b"", int(Code.UNIMPLEMENTED), 0, 0),
    ], key=lambda line: (line[1], line[2]))


def test_a_long_request_keeps_its_first_bytes(servers: tuple[Served, Served, RecordingLog]
                                              ) -> None:
    _, logged, log = servers
    data = bytes(range(256)) * 3
    assert logged.channel.unary_unary("/t.S/Raw")(data, timeout=30) == b"raw:" + data
    wait_until(lambda: log.lines, "the line")
    [(_, _, method, head, code, bytes_in, bytes_out)] = log.lines
    assert (method, head, code, bytes_in, bytes_out) == (
        "/t.S/Raw", data[:REQUEST_PREFIX_BYTES], int(Code.OK), 768, 772)


def test_a_response_stream_the_client_leaves_is_cancelled(tmp_path: Path) -> None:
    log = RecordingLog()
    produced = threading.Event()
    go_on = threading.Event()

    def endless(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        while True:
            yield _response("tick")
            produced.set()
            go_on.wait()

    handler = grpc.method_handlers_generic_handler("t.E", {
        "Endless": grpc.unary_stream_rpc_method_handler(
            endless, request_deserializer=Request.FromString,
            response_serializer=Response.SerializeToString)})
    executor = ThreadPoolExecutor(2)
    server = grpc.server(executor, interceptors=[AccessLogInterceptor(log)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{tmp_path / 's.sock'}")
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{tmp_path / 's.sock'}") as channel:
            stream = channel.unary_stream("/t.E/Endless")(request("e"), timeout=30)
            next(stream)
            assert produced.wait(60)
            stream.cancel()
            go_on.set()
            wait_until(lambda: log.lines, "the stream's line")
    finally:
        go_on.set()
        server.stop(None).wait()
        executor.shutdown()
    [(_, _, method, _, code, _, bytes_out)] = log.lines
    assert (method, code) == ("/t.E/Endless", int(Code.CANCELLED))
    assert bytes_out >= len(_response("tick").SerializeToString())
