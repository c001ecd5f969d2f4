"""What HttpProtocol (compiled and twin) hands the access log: one line per answer it writes.

The protocol's side of the contract: for each request answered (by the handler, the fast path at
once or later, or the protocol itself), ``record_rest`` gets the time the request completed (the
protocol's ``_last_activity`` when its last packet came), the peer, the method, the request
target, the status and body sizes of what was written. ``RecordingLog`` takes those calls as
they come; the lines the real log makes of them are tested with the log
(``test_access_log.py``), and end to end with a real server (``tests/integration``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tfsfast import _extensions
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import (
    HttpRequest,
    HttpResponse,
    HttpServerLimits,
    encoded_status,
)
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.fake_transport import FakeTransport, split_responses
from tfsfast.testing.test_util import implementations
from tfsfast.testing.wait import wait_until_async
from tfsfast.util.run_cost import RunCostPolicy

PROTOCOLS = implementations("tfsfast.server.http._http_protocol",
                            "tfsfast.server.http._http_protocol_py")
FAST_PATHS = implementations("tfsfast.server.http._rest_fast_path",
                             "tfsfast.server.http._rest_fast_path_py")
PEER = ("::ffff:10.0.0.7", 53412, 0, 0)


@pytest.fixture(params=PROTOCOLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``HttpProtocol`` is under test."""
    return importlib.import_module(request.param)


class RecordingLog:
    """Takes the protocol's ``record_rest`` calls: (received, peer, method, target, status,
    bytes in, bytes out)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, object, str, bytes, int, int, int]] = []

    def record_rest(self, received: float, peer: object, method: str, target: bytes,
                    status: int, bytes_in: int, bytes_out: int) -> None:
        self.lines.append((received, peer, method, target, status, bytes_in, bytes_out))

    def requests(self) -> list[tuple[str, bytes, int, int, int]]:
        """(method, target, status, bytes in, bytes out) of each line."""
        return [line[2:] for line in self.lines]


class PeerTransport(FakeTransport):
    """A FakeTransport whose peer is ``PEER``."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return PEER if name == "peername" else super().get_extra_info(name, default)


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def error_size(message: str) -> int:
    return len(json.dumps({"error": message}).encode())


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def statuses(transport: FakeTransport) -> list[tuple[int, int]]:
    """(status, body bytes) of each response written."""
    return [encoded_status(response) for response in transport.responses()]


class Reply:
    """A fast path's deferred answer (``DeferredAnswer``)."""

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.keep_alive = True
        self.cancelled = False

    def encode(self, keep_alive: bool) -> bytes:
        body = b"batched:" + self.path
        return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"" if keep_alive else b"Connection: close\r\n", body))

    def cancel(self) -> None:
        self.cancelled = True


class FastPath:
    """Answers /fast at once, /batched later (a ``Reply``), raises for /raise, leaves the rest
    to the handler."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def answer(self, method: str, path: bytes, headers: Any, body: bytes, keep_alive: bool,
               connection: Any = None) -> Any:
        if path.startswith(b"/raise"):
            raise RuntimeError("fast path bug")
        if path.startswith(b"/fast"):
            return Reply(path).encode(keep_alive)
        if path.startswith(b"/batched"):
            self.replies.append(Reply(path))
            return self.replies[-1]
        return None


class Handler:
    """Answers /slow... once ``gate`` is set, /missing... 404, anything else 200 at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    def __call__(self, request: HttpRequest) -> Any:
        if request.path.startswith(b"/slow"):
            return self._later(request.path)
        if request.path.startswith(b"/missing"):
            return HttpResponse(404, b"no:" + request.path)
        return HttpResponse(200, b"handler:" + request.path)

    async def _later(self, path: bytes) -> HttpResponse:
        self.waiting.set()
        await self.gate.wait()
        return HttpResponse(200, b"handler:" + path)


def make(impl: Any, fast_path: Any = None, limits: HttpServerLimits | None = None,
         connections: set[Any] | None = None) -> tuple[Any, PeerTransport, Handler, RecordingLog]:
    handler, log = Handler(), RecordingLog()
    protocol = impl.HttpProtocol(handler, limits or HttpServerLimits(), error_response,
                                 connections, fast_path, log)
    transport = PeerTransport()
    protocol.connection_made(transport)
    return protocol, transport, handler, log


def test_handler_answers_are_recorded(impl: Any) -> None:
    protocol, transport, _, log = make(impl)
    protocol.data_received(b"GET /v1/models/m?x=1 HTTP/1.1\r\n\r\n" + post("/missing", b"abc"))
    assert statuses(transport) == [(200, 24), (404, 11)]
    received = protocol._last_activity
    assert log.lines == [(received, PEER, "GET", b"/v1/models/m?x=1", 200, 0, 24),
                         (received, PEER, "POST", b"/missing", 404, 3, 11)]


