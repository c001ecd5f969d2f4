"""HttpProtocol (compiled and twin) with a fast path in front of its handler.

A stub fast path checks the protocol's side of the contract (what is offered, in which order,
keep-alive, errors, drain); the real ``RestFastPath`` on a served model checks that a connection
with the fast path writes exactly the bytes of a connection without it.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, HttpServerLimits
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.fake_transport import FakeTransport
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy

PROTOCOLS = implementations("tfsfast.server.http._http_protocol",
                            "tfsfast.server.http._http_protocol_py")
FAST_PATHS = implementations("tfsfast.server.http._rest_fast_path",
                             "tfsfast.server.http._rest_fast_path_py")


@pytest.fixture(params=PROTOCOLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``HttpProtocol`` is under test."""
    return importlib.import_module(request.param)


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def bodies(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    rest = bytes(data)
    while rest:
        head, rest = rest.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        out.append((int(lines[0].split()[1]), rest[:length]))
        rest = rest[length:]
    return out


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def fixed(body: bytes, keep_alive: bool) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
            % (len(body), b"" if keep_alive else b"Connection: close\r\n", body))


class StubFastPath:
    """Answers paths starting with /fast (``fixed`` bytes naming the path), raises for /raise,
    declines the rest; records every offer."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, bytes, dict[bytes, bytes], bytes, bool]] = []

    def answer(self, method: str, path: bytes, headers: dict[bytes, bytes], body: bytes,
               keep_alive: bool, connection: Any = None) -> bytes | None:
        self.offers.append((method, path, headers, body, keep_alive))
        if path.startswith(b"/raise"):
            raise RuntimeError("fast path bug")
        if path.startswith(b"/fast"):
            return fixed(b"fast:" + path, keep_alive)
        return None


def make(impl: Any, handler: Any, fast_path: Any,
         limits: HttpServerLimits | None = None) -> tuple[Any, FakeTransport]:
    protocol = impl.HttpProtocol(handler, limits or HttpServerLimits(), error_response, None,
                                 fast_path)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def sync_handler(calls: list[bytes]) -> Any:
    def handler(request: HttpRequest) -> HttpResponse:
        calls.append(request.path)
        return HttpResponse(200, b"handler:" + request.path)

    return handler


def test_fast_path_answers_and_handler_gets_the_rest(impl: Any) -> None:
    calls: list[bytes] = []
    fast = StubFastPath()
    protocol, transport = make(impl, sync_handler(calls), fast)
    protocol.data_received(post("/fast/1", b"abc", "Content-Type: application/json\r\n")
                           + post("/slow") + post("/fast/2"))
    assert bodies(transport.data) == [(200, b"fast:/fast/1"), (200, b"handler:/slow"),
                                      (200, b"fast:/fast/2")]
    assert calls == [b"/slow"]
    method, path, headers, body, keep_alive = fast.offers[0]
    assert (method, path, body, keep_alive) == ("POST", b"/fast/1", b"abc", True)
    assert headers == {b"host": b"x", b"content-length": b"3",
                       b"content-type": b"application/json"}
    assert not transport.closed


def test_only_posts_are_offered(impl: Any) -> None:
    calls: list[bytes] = []
    fast = StubFastPath()
    protocol, transport = make(impl, sync_handler(calls), fast)
    protocol.data_received(b"GET /fast/get HTTP/1.1\r\n\r\nPUT /fast/put HTTP/1.1\r\n"
                           b"Content-Length: 0\r\n\r\n")
    assert fast.offers == []
    assert calls == [b"/fast/get", b"/fast/put"]
    assert len(bodies(transport.data)) == 2


def test_connection_close_reaches_the_fast_path_and_closes(impl: Any) -> None:
    fast = StubFastPath()
    protocol, transport = make(impl, sync_handler([]), fast)
    protocol.data_received(post("/fast/x", b"", "Connection: close\r\n"))
    assert fast.offers[0][4] is False
    assert bytes(transport.data) == fixed(b"fast:/fast/x", False)
    assert transport.closed
    protocol.data_received(post("/fast/after"))  # nothing more is answered
    assert bytes(transport.data) == fixed(b"fast:/fast/x", False)


def test_fast_path_exception_becomes_500_and_connection_survives(impl: Any) -> None:
    calls: list[bytes] = []
    protocol, transport = make(impl, sync_handler(calls), StubFastPath())
    protocol.data_received(post("/raise") + post("/fast/ok"))
    got = bodies(transport.data)
    assert [s for s, _ in got] == [500, 200]
    assert json.loads(got[0][1]) == {"error": "Internal server error"}
    assert calls == [] and not transport.closed


def test_pipelined_fast_requests_wait_for_an_async_one(impl: Any) -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        gate = asyncio.Event()
        offered: list[bytes] = []

        async def handler(request: HttpRequest) -> HttpResponse:
            await gate.wait()
            return HttpResponse(200, b"handler:" + request.path)

        fast = StubFastPath()
        protocol, transport = make(impl, handler, fast)
        protocol.data_received(post("/fast/1") + post("/slow") + post("/fast/2"))
        await asyncio.sleep(0)  # a loop turn: the handler's task starts, and waits
        # /fast/2 must not be answered (or even offered) before /slow is done.
        offered = [o[1] for o in fast.offers]
        assert bodies(transport.data) == [(200, b"fast:/fast/1")]
        gate.set()
        await transport.wait_for(3)
        return offered, [b for _, b in bodies(transport.data)]

    offered, answered = asyncio.run(run())
    assert offered == [b"/fast/1", b"/slow"]
    assert answered == [b"fast:/fast/1", b"handler:/slow", b"fast:/fast/2"]


def test_drain_answers_the_request_in_progress_and_the_queued_one_then_closes(
        impl: Any) -> None:
    async def run() -> tuple[list[tuple[int, bytes]], bytes, bool, Any]:
        gate = asyncio.Event()

        async def handler(request: HttpRequest) -> HttpResponse:
            await gate.wait()
            return HttpResponse(200, b"handler:" + request.path)

        fast = StubFastPath()
        protocol, transport = make(impl, handler, fast)
        protocol.data_received(post("/slow") + post("/fast/queued"))
        await asyncio.sleep(0)  # a loop turn: the handler's task starts, and waits
        protocol.drain()
        gate.set()
        await transport.wait_until(lambda: transport.eof, "the FIN")
        return bodies(transport.data), bytes(transport.data), transport.eof, fast.offers

    answered, data, eof, offers = asyncio.run(run())
    # The queued request is answered too, as the last: the fast path is told to close.
    assert answered == [(200, b"handler:/slow"), (200, b"fast:/fast/queued")] and eof
    assert [(path, keep_alive) for _, path, _, _, keep_alive in offers] == [
        (b"/slow", True), (b"/fast/queued", False)]
    assert data.count(b"Connection: close") == 1 and data.endswith(b"fast:/fast/queued")


# --- the real fast path: the same bytes on the wire as without it ------------------------------

@pytest.fixture(scope="module", params=[True, False], ids=["inline", "async"])
def core(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]):
    """Model "m" whose measured runs go inline (on the loop), or never do (to a thread)."""
    base = tmp_path_factory.mktemp("protocol_fast_path") / "m"
    shutil.copytree(exported_models["tf1"], base / "3")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("m", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(
            run_cost_policy=RunCostPolicy(float("inf") if request.param else 0.0))))
    yield core
    core.stop()


ROW = b'{"instances": [[1.0], [2.0], [5.0]]}'
TRAFFIC = b"".join([
    post("/v1/models/m:predict", ROW, "Content-Type: application/json\r\n"),
    post("/v1/models/m/versions/3:predict", b'{"inputs": {"x": [[1.5]]}}'),
    post("/v1/models/m:predict", b'{"instances": [["a"]]}'),
    post("/v1/models/m:predict", b"not json"),
    post("/v1/models/nope:predict", ROW),
    post("/v1/models/m/versions/9:predict", ROW),
    post("/v1/models/m:predict?q=1", ROW),
    post("/v1/models/m:predict", gzip.compress(ROW), "Content-Encoding: gzip\r\n"),
    post("/v1/models/m:predict", ROW, "Content-Type: application/msgpack\r\n"),  # not msgpack
    post("/v1/models/m:predict", ROW, "Accept: */*\r\nContent-Type: application/json\r\n"),
    post("/v1/models/m:predict", ROW, "Accept: application/msgpack\r\n"),
    b"GET /v1/models/m HTTP/1.1\r\n\r\n",
    post("/v1/models/m:regress", b'{"examples": [{"x": 1.0}]}'),
    post("/nope", ROW),
    post("/v1/models/m:predict", b'{"inputs": [[7.0]]}'),
    post("/v1/models/m:predict", ROW, "Connection: close\r\n"),
])
COUNT = 16


@pytest.mark.parametrize("fast_impl", FAST_PATHS)
def test_same_bytes_with_and_without_the_fast_path(impl: Any, fast_impl: str,
                                                   core: ServerCore) -> None:
    options = RestApiOptions()
    handler = HttpRestApiHandler(core, options)

    async def serve(fast_path: Any) -> tuple[bytes, bool]:
        protocol, transport = make(impl, handler, fast_path)
        for i in range(0, len(TRAFFIC), 97):  # arbitrary packet boundaries
            protocol.data_received(TRAFFIC[i:i + 97])
        await transport.wait_for(COUNT)
        return bytes(transport.data), transport.closed

    async def run() -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
        await serve(None)  # measures the signature's run cost
        fast = rest_fast_path.for_core(core, options, importlib.import_module(fast_impl))
        return await serve(None), await serve(fast)

    without, with_fast = asyncio.run(run())
    assert len(bodies(without[0])) == COUNT
    assert with_fast == without
    assert [s for s, _ in bodies(with_fast[0])] == [200, 200, 400, 400, 404, 404, 200, 200, 400,
                                                    200, 200, 200, 400, 404, 200, 200]
