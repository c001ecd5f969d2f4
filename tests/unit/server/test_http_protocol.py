"""HttpProtocol driven through a fake transport: parsing, limits, ordering, keep-alive.

Every test runs against the compiled protocol and its Python twin (``impl``)."""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Any

import pytest

from tfsfast.server.http._http_protocol_py import (
    HttpRequest,
    HttpResponse,
    HttpServerLimits,
)
from tfsfast.testing.fake_transport import FakeTransport
from tfsfast.testing.test_util import implementations

IMPLS = implementations("tfsfast.server.http._http_protocol",
                        "tfsfast.server.http._http_protocol_py")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``HttpProtocol`` is under test."""
    return importlib.import_module(request.param)


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Splits the bytes written to the transport into (status, headers, body) responses."""
    out = []
    rest = bytes(data)
    while rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return out


def make(impl: Any, handler,
         limits: HttpServerLimits | None = None) -> tuple[Any, FakeTransport]:
    protocol = impl.HttpProtocol(handler, limits or HttpServerLimits(), error_response)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, json.dumps({"method": request.method, "path": request.path.decode(),
                                         "body": request.body.decode()}).encode())


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def test_request_is_parsed_and_answered(impl: Any) -> None:
    protocol, transport = make(impl, echo)
    protocol.data_received(post("/v1/models/m:predict", b'{"a": 1}'))
    [(status, headers, body)] = responses(transport.data)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"method": "POST", "path": "/v1/models/m:predict",
                                "body": '{"a": 1}'}
    assert not transport.closed


def test_body_split_across_packets_and_chunked_encoding(impl: Any) -> None:
    protocol, transport = make(impl, echo)
    raw = post("/p", b"0123456789")
    for i in range(len(raw)):
        protocol.data_received(raw[i:i + 1])
    protocol.data_received(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    bodies = [json.loads(b)["body"] for _, _, b in responses(transport.data)]
    assert bodies == ["0123456789", "abcde"]


def test_pipelined_requests_answered_in_order_even_when_async(impl: Any) -> None:
    async def run() -> list[str]:
        slow_may_finish = asyncio.Event()

        async def handler(request: HttpRequest) -> HttpResponse:
            if request.path == b"/slow":
                await slow_may_finish.wait()
            return HttpResponse(200, request.path)

        protocol, transport = make(impl, handler)
        protocol.data_received(post("/slow", b"") + post("/fast", b"") + post("/slow", b""))
        await asyncio.sleep(0)  # a loop turn: /fast would be done by now if it ran at once
        slow_may_finish.set()
        await transport.wait_for(3)
        return [body.decode() for _, _, body in responses(transport.data)]

    assert asyncio.run(run()) == ["/slow", "/fast", "/slow"]


def test_declared_body_over_limit_gets_413_and_close(impl: Any) -> None:
    protocol, transport = make(impl, echo, HttpServerLimits(max_body_bytes=100))
    protocol.data_received(b"POST /p HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
    [(status, _, body)] = responses(transport.data)
    assert status == 413
    assert json.loads(body)["error"] == ("Request body exceeds the maximum of 100 bytes "
                                         "(flag --rest_api_max_body_bytes)")
    assert transport.closed


def test_chunked_body_over_limit_gets_413(impl: Any) -> None:
    protocol, transport = make(impl, echo, HttpServerLimits(max_body_bytes=4))
    protocol.data_received(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
    assert [s for s, _, _ in responses(transport.data)] == [413]


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n", 431),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: zz\r\n\r\n", 400),
])
def test_malformed_or_oversized_heads_are_rejected(impl: Any, raw: bytes, status: int) -> None:
    protocol, transport = make(impl, echo)
    protocol.data_received(raw)
    [(got, _headers, body)] = responses(transport.data)
    assert got == status
    assert "error" in json.loads(body)
    assert transport.closed


def test_connection_close_and_http10(impl: Any) -> None:
    protocol, transport = make(impl, echo)
    protocol.data_received(post("/p", b"", "Connection: close\r\n"))
    assert transport.closed
    assert responses(transport.data)[0][1]["Connection"] == "close"
    protocol, transport = make(impl, echo)
    protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.closed


def test_handler_exception_becomes_500_and_connection_survives(impl: Any) -> None:
    calls = []

    def handler(request: HttpRequest) -> HttpResponse:
        calls.append(request.path)
        if request.path == b"/boom":
            raise RuntimeError("bug")
        return HttpResponse(200, b"ok")

    protocol, transport = make(impl, handler)
    protocol.data_received(post("/boom", b"") + post("/ok", b""))
    assert [s for s, _, _ in responses(transport.data)] == [500, 200]
    assert not transport.closed


def test_many_pipelined_requests_pause_reading(impl: Any) -> None:
    async def run() -> tuple[bool, bool, int]:
        gate = asyncio.Event()

        async def handler(request: HttpRequest) -> HttpResponse:
            await gate.wait()
            return HttpResponse(200, b"")

        protocol, transport = make(impl, handler, HttpServerLimits(max_pipelined_requests=2))
        protocol.data_received(post("/p", b"") * 6)
        paused = transport.paused
        gate.set()
        await transport.wait_for(6)
        return paused, transport.paused, len(responses(transport.data))

    assert asyncio.run(run()) == (True, False, 6)


def test_stalled_head_gets_408_and_idle_keep_alive_is_closed(impl: Any) -> None:
    limits = HttpServerLimits(header_timeout=10, body_idle_timeout=30, keep_alive_timeout=5)
    protocol, transport = make(impl, echo, limits)
    protocol.data_received(b"POST /p HTTP/1.1\r\nHost: x\r\n")  # head never finishes
    start = protocol._last_activity
    protocol.check_idle(start + 9)
    assert not transport.closed
    protocol.check_idle(start + 11)
    assert [s for s, _, _ in responses(transport.data)] == [408] and transport.closed

    protocol, transport = make(impl, echo, limits)
    protocol.data_received(b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
    protocol.check_idle(protocol._last_activity + 29)
    assert not transport.closed
    protocol.check_idle(protocol._last_activity + 31)
    assert [s for s, _, _ in responses(transport.data)] == [408]

    protocol, transport = make(impl, echo, limits)
    protocol.data_received(post("/p", b""))
    protocol.check_idle(protocol._last_activity + 4)
    assert not transport.closed
    protocol.check_idle(protocol._last_activity + 6)
    assert transport.closed and len(responses(transport.data)) == 1


def test_connection_cap_answers_503(impl: Any) -> None:
    connections: set[Any] = set()
    limits = HttpServerLimits(max_connections=1)
    first = impl.HttpProtocol(echo, limits, error_response, connections)
    first.connection_made(FakeTransport())
    second = impl.HttpProtocol(echo, limits, error_response, connections)
    transport = FakeTransport()
    second.connection_made(transport)
    assert [s for s, _, _ in responses(transport.data)] == [503] and transport.closed
    assert connections == {first}