def test_fast_path_answers_are_recorded(impl: Any) -> None:
    protocol, transport, _, log = make(impl, FastPath())
    protocol.data_received(post("/fast/1", b"{}") + post("/raise") + post("/other"))
    assert statuses(transport) == [(200, 15), (500, error_size("Internal server error")),
                                   (200, 14)]
    assert log.requests() == [("POST", b"/fast/1", 200, 2, 15),
                              ("POST", b"/raise", 500, 0, error_size("Internal server error")),
                              ("POST", b"/other", 200, 0, 14)]
    assert {line[0] for line in log.lines} == {protocol._last_activity}


def test_each_request_keeps_the_time_it_completed(impl: Any) -> None:
    """Pipelined requests wait behind a slow one; each line starts when its request came."""

    async def run() -> None:
        protocol, transport, handler, log = make(impl, FastPath())
        protocol.data_received(post("/slow") + post("/fast/a"))
        first = protocol._last_activity
        await handler.waiting.wait()
        protocol.data_received(post("/b"))
        second = protocol._last_activity
        assert log.lines == []
        handler.gate.set()
        await transport.wait_for(3)
        assert log.lines == [(first, PEER, "POST", b"/slow", 200, 0, 13),
                             (first, PEER, "POST", b"/fast/a", 200, 0, 15),
                             (second, PEER, "POST", b"/b", 200, 0, 10)]

    asyncio.run(run())


def test_a_batched_answer_is_recorded_when_it_is_written(impl: Any) -> None:
    fast_path = FastPath()
    protocol, transport, _, log = make(impl, fast_path)
    protocol.data_received(post("/batched/1", b"12345") + post("/fast/2"))
    received = protocol._last_activity
    assert log.lines == []
    protocol.deferred_done(fast_path.replies[0])
    assert statuses(transport) == [(200, 18), (200, 15)]
    assert log.lines == [(received, PEER, "POST", b"/batched/1", 200, 5, 18),
                         (received, PEER, "POST", b"/fast/2", 200, 0, 15)]


def test_a_request_whose_connection_closed_before_its_answer_is_499(impl: Any) -> None:
    fast_path = FastPath()
    protocol, _, _, log = make(impl, fast_path)
    protocol.data_received(post("/batched/1", b"xy"))
    protocol.connection_lost(None)
    assert fast_path.replies[0].cancelled
    assert log.requests() == [("POST", b"/batched/1", 499, 2, 0)]
    protocol.deferred_done(fast_path.replies[0])  # too late: nothing more
    assert len(log.lines) == 1

    async def run() -> None:
        protocol, transport, handler, log = make(impl)
        protocol.data_received(post("/slow/1", b"abc"))
        await handler.waiting.wait()
        protocol.connection_lost(None)
        handler.gate.set()
        await wait_until_async(lambda: log.lines, "the handler's task to end")
        assert transport.data == b""
        assert log.requests() == [("POST", b"/slow/1", 499, 3, 0)]

    asyncio.run(run())


@pytest.mark.parametrize(("raw", "line"), [
    (b"NOT HTTP AT ALL\r\n\r\n", ("", b"", 400, 0)),
    (b"POST /p HTTP/1.1\r\nContent-Length: 101\r\n\r\n", ("POST", b"/p", 413, 0)),
    (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"40\r\n" + b"a" * 64 + b"\r\n40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n",
     ("POST", b"/p", 413, 128)),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", ("GET", b"/" + b"a" * 9000, 414, 0)),
    (b"GET /h HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
     ("GET", b"/h", 431, 0)),
])
def test_refusals_are_recorded(impl: Any, raw: bytes, line: tuple[str, bytes, int, int]) -> None:
    protocol, transport, _, log = make(impl, limits=HttpServerLimits(max_body_bytes=100))
    protocol.data_received(raw)
    [(status, size)] = statuses(transport)
    assert transport.closed
    assert log.lines == [(protocol._last_activity, PEER, *line, size)]
    assert status == line[2]


def test_a_stalled_request_is_recorded_with_its_408(impl: Any) -> None:
    protocol, transport, _, log = make(impl)
    protocol.data_received(b"GET /stalled HTTP/1.1\r\nHost: x\r\n")
    received = protocol._last_activity
    protocol.check_idle(received + 60)
    [(status, size)] = statuses(transport)
    assert log.lines == [(received, PEER, "GET", b"/stalled", 408, 0, size)] and status == 408


def test_a_connection_over_the_cap_is_recorded_with_its_503(impl: Any) -> None:
    protocol, transport, _, log = make(impl, limits=HttpServerLimits(max_connections=0),
                                       connections=set())
    [(status, size)] = statuses(transport)
    assert log.lines == [(protocol._last_activity, PEER, "", b"", 503, 0, size)]
    assert status == 503


