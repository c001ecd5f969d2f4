"""HttpProtocol's drain (compiled and twin): what a connection does once the listener has closed.

It answers every request it has received (in progress, queued, pipelined in the same bytes,
partly received, or still unread in the kernel), the last answer with ``Connection: close``, then
half-closes and discards what comes after; at the deadline it answers the rest 503.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
from typing import Any

import pytest

from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, HttpServerLimits
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


def post(path: str, body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def answers(data: bytes) -> list[tuple[int, bytes, str | None]]:
    """(status, body, Connection header) of each response written."""
    out = []
    rest = bytes(data)
    while rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        out.append((int(lines[0].split()[1]), rest[:length], headers.get("Connection")))
        rest = rest[length:]
    return out


class Reply:
    """A fast path's deferred answer (``DeferredAnswer``)."""

    def __init__(self, path: bytes, keep_alive: bool) -> None:
        self.path = path
        self.keep_alive = keep_alive
        self.cancelled = False

    def encode(self, keep_alive: bool) -> bytes:
        body = b"batched:" + self.path
        return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"" if keep_alive else b"Connection: close\r\n", body))

    def cancel(self) -> None:
        self.cancelled = True


class FastPath:
    """Answers /fast at once, /batched later (a ``Reply``), leaves the rest to the handler."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def answer(self, method: str, path: bytes, headers: Any, body: bytes, keep_alive: bool,
               connection: Any = None) -> Any:
        if path.startswith(b"/fast"):
            return Reply(path, keep_alive).encode(keep_alive)
        if path.startswith(b"/batched"):
            self.replies.append(Reply(path, keep_alive))
            return self.replies[-1]
        return None


class Handler:
    """Answers /slow... once ``gate`` is set (an awaited answer), anything else at once;
    ``waiting`` is set once an awaited answer waits for the gate, ``ended`` once it returned or
    was cancelled."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.ended = asyncio.Event()
        self.cancelled: list[bytes] = []

    def __call__(self, request: HttpRequest) -> Any:
        if request.path.startswith(b"/slow"):
            return self._later(request.path)
        return HttpResponse(200, b"handler:" + request.path)

    async def _later(self, path: bytes) -> HttpResponse:
        self.waiting.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(path)
            raise
        finally:
            self.ended.set()
        return HttpResponse(200, b"handler:" + path)


def make(impl: Any, sock: socket.socket | None = None) -> tuple[Any, FakeTransport, Handler,
                                                              FastPath]:
    handler, fast_path = Handler(), FastPath()
    protocol = impl.HttpProtocol(handler, HttpServerLimits(), error_response, None, fast_path)
    transport = FakeTransport(sock)
    protocol.connection_made(transport)
    return protocol, transport, handler, fast_path


def test_every_request_received_is_answered_the_last_closing(impl: Any) -> None:
    async def run() -> None:
        protocol, transport, handler, _ = make(impl)
        protocol.data_received(post("/slow") + post("/fast/queued") + post("/last"))
        protocol.drain()
        assert protocol.in_progress and transport.data == b"" and not transport.eof
        handler.gate.set()
        await transport.wait_until(lambda: transport.eof, "the FIN")
        assert answers(transport.data) == [(200, b"handler:/slow", None),
                                           (200, b"batched:/fast/queued", None),
                                           (200, b"handler:/last", "close")]
        # Half-closed: the FIN is out, the connection reads on, and discards.
        assert transport.eof and not transport.closed and not protocol.in_progress
        protocol.data_received(post("/fast/after"))
        assert len(answers(transport.data)) == 3

    asyncio.run(run())


def test_a_batched_answer_still_to_come_is_awaited(impl: Any) -> None:
    protocol, transport, _, fast_path = make(impl)
    protocol.data_received(post("/batched/1") + post("/batched/2"))
    protocol.drain()
    [first] = fast_path.replies
    protocol.deferred_done(first)
    [second] = fast_path.replies[1:]
    assert not transport.eof
    protocol.deferred_done(second)
    assert answers(transport.data) == [(200, b"batched:/batched/1", None),
                                       (200, b"batched:/batched/2", "close")]
    assert transport.eof


def test_an_idle_connection_half_closes_at_once(impl: Any) -> None:
    protocol, transport, _, _ = make(impl)
    protocol.data_received(post("/fast/before"))
    protocol.drain()
    assert transport.eof and not protocol.in_progress
    protocol.data_received(post("/fast/after"))  # sent before the client saw the FIN
    assert answers(transport.data) == [(200, b"batched:/fast/before", None)]


def test_a_request_partly_received_is_awaited_and_answered(impl: Any) -> None:
    protocol, transport, _, _ = make(impl)
    request = post("/fast/split", b"0123456789")
    protocol.data_received(request[:20])
    protocol.drain()
    assert protocol.in_progress and not transport.eof
    protocol.data_received(request[20:-3])
    assert protocol.in_progress and not transport.eof
    protocol.data_received(request[-3:])
    assert answers(transport.data) == [(200, b"batched:/fast/split", "close")]
    assert transport.eof


def test_requests_still_unread_in_the_kernel_are_answered(impl: Any) -> None:
    """An idle connection whose client has written two requests the server has not read yet
    (they wait in the socket buffer) stays open for them, and answers both."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        protocol, transport, _, _ = make(impl, ours)
        theirs.sendall(post("/fast/1") + post("/fast/2"))
        protocol.drain()
        assert protocol.in_progress and not transport.eof
        protocol.data_received(ours.recv(65536))
        assert answers(transport.data) == [(200, b"batched:/fast/1", None),
                                           (200, b"batched:/fast/2", "close")]
        assert transport.eof


def test_the_deadline_answers_the_rest_503_in_order(impl: Any) -> None:
    async def run() -> None:
        protocol, transport, handler, _ = make(impl)
        partial = post("/fast/partial", b"0123456789")[:-4]
        protocol.data_received(post("/slow") + post("/fast/queued") + partial)
        await handler.waiting.wait()
        protocol.drain()
        protocol.answer_in_progress("drained")
        assert answers(transport.data) == [(503, b'{"error": "drained"}', None)] * 2 + [
            (503, b'{"error": "drained"}', "close")]
        assert transport.eof and not protocol.in_progress
        # The handler's run is cancelled; its answer never comes.
        handler.gate.set()
        await handler.ended.wait()
        await asyncio.sleep(0)  # a loop turn: where an answer would be written
        assert handler.cancelled == [b"/slow"]
        assert len(answers(transport.data)) == 3

    asyncio.run(run())


def test_the_deadline_drops_a_batched_answer_still_to_come(impl: Any) -> None:
    protocol, transport, _, fast_path = make(impl)
    protocol.data_received(post("/batched/late"))
    protocol.drain()
    protocol.answer_in_progress("drained")
    [reply] = fast_path.replies
    assert reply.cancelled
    protocol.deferred_done(reply)  # the batch ran after all: its answer is not written
    assert answers(transport.data) == [(503, b'{"error": "drained"}', "close")]


def test_close_waits_for_unread_bytes_unless_forced(impl: Any) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        protocol, transport, _, _ = make(impl, ours)
        protocol.drain()
        theirs.sendall(b"GET / HTTP/1.1\r\n\r\n")  # arrives after the FIN: discarded
        assert not protocol.close(force=False) and not transport.closed
        protocol.data_received(ours.recv(65536))
        assert protocol.close(force=False) and transport.closed
        assert transport.data == b""
