"""The asyncio clients under concurrency: many calls in flight on one event loop, each answered
with its own result, on the connections the clients promise."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from tfsfast.client import AsyncGrpcClient, AsyncRestClient, Code, RequestError
from tfsfast.testing.server_process import ServerProcess

from .clients import CountingProxy

pytestmark = pytest.mark.integration

CALLS = 40


async def predict_many(client: AsyncRestClient | AsyncGrpcClient) -> None:
    xs = np.arange(CALLS, dtype=np.float32)
    results = await asyncio.gather(*(
        client.predict("half_plus_two", {"x": xs[i:i + 1].reshape(1, 1)}) for i in range(CALLS)))
    assert [float(y[0, 0]) for y in results] == [x / 2 + 2 for x in xs.tolist()]


@pytest.mark.parametrize("wire_format", ["msgpack", "json"])
def test_rest_calls_in_flight_are_bounded_by_max_connections(
        wire_format: str, server: ServerProcess) -> None:
    proxy = CountingProxy(server.rest_port)

    async def run() -> None:
        async with AsyncRestClient(f"127.0.0.1:{proxy.port}", wire_format=wire_format,
                                   max_connections=4) as client:
            await predict_many(client)
            # The kept connections serve the next round: none is opened.
            await predict_many(client)

    try:
        asyncio.run(run())
        assert proxy.accepted == 4
    finally:
        proxy.close()


def test_grpc_calls_in_flight_share_one_channel(server: ServerProcess) -> None:
    proxy = CountingProxy(server.grpc_port)

    async def run() -> None:
        async with AsyncGrpcClient(f"127.0.0.1:{proxy.port}") as client:
            await predict_many(client)

    try:
        asyncio.run(run())
        assert proxy.accepted == 1
    finally:
        proxy.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_failures_and_successes_in_flight_together(transport: str,
                                                   server: ServerProcess) -> None:
    """A failing call fails alone: the calls in flight beside it, on the same connections or
    channel, get their answers."""

    async def run() -> list[object]:
        client = (AsyncRestClient(f"localhost:{server.rest_port}", max_connections=3)
                  if transport == "rest" else AsyncGrpcClient(f"localhost:{server.grpc_port}"))
        async with client:
            x = np.float32([[2.0]])
            return await asyncio.gather(*(
                client.predict("half_plus_two" if i % 2 else "no_such_model", {"x": x})
                for i in range(10)), return_exceptions=True)

    results = asyncio.run(run())
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, np.ndarray) and result.tolist() == [[3.0]]
        else:
            assert isinstance(result, RequestError)
            assert (result.code, result.message) == (
                Code.NOT_FOUND, "Servable not found for request: Latest(no_such_model)")


def test_a_cancelled_rest_call_closes_its_connection() -> None:
    """The answer to a cancelled call may still come: its connection is closed, not kept for
    the next call to read that answer as its own."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        async with AsyncRestClient(f"127.0.0.1:{listener.getsockname()[1]}") as client:
            call = asyncio.ensure_future(
                client.predict("half_plus_two", {"x": np.float32([[2.0]])}))
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            with conn:
                request = await loop.sock_recv(conn, 65536)
                assert request.startswith(b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\n")
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                assert await loop.sock_recv(conn, 65536) == b""  # closed by the client

    try:
        asyncio.run(run())
    finally:
        listener.close()