def test_the_drain_deadline_records_every_503(impl: Any) -> None:
    async def run() -> None:
        protocol, transport, handler, log = make(impl, FastPath())
        partial = post("/fast/partial", b"0123456789")[:-4]
        protocol.data_received(post("/slow", b"s") + post("/fast/queued", b"q") + partial)
        received = protocol._last_activity
        await handler.waiting.wait()
        protocol.drain()
        protocol.answer_in_progress("drained")
        size = error_size("drained")
        assert statuses(transport) == [(503, size)] * 3
        assert log.lines == [(received, PEER, "POST", b"/slow", 503, 1, size),
                             (received, PEER, "POST", b"/fast/queued", 503, 1, size),
                             (received, PEER, "POST", b"/fast/partial", 503, 6, size)]

    asyncio.run(run())


def test_a_batched_request_at_the_drain_deadline_is_recorded(impl: Any) -> None:
    fast_path = FastPath()
    protocol, transport, _, log = make(impl, fast_path)
    protocol.data_received(post("/batched/1", b"abcd"))
    received = protocol._last_activity
    protocol.drain()
    protocol.answer_in_progress("drained")
    assert fast_path.replies[0].cancelled
    assert statuses(transport) == [(503, error_size("drained"))]
    assert log.lines == [(received, PEER, "POST", b"/batched/1", 503, 4, error_size("drained"))]


def test_no_log_no_peer_lookup(impl: Any) -> None:
    """Without a log the protocol never asks the transport for its peer."""

    class NoPeer(FakeTransport):
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            assert name != "peername"
            return super().get_extra_info(name, default)

    protocol = impl.HttpProtocol(Handler(), HttpServerLimits(), error_response, None,
                                 FastPath())
    transport = NoPeer()
    protocol.connection_made(transport)
    protocol.data_received(post("/fast/1") + post("/other") + b"BAD\r\n\r\n")
    assert [status for status, _ in statuses(transport)] == [200, 200, 400]


# --- the real fast path: the same lines as the handler's ---------------------------------------

@pytest.fixture(scope="module", params=[True, False], ids=["inline", "async"])
def core(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]):
    """Model "m" whose measured runs go inline (on the loop), or never do (to a thread)."""
    base = tmp_path_factory.mktemp("protocol_access_log") / "m"
    shutil.copytree(exported_models["tf1"], base / "3")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("m", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(
            run_cost_policy=RunCostPolicy(float("inf") if request.param else 0.0))))
    yield core
    core.stop()


ROW = b'{"instances": [[1.0], [2.0], [5.0]]}'
JSON = "Content-Type: application/json\r\n"
TRAFFIC = [
    post("/v1/models/m:predict", ROW, JSON),
    post("/v1/models/m/versions/3:predict", b'{"inputs": {"x": [[1.5]]}}', JSON),
    post("/v1/models/m:predict", b"not json", JSON),
    post("/v1/models/nope:predict", ROW, JSON),
    post("/v1/models/m:predict?q=1", ROW),
    b"GET /v1/models/m HTTP/1.1\r\n\r\n",
    post("/v1/models/m:regress", b'{"examples": [{"x": 1.0}]}'),
    post("/v1/models/m:predict", ROW, JSON),
]


@pytest.mark.parametrize("fast_impl", FAST_PATHS)
def test_the_fast_path_records_what_the_handler_would(impl: Any, fast_impl: str,
                                                      core: ServerCore) -> None:
    """Requests one at a time (so the compiled protocol's head scanner takes the plain ones)."""
    options = RestApiOptions()
    handler = HttpRestApiHandler(core, options)

    async def serve(fast_path: Any) -> tuple[list[tuple[int, int]], RecordingLog, Any]:
        log = RecordingLog()
        protocol = impl.HttpProtocol(handler, HttpServerLimits(), handler.error_response, None,
                                     fast_path, log)
        transport = PeerTransport()
        protocol.connection_made(transport)
        for i, request in enumerate(TRAFFIC):
            protocol.data_received(request)
            await transport.wait_for(i + 1)
        return statuses(transport), log, protocol

    async def run() -> tuple[Any, Any]:
        await serve(None)  # measures the signature's run cost
        fast = rest_fast_path.for_core(core, options, importlib.import_module(fast_impl))
        return await serve(None), await serve(fast)

    (answers, without, _), (fast_answers, with_fast, protocol) = asyncio.run(run())
    assert fast_answers == answers
    assert [status for status, _ in answers] == [200, 200, 400, 404, 200, 200, 400, 200]
    assert with_fast.requests() == without.requests() == [
        (request.split(b" ")[0].decode(), request.split(b" ")[1], status,
         len(request.split(b"\r\n\r\n", 1)[1]), size)
        for request, (status, size) in zip(TRAFFIC, answers, strict=True)]
    assert {line[1] for line in with_fast.lines} == {PEER}
    if (not _extensions.NO_EXTENSIONS and fast_impl.endswith("._rest_fast_path")
            and impl.__name__.endswith("._http_protocol")):
        assert protocol.scanned_requests > 0


def test_encoded_status() -> None:
    data = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [encoded_status(r) for r in split_responses(data)] == [(404, 3), (200, 0)]
    assert encoded_status(b"garbage") == (0, 0)
