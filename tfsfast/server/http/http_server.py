"""``HttpServer``: the REST listener on the event loop (uvloop when installed).

Connections are served by the compiled ``_http_protocol.HttpProtocol``, or by its Python twin
``_http_protocol_py.HttpProtocol`` under ``TFSFAST_NO_EXTENSIONS=1`` (or when the compiled module
is missing, with a RuntimeWarning); ``IMPLEMENTATION`` says which (``"compiled"`` or
``"python"``).

The drain, in the order SIGTERM drives it (``server.Server``): ``drain`` closes the listener
without resetting a connection the kernel has already accepted, then every connection answers
what it has received and closes (``HttpProtocol.drain``); ``requests_in_progress`` says when
that is done; at the deadline ``answer_in_progress`` answers the rest 503; ``close`` ends every
connection.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from tfsfast import _extensions
from tfsfast.server.access_log import AccessLog
from tfsfast.server.http._http_protocol_py import ErrorResponse, FastPath, Handler, HttpServerLimits

_impl = _extensions.load("tfsfast.server.http._http_protocol",
                         "tfsfast.server.http._http_protocol_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.server.http._http_protocol_py import HttpProtocol
else:
    HttpProtocol = _impl.HttpProtocol

_log = logging.getLogger(__name__)


def bind_socket(port: int, host: str | None = None, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host`` or, by default, ``::`` (IPv4 too), else ``0.0.0.0``.

    TF Serving binds the REST port the same way; asyncio's own binding would make ``::``
    IPv6-only, and then ``curl localhost`` over IPv4 could not connect. ``reuse_port`` lets
    several worker processes listen on one port (the kernel spreads connections over them).
    """
    candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")] if host is None else [
        (socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    last_error: OSError | None = None
    for family, address in candidates:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            last_error = e
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((address, port))
            sock.listen(1024)
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            last_error = e
    assert last_error is not None
    raise last_error


# A classic BPF socket filter that drops TCP segments with SYN set and passes the rest (a
# listener's filter sees the TCP header at offset 0): on a listener, no new handshake starts.
_SO_ATTACH_FILTER = 26
_DROP_SYN = ((0x30, 0, 0, 13),           # ldb [13]: the TCP flags
             (0x45, 1, 0, 0x02),         # jset #SYN: to the drop
             (0x06, 0, 0, 0xFFFFFFFF),   # ret: the whole segment
             (0x06, 0, 0, 0))            # ret 0: dropped
# How long ``drain`` waits for the connections already in the accept queue to be accepted.
ACCEPT_QUEUE_TIMEOUT_SECONDS = 0.5


def refuse_new_handshakes(sock: socket.socket) -> bool:
    """Makes the listening ``sock`` drop SYNs (Linux; False where that is not possible).

    A client whose SYN is dropped retries it after a second or so, and by then finds the port
    closed (connection refused); a connection that completed its handshake instead would wait
    in the accept queue and be reset when the listener closes.
    """
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_SYN)
    buffer = ctypes.create_string_buffer(program)  # the kernel copies it during the call
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def accept_queue_length(sock: socket.socket) -> int:
    """Connections the kernel has accepted on the listening ``sock`` and the server has not
    (Linux's ``tcp_info.tcpi_unacked`` of a listener); 0 where unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except (OSError, AttributeError):
        return 0
    return struct.unpack_from("I", info, 24)[0] if len(info) >= 28 else 0


class HttpServer:
    """Serves ``handler`` on a port; ``drain`` stops accepting and lets the connections finish
    (see the module docstring).

    ``error_response`` answers what the connections refuse themselves (see ``HttpProtocol``);
    ``fast_path`` (optional) answers the requests it can before ``handler`` sees them (see
    ``rest_fast_path``); ``protocol`` overrides the protocol class (tests); ``access_log``
    (optional) gets a line per answer (``tfsfast.server.access_log``).
    """

    def __init__(self, handler: Handler, limits: HttpServerLimits,
                 error_response: ErrorResponse, fast_path: FastPath | None = None,
                 protocol: Any = None, access_log: AccessLog | None = None) -> None:
        self._handler = handler
        self._fast_path = fast_path
        self._access_log = access_log
        self._protocol = protocol or HttpProtocol
        self._limits = limits
        self._error_response = error_response
        self._server: asyncio.base_events.Server | None = None
        self._sock: socket.socket | None = None
        self.connections: set[Any] = set()
        self.port = 0
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, port: int, host: str | None = None, reuse_port: bool = False) -> None:
        sock = bind_socket(port, host, reuse_port)
        self._sock = sock
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._protocol(self._handler, self._limits, self._error_response,
                                   self.connections, self._fast_path, self._access_log),
            sock=sock)
        self._sweeper = loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        """Once a second: close connections that stalled (one timer for all of them, rather
        than a timer per request on the hot path)."""
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_idle(now)
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    async def drain(self) -> None:
        """Stops accepting connections; every connection answers what it has received, then
        closes (``HttpProtocol.drain``). The sweep goes on: a request that stalls half-way
        still gets its 408."""
        if self._server is not None:
            if self._sock is not None and refuse_new_handshakes(self._sock):
                until = time.monotonic() + ACCEPT_QUEUE_TIMEOUT_SECONDS
                while accept_queue_length(self._sock) and time.monotonic() < until:
                    await asyncio.sleep(0.001)
            self._server.close()
            # The last connections accepted meet their protocol a loop iteration later.
            for _ in range(2):
                await asyncio.sleep(0)
        for connection in list(self.connections):
            connection.drain()

    @property
    def requests_in_progress(self) -> int:
        """Connections with a request received and not answered yet."""
        return sum(1 for connection in list(self.connections) if connection.in_progress)

    def answer_in_progress(self, message: str) -> None:
        """The drain's deadline: every request received and not answered gets a 503
        ``message`` (``HttpProtocol.answer_in_progress``)."""
        for connection in list(self.connections):
            connection.answer_in_progress(message)

    async def close(self, linger: float = 0.5) -> None:
        """Closes every connection after what it has written. For up to ``linger`` seconds a
        connection whose client is still sending is left to read (and discard) it first:
        closing with unread bytes resets the connection, which can destroy the answer the
        client has not read yet."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        until = time.monotonic() + linger
        while True:
            force = time.monotonic() >= until
            open_connections = [c for c in list(self.connections) if not c.close(force)]
            if not open_connections:
                break
            await asyncio.sleep(0.005)
        # Their transports close on the next iterations (connection_lost).
        until = time.monotonic() + 1.0
        while self.connections and time.monotonic() < until:
            await asyncio.sleep(0.005)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
