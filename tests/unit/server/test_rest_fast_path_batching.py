"""The REST fast path on a batching model: queued from the connection, answered once per batch.

A real server core loads the TF-exported half_plus_two with ``--enable_batching``; requests go
through an HTTP protocol (compiled and twin) with a fast path (compiled and twin) on an in-memory
transport. Every batched answer must be byte for byte what the handler sends for the same
request on the same core, responses must keep request order, and a connection that goes away
must take its queued request with it.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfsfast.batching import batching_parameters as bp
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import (
    HttpRequest,
    HttpResponse,
    HttpServerLimits,
    encode_response,
)
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.fake_transport import FakeTransport
from tfsfast.testing.test_util import implementations
from tfsfast.testing.wait import wait_until
from tfsfast.util.run_cost import RunCostPolicy

FAST_PATHS = implementations("tfsfast.server.http._rest_fast_path",
                             "tfsfast.server.http._rest_fast_path_py")
PROTOCOLS = implementations("tfsfast.server.http._http_protocol",
                            "tfsfast.server.http._http_protocol_py")
PREDICT = b"/v1/models/m:predict"
ROW = b'{"instances": [[1.0], [2.0], [5.0]]}'
JSON = {b"content-type": b"application/json"}


@pytest.fixture(params=["batch threads", "event loop"])
def where_batches_run(request: pytest.FixtureRequest) -> RunCostPolicy:
    """Batches on batch threads only, or (once a thread has measured one) on the event loop."""
    return RunCostPolicy(0.0 if request.param == "batch threads" else 10.0)


@pytest.fixture(params=FAST_PATHS)
def fast_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


@pytest.fixture(params=PROTOCOLS)
def protocol_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


def make_core(tmp_path: Path, model: Path, batching: str, policy: RunCostPolicy) -> ServerCore:
    base = tmp_path / "m"
    shutil.copytree(model, base / "1")
    config = mc.parse_model_server_config(f"""
        model_config_list {{ config {{
          name: "m" base_path: "{base}" model_platform: "tensorflow"
        }} }}""")
    return ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(
            enable_model_warmup=False,
            batching_parameters=bp.parse_batching_parameters(batching),
            run_cost_policy=policy)))


def serving(tmp_path: Path, exported_models: dict[str, Path], batch_timeout_micros: int,
            policy: RunCostPolicy) -> Iterator[ServerCore]:
    core = make_core(tmp_path, exported_models["tf1"],
                     f"max_batch_size {{ value: 64 }} "
                     f"batch_timeout_micros {{ value: {batch_timeout_micros} }} "
                     "max_enqueued_batches { value: 100 } num_batch_threads { value: 1 }",
                     policy)
    yield core
    core.stop()


@pytest.fixture
def core(tmp_path: Path, exported_models: dict[str, Path],
         where_batches_run: RunCostPolicy) -> Iterator[ServerCore]:
    """half_plus_two, batched at once (no batch timeout)."""
    yield from serving(tmp_path, exported_models, 0, where_batches_run)


def error_response(status: int, message: str, headers: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}).encode())


def request_bytes(body: bytes, path: bytes = PREDICT, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def handler_bytes(core: ServerCore, body: bytes, keep_alive: bool = True,
                  path: bytes = PREDICT) -> bytes:
    """What the general handler sends for this request (batched the same way)."""
    async def run() -> bytes:
        result = HttpRestApiHandler(core)(HttpRequest("POST", path, JSON, body, keep_alive))
        if not isinstance(result, HttpResponse):
            result = await result
        return encode_response(result, keep_alive)

    return asyncio.run(run())


class Connection:
    """A protocol with the fast path on ``core``, on an in-memory transport."""

    def __init__(self, protocol_impl: Any, fast_impl: Any, core: ServerCore) -> None:
        self.fast = rest_fast_path.for_core(core, RestApiOptions(), fast_impl)
        self.protocol = protocol_impl.HttpProtocol(HttpRestApiHandler(core), HttpServerLimits(),
                                                   error_response, None, self.fast)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)

    async def responses(self, count: int) -> list[bytes]:
        """Waits until ``count`` whole responses were written; returns them in order."""
        return await self.transport.wait_for(count)


def test_a_batched_request_gets_the_handlers_bytes(protocol_impl: Any, fast_impl: Any,
                                                    core: ServerCore) -> None:
    bodies = [ROW, b'{"inputs": [[1.0], [2.0]]}', b'{"instances": [[3.0]]}',
              b'{"signature_name": "serving_default", "instances": [[0.5], [7.0]]}']
    expected = [handler_bytes(core, body) for body in bodies]

    async def run() -> list[bytes]:
        connection = Connection(protocol_impl, fast_impl, core)
        got = []
        for body in bodies:
            start = len(connection.transport.responses())
            connection.protocol.data_received(request_bytes(body))
            got = await connection.responses(start + 1)
        return got

    assert asyncio.run(run()) == expected
    assert expected[0].endswith(b'{"predictions": [[2.5], [3.0], [4.5]]}')


def test_many_connections_each_get_their_own_rows(protocol_impl: Any, fast_impl: Any,
                                                  core: ServerCore) -> None:
    # 40 requests of 1 to 4 rows each queue at once; every one must get exactly its own rows
    # back, whichever batches they met in.
    bodies = [json.dumps({"instances": [[float(i * 10 + j)] for j in range(1 + i % 4)]}).encode()
              for i in range(40)]

    async def run() -> list[list[bytes]]:
        connections = [Connection(protocol_impl, fast_impl, core) for _ in bodies]
        for connection, body in zip(connections, bodies, strict=True):
            connection.protocol.data_received(request_bytes(body))
        return [await connection.responses(1) for connection in connections]

    for body, responses in zip(bodies, asyncio.run(run()), strict=True):
        rows = json.loads(body)["instances"]
        assert len(responses) == 1
        assert json.loads(responses[0].split(b"\r\n\r\n", 1)[1]) == {
            "predictions": [[row[0] * 0.5 + 2.0] for row in rows]}


def test_pipelined_requests_are_answered_in_order(protocol_impl: Any, fast_impl: Any,
                                                  core: ServerCore) -> None:
    # The first is batched; the second waits its turn (and is batched in its turn); the third
    # is the handler's (an error) and must still come third.
    bodies = [b'{"instances": [[1.0]]}', b'{"instances": [[2.0]]}', b'{"instances": [["a"]]}']

    async def run() -> list[bytes]:
        connection = Connection(protocol_impl, fast_impl, core)
        connection.protocol.data_received(b"".join(request_bytes(body) for body in bodies))
        return await connection.responses(3)

    responses = asyncio.run(run())
    assert [r.split(b"\r\n\r\n", 1)[1] for r in responses[:2]] == [
        b'{"predictions": [[2.5]]}', b'{"predictions": [[3.0]]}']
    assert responses[2].startswith(b"HTTP/1.1 400 ")
    assert responses[2] == handler_bytes(core, bodies[2])


def test_a_request_the_batcher_refuses_is_answered_at_once(protocol_impl: Any, fast_impl: Any,
                                                           core: ServerCore) -> None:
    # More rows than max_batch_size: TF's INVALID_ARGUMENT at enqueue, the handler's bytes.
    body = json.dumps({"instances": [[1.0]] * 65}).encode()

    async def run() -> Any:
        connection = Connection(protocol_impl, fast_impl, core)
        return connection.fast.answer("POST", PREDICT, JSON, body, True, connection.protocol)

    answer = asyncio.run(run())
    expected = handler_bytes(core, body)
    assert isinstance(answer, bytes)
    assert answer == expected
    assert b"Task size 65 is larger than maximum input batch size 64" in answer


class Recording:
    """A fast path that records the replies it hands out (and so is offered as a Python
    object, also to the compiled protocol)."""

    def __init__(self, fast: Any) -> None:
        self.fast = fast
        self.replies: list[Any] = []

    def answer(self, *args: Any) -> Any:
        answer = self.fast.answer(*args)
        if answer is not None and not isinstance(answer, bytes):
            self.replies.append(answer)
        return answer


@pytest.fixture
def slow_core(tmp_path: Path, exported_models: dict[str, Path],
              where_batches_run: RunCostPolicy) -> Iterator[ServerCore]:
    """half_plus_two whose batches wait 30 s to fill: a request stays queued during a test."""
    yield from serving(tmp_path, exported_models, 30_000_000, where_batches_run)


def test_a_closed_connection_drops_its_queued_request(protocol_impl: Any, fast_impl: Any,
                                                      slow_core: ServerCore) -> None:
    async def run() -> tuple[list[Any], bytes]:
        connection = Connection(protocol_impl, fast_impl, slow_core)
        recording = Recording(connection.fast)
        protocol = protocol_impl.HttpProtocol(HttpRestApiHandler(slow_core),
                                              HttpServerLimits(), error_response, None, recording)
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(request_bytes(ROW) + request_bytes(ROW))
        await asyncio.sleep(0)  # a loop turn: a flush on the loop finds the batch still open
        assert len(recording.replies) == 1  # the second waits behind the first
        task = recording.replies[0].task
        assert not task.cancelled
        protocol.connection_lost(None)
        return recording.replies, task, bytes(transport.data)

    replies, task, written = asyncio.run(run())
    assert written == b""
    assert task.cancelled  # dropped when its batch forms, never run
    assert replies[0].finished
    assert replies[0].task is None  # the task's way back to its reply is cut


def test_an_answered_request_leaves_no_cycle_for_the_gc(protocol_impl: Any, fast_impl: Any,
                                                        core: ServerCore) -> None:
    # A reply and its task refer to each other while queued. Left as a cycle, every request's
    # objects waited for the young GC, which then ran every ~190 requests under load.
    async def run() -> list[bytes]:
        connection = Connection(protocol_impl, fast_impl, core)
        for count in range(1, 6):
            connection.protocol.data_received(request_bytes(ROW))
            got = await connection.responses(count)
        return got

    def left() -> list[str]:
        return [type(o).__name__ for o in gc.get_objects()
                if type(o).__name__ in ("BatchTask", "BatchedReply", "Request")]

    gc.collect()
    gc.disable()
    try:
        responses = asyncio.run(run())
        # A batch thread lets go of its batch just after it handed the answers to the loop;
        # objects in a cycle would stay for ever (the GC is off).
        wait_until(lambda: not left(), "the requests' objects to be freed",
                   detail=lambda: repr(left()))
    finally:
        gc.enable()
    assert len(responses) == 5
    assert all(r.endswith(b'{"predictions": [[2.5], [3.0], [4.5]]}') for r in responses)


def test_a_queued_request_holds_its_version_until_answered(fast_impl: Any,
                                                            slow_core: ServerCore) -> None:
    # The manager unloads a version once nothing references its entry (as a ServableHandle
    # does for the handler): the reply must hold it while queued and let go once done.
    entry = slow_core.manager.handle_table.find("m", None, 1)
    fast = rest_fast_path.for_core(slow_core, RestApiOptions(), fast_impl)

    class Nobody:
        def deferred_done(self, reply: Any) -> None:
            pass

    async def run() -> Any:
        return fast.answer("POST", PREDICT, JSON, ROW, True, Nobody())

    reply = asyncio.run(run())
    assert any(ref is entry for ref in gc.get_referents(reply))
    reply.cancel()
    assert not any(ref is entry for ref in gc.get_referents(reply))


def test_without_a_connection_the_handler_answers(fast_impl: Any, core: ServerCore) -> None:
    fast = rest_fast_path.for_core(core, RestApiOptions(), fast_impl)

    async def run() -> Any:
        return fast.answer("POST", PREDICT, JSON, ROW, True)

    assert asyncio.run(run()) is None


def test_drain_answers_the_batched_and_the_queued_request_then_half_closes(
        protocol_impl: Any, fast_impl: Any, core: ServerCore) -> None:
    async def run() -> tuple[list[bytes], bool, bool]:
        connection = Connection(protocol_impl, fast_impl, core)
        connection.protocol.data_received(request_bytes(ROW) + request_bytes(ROW))
        connection.protocol.drain()  # the first is in its batch, the second queued behind it
        transport = connection.transport
        await transport.wait_until(lambda: transport.eof, "the FIN")
        return transport.responses(), transport.eof, transport.closed

    responses, eof, closed = asyncio.run(run())
    # Both answered, the last one closing the connection: FIN, and reading on until the
    # client closes.
    assert responses == [handler_bytes(core, ROW), handler_bytes(core, ROW, keep_alive=False)]
    assert b"Connection: close\r\n" in responses[1]
    assert eof and not closed
