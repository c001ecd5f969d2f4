"""HttpServer's drain on a real listening socket: nothing the kernel has accepted is reset.

Every test runs with the compiled protocol and its twin, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, HttpServerLimits
from tfsfast.server.http.http_server import HttpServer
from tfsfast.testing.test_util import implementations
from tfsfast.testing.wait import wait_until_async

IMPLS = implementations("tfsfast.server.http._http_protocol",
                        "tfsfast.server.http._http_protocol_py")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run
    return asyncio.run


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, request.body)


def post(body: bytes) -> bytes:
    return b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_connections_waiting_in_the_accept_queue_are_served(impl: Any, run: Any) -> None:
    """Clients that connected and wrote a request before the drain, while the server had not
    accepted them yet, get their answer and then the end of the connection, not a reset; a
    client that connects afterwards is refused."""

    async def main() -> tuple[list[bytes], bool]:
        server = HttpServer(echo, HttpServerLimits(), error_response, protocol=impl.HttpProtocol)
        await server.start(0, host="127.0.0.1")
        # The loop does not run while they connect: they wait in the accept queue.
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        for i, client in enumerate(clients):
            client.sendall(post(b"request %d" % i))
        await server.drain()
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        loop = asyncio.get_running_loop()
        answers = await asyncio.gather(*(loop.run_in_executor(None, read_all, client)
                                         for client in clients))
        for client in clients:
            client.close()
        await server.close()
        return answers, refused

    answers, refused = run(main())
    for i, answer in enumerate(answers):
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert answer.endswith(b"\r\n\r\nrequest %d" % i)
    assert refused


def test_idle_connections_end_with_a_fin_and_answered_ones_after_their_answer(
        impl: Any, run: Any) -> None:
    async def main() -> tuple[bytes, bytes, int]:
        server = HttpServer(echo, HttpServerLimits(), error_response, protocol=impl.HttpProtocol)
        await server.start(0, host="127.0.0.1")
        loop = asyncio.get_running_loop()
        idle = socket.create_connection(("127.0.0.1", server.port))
        busy = socket.create_connection(("127.0.0.1", server.port))
        busy.sendall(post(b"first"))
        first = await loop.run_in_executor(None, busy.recv, 65536)
        await wait_until_async(lambda: len(server.connections) == 2,
                               "the idle connection to be accepted too")
        await server.drain()
        # Both see the end of the connection, not a reset: idle at once, busy after the
        # answer it is owed.
        assert server.requests_in_progress == 0
        idle_rest = await loop.run_in_executor(None, read_all, idle)
        busy.sendall(post(b"after the FIN"))  # discarded: the client had the FIN first
        busy_rest = await loop.run_in_executor(None, read_all, busy)
        idle.close()
        busy.close()
        await server.close()
        return idle_rest + busy_rest, first, len(server.connections)

    rest, first, left = run(main())
    assert first.endswith(b"first") and b"Connection: close" not in first
    assert rest == b"" and left == 0
