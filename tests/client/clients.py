"""How the client's tests make clients and watch their connections.

``CLIENTS`` names every client and wire format; ``connect`` makes one, the asyncio clients
wrapped (``LoopClient``) so that a test calls all four the same way. ``CountingProxy`` counts
the connections a client opens.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

from tfsfast.client import AsyncGrpcClient, AsyncRestClient, GrpcClient, RestClient

CLIENTS = ["rest-msgpack", "rest-json", "grpc", "async-rest-msgpack", "async-rest-json",
           "async-grpc"]


class LoopClient:
    """An asyncio client whose calls each run to completion on the client's own event loop, so
    that a test drives it as it drives a sync client."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.loop = asyncio.new_event_loop()

        async def made() -> Any:  # grpc.aio channels belong to the loop they are made in
            return make()

        self.client = self.loop.run_until_complete(made())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def connect(kind: str, rest_target: str, grpc_target: str, **kwargs: Any) -> Any:
    """The client ``kind`` (one of ``CLIENTS``) for the REST or gRPC target."""
    wire_format = {"wire_format": kind.rsplit("-", 1)[1]} if "rest" in kind else {}
    if kind.startswith("async-"):
        cls: Any = AsyncRestClient if "rest" in kind else AsyncGrpcClient
        target = rest_target if "rest" in kind else grpc_target
        return LoopClient(lambda: cls(target, **wire_format, **kwargs))
    if "rest" in kind:
        return RestClient(rest_target, **wire_format, **kwargs)
    return GrpcClient(grpc_target, **kwargs)


class CountingProxy:
    """A TCP proxy to ``port`` on localhost that counts the connections it accepts: how many
    connections a client opened, whatever its protocol."""

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self.accepted += 1
                self._sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            for s in self._sockets:
                s.close()
