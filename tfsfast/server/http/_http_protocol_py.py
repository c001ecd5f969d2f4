"""``HttpProtocol``: HTTP/1.1 on one connection, parsed by httptools, answered in order.

The protocol object is the httptools callback object. Requests on a connection are handled one
at a time, in order (pipelined requests wait in a queue, and reading pauses when it grows), which
is what HTTP/1.1 requires of responses. Limits from ``HttpServerLimits`` are enforced while
parsing, before a body is buffered in full.

With an access log (``--access_log_file``), the protocol records a line for every answer it
writes, the fast path's, batched ones, the handler's and its own refusals alike, and a 499 for a
request in progress when its connection closes (``tfsfast.server.access_log``). The request's
time is ``_last_activity`` when its message completed (the packet that completed it had just
arrived), kept in ``HttpRequest.received`` while it waits; the peer's address is read once per
connection. Without one, the cost is a test of ``_access_log`` where a request is answered.

The drain (SIGTERM, once the listener has closed): a connection answers every request it has
received, pipelined ones included, however far it has read them, and the last answer says
``Connection: close``; a connection that has received nothing ends at once. Either way it then
half-closes (FIN) and reads on, discarding, until the client closes: closing a socket that holds
unread bytes resets the connection, and a reset can destroy an answer the client has not read
yet. At the drain's deadline what is left unanswered gets a 503 naming the drain.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httptools

if TYPE_CHECKING:
    from tfsfast.server.access_log import AccessLog

_log = logging.getLogger(__name__)

_REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    411: "Length Required", 413: "Payload Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 499: "Client Closed Request",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class HttpServerLimits:
    """Per-request bounds (hardening defaults; each is a server flag)."""

    max_body_bytes: int = 64 << 20
    max_url_bytes: int = 8 << 10
    max_header_bytes: int = 16 << 10
    max_header_count: int = 100
    max_pipelined_requests: int = 16
    # Slow-client defences: a request head must arrive within header_timeout of its first byte,
    # a body may not stall longer than body_idle_timeout, and an idle keep-alive connection is
    # closed after keep_alive_timeout.
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 10_000


@dataclass
class HttpRequest:
    method: str
    path: bytes  # the raw request target, query included
    headers: dict[bytes, bytes]  # lower-cased names; repeated headers joined by ", "
    body: bytes
    keep_alive: bool
    # time.monotonic() when the request was complete (its line in the access log starts there).
    received: float = 0.0


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] | None = None
    content_type: bytes | None = b"application/json"
    close: bool = False


Handler = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]
# The answer to a request the connection refuses or fails itself: (status, message, the
# request's headers as far as they were read, or None when unknown) -> the response, in the
# format those headers ask for (``HttpRestApiHandler.error_response``).
ErrorResponse = Callable[[int, str, "Mapping[bytes, bytes] | None"], HttpResponse]


def unread_bytes(transport: asyncio.BaseTransport | None) -> int:
    """Bytes the client sent that are still in the kernel, not yet read (0 when unknown)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    try:
        count = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):  # closed meanwhile
        return 0
    return int.from_bytes(count, sys.byteorder)


def stalled(limits: HttpServerLimits, in_head: bool, in_body: bool,
            idle: float) -> tuple[int, str] | None:
    """The 408 (status, message) for a connection ``idle`` seconds into a request's head or body
    past its timeout, else None (both protocols' idle sweep)."""
    if in_head and idle > limits.header_timeout:
        return 408, f"Request headers not received within {limits.header_timeout:g} s"
    if in_body and idle > limits.body_idle_timeout:
        return 408, f"Request body stalled for more than {limits.body_idle_timeout:g} s"
    return None


def too_many_connections(limits: HttpServerLimits) -> str:
    """The 503's message for a connection over ``max_connections``."""
    return f"Too many connections (more than {limits.max_connections}); try again later"


def end_answers(transport: asyncio.Transport | None, reading_paused: bool) -> None:
    """The transport's part of a half-close: reading resumed if it was paused (the client's
    bytes are read and discarded until it closes), then FIN after what is written (a close
    where the transport cannot half-close); nothing for a transport gone or closing."""
    if transport is None or transport.is_closing():
        return
    if reading_paused:
        transport.resume_reading()
    if transport.can_write_eof():
        transport.write_eof()
    else:
        transport.close()


def encode_response(response: HttpResponse, keep_alive: bool) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    parts = [f"HTTP/1.1 {response.status} {reason}\r\n".encode("latin-1")]
    if response.content_type is not None:
        parts.append(b"Content-Type: " + response.content_type + b"\r\n")
    for name, value in response.headers or ():
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"Content-Length: %d\r\n" % len(response.body))
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(response.body)
    return b"".join(parts)


def encoded_status(data: bytes) -> tuple[int, int]:
    """(status, body bytes) of an encoded response (``HTTP/1.1 200 OK`` ...); the status is
    0 when the status line does not hold one."""
    status = data[9:12]
    head_end = data.find(b"\r\n\r\n")
    return (int(status) if status.isdigit() else 0,
            len(data) - head_end - 4 if head_end >= 0 else 0)


# What _answer_fast did with a request.
_NOT_TAKEN = "not taken"  # the handler answers it
_ANSWERED = "answered"    # written
_DEFERRED = "deferred"    # the connection is busy until deferred_done


class _RequestTooLarge(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DeferredAnswer(Protocol):
    """A fast path's answer still to come (``RestFastPath``'s ``BatchedReply``).

    It calls ``connection.deferred_done(self)`` once, on the connection's event loop, when the
    answer is ready; the connection then writes ``encode(keep_alive)``. ``cancel`` is for a
    connection that went away first.
    """

    keep_alive: bool

    def encode(self, keep_alive: bool) -> bytes:
        """The complete response; may raise (the connection answers 500)."""

    def cancel(self) -> None:
        """Drops the request if it has not run, and the answer."""


class FastPath(Protocol):
    """What a protocol offers each request before its handler (``RestFastPath``)."""

    def answer(self, method: str, path: bytes, headers: dict[bytes, bytes], body: bytes,
               keep_alive: bool, connection: object = None) -> bytes | DeferredAnswer | None:
        """The complete response (``Connection: close`` unless ``keep_alive``); a
        ``DeferredAnswer`` for ``connection`` to wait for; or None: the handler answers. Must
        answer exactly as the handler would."""


def _described(request: HttpRequest | None) -> tuple[str, bytes, int, float]:
    """(method, target, bytes in, received) of a request for the access log."""
    if request is None:
        return "", b"", 0, 0.0
    return request.method, request.path, len(request.body), request.received


class HttpProtocol(asyncio.Protocol):
    """One connection. ``handler`` turns an ``HttpRequest`` into an ``HttpResponse``.

    A handler may return the response or an awaitable of it; it must not raise (the REST handler
    turns every failure into an error response), but if it does, the client gets a 500 and the
    connection stays usable. ``fast_path`` (optional) is offered every POST first, in order; when
    it answers, the handler is not called. When it answers later (a ``DeferredAnswer``), the
    connection is busy, as while a handler's awaitable runs, until ``deferred_done``.

    What the connection answers itself (a limit, a malformed or stalled request, that 500) comes
    from ``error_response``, given the request's headers as far as they were read, so that it is
    in the format the request asked for.

    ``access_log`` (optional) gets a line per answer (see the module docstring).

    This is the pure-Python twin of the compiled ``_http_protocol.HttpProtocol``;
    ``http_server.HttpServer`` picks one (``TFSFAST_NO_EXTENSIONS=1``: this one).
    """

    def __init__(self, handler: Handler, limits: HttpServerLimits,
                 error_response: ErrorResponse,
                 connections: set[HttpProtocol] | None = None,
                 fast_path: FastPath | None = None,
                 access_log: AccessLog | None = None) -> None:
        self._handler = handler
        self._access_log = access_log
        # The client's address, asyncio's peername (read when the connection is made, with a
        # log only).
        self._peer: object = None
        self._fast_path = fast_path
        self._limits = limits
        self._error_response = error_response
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        # The event loop the connection was made on (None outside one): the loop its batched
        # answers come back on, read by the fast path without asking asyncio per request.
        self.loop: asyncio.AbstractEventLoop | None = None
        # The request being parsed.
        self._url = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._header_name = b""
        self._body: list[bytes] = []
        self._body_size = 0
        # Requests parsed and waiting for their turn; the one being handled.
        self._queue: deque[HttpRequest] = deque()
        self._busy = False
        self._reading_paused = False
        self._closing = False
        # Set by ``drain``: the listener has closed (see the module docstring).
        self._draining = False
        # The fast path's answer still to come, while the connection is busy with it, and its
        # request.
        self._deferred: DeferredAnswer | None = None
        self._deferred_request: HttpRequest | None = None
        # The handler's answer still to come: its task, done callback and request.
        self._task: asyncio.Future | None = None
        self._task_done: Callable[[asyncio.Future], None] | None = None
        self._task_request: HttpRequest | None = None
        # For the idle sweep: when the connection last made progress, and what it waits for.
        self._last_activity = time.monotonic()
        self._in_head = False
        self._in_body = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.loop = asyncio._get_running_loop()
        if self._access_log is not None:
            self._peer = transport.get_extra_info("peername")
        if self._connections is not None:
            if len(self._connections) >= self._limits.max_connections:
                self._reject(503, too_many_connections(self._limits))
                return
            self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        if self._deferred is not None:
            self._deferred.cancel()  # its request is dropped if it has not run yet
            self._deferred = None
            if self._access_log is not None and self._deferred_request is not None:
                self._log_request(self._deferred_request, 499, 0)
            self._deferred_request = None
        if self._connections is not None:
            self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # all answered (a drain's half-close): what comes now is discarded
        self._last_activity = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            # httptools re-raises a callback's exception as its own error; find ours.
            cause = e.__context__ if isinstance(e.__context__, _RequestTooLarge) else None
            if cause is not None:
                self._reject(cause.status, cause.message)
            else:
                self._reject(400, f"Malformed HTTP request: {e}")
        if self._draining and not self._busy:
            # Every request of ``data`` is queued by now, so the answers know which is last.
            self._next()

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = bytearray()
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_url_bytes:
            raise _RequestTooLarge(414, f"Request URI longer than "
                                        f"{self._limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if (self._header_bytes > self._limits.max_header_bytes
                or len(self._headers) >= self._limits.max_header_count):
            raise _RequestTooLarge(
                431, f"Request headers exceed {self._limits.max_header_count} fields or "
                     f"{self._limits.max_header_bytes} bytes")
        name = name.lower()
        if name in self._headers:
            self._headers[name] += b", " + value
        else:
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        length = self._headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise _RequestTooLarge(400, "Invalid Content-Length header") from None
            if declared > self._limits.max_body_bytes:
                raise _RequestTooLarge(413, self._body_too_large())

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            raise _RequestTooLarge(413, self._body_too_large())
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        request = HttpRequest(
            method=self._parser.get_method().decode("latin-1"),
            path=bytes(self._url),
            headers=self._headers,
            body=b"".join(self._body) if len(self._body) != 1 else self._body[0],
            keep_alive=self._parser.should_keep_alive(),
            received=self._last_activity)
        self._body = []
        self._queue.append(request)
        if len(self._queue) > self._limits.max_pipelined_requests and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        if not self._busy and not self._draining:
            self._next()

    def _body_too_large(self) -> str:
        return (f"Request body exceeds the maximum of {self._limits.max_body_bytes} bytes "
                f"(flag --rest_api_max_body_bytes)")

    # --- handling ----------------------------------------------------------------------------

    def _next(self) -> None:
        while self._queue and not self._closing:
            request = self._queue.popleft()
            if self._reading_paused and len(self._queue) <= self._limits.max_pipelined_requests:
                self._reading_paused = False
                assert self._transport is not None
                self._transport.resume_reading()
            if self._fast_path is not None and request.method == "POST":
                fast = self._answer_fast(request)
                if fast is _DEFERRED:
                    return
                if fast is _ANSWERED:
                    continue
            try:
                result = self._handler(request)
            except Exception:
                result = self._internal_error(request.headers)
            if isinstance(result, HttpResponse):
                self._write(result, request.keep_alive)
                if self._access_log is not None:
                    self._log_request(request, result.status, len(result.body))
                continue
            self._busy = True
            task = asyncio.ensure_future(result)
            self._task, self._task_request = task, request
            self._task_done = lambda t, r=request: self._done(t, r)
            task.add_done_callback(self._task_done)
            return

    def _answer_fast(self, request: HttpRequest) -> str:
        """Offers ``request`` to the fast path: writes its answer (_ANSWERED), leaves the
        connection busy until ``deferred_done`` (_DEFERRED), or leaves the request to the handler
        (_NOT_TAKEN)."""
        assert self._fast_path is not None
        keep_alive = self._keep_alive(request.keep_alive)
        try:
            data = self._fast_path.answer(request.method, request.path, request.headers,
                                          request.body, keep_alive, self)
        except Exception:
            response = self._internal_error(request.headers)
            self._write(response, keep_alive)
            if self._access_log is not None:
                self._log_request(request, response.status, len(response.body))
            return _ANSWERED
        if data is None:
            return _NOT_TAKEN
        if isinstance(data, bytes):
            self._write_encoded(data, keep_alive)
            if self._access_log is not None:
                self._log_request(request, *encoded_status(data))
            return _ANSWERED
        self._busy = True
        self._deferred = data
        self._deferred_request = request
        return _DEFERRED

    def deferred_done(self, reply: DeferredAnswer) -> None:
        """The fast path's deferred answer is ready (called on this connection's loop)."""
        if reply is not self._deferred:
            return  # cancelled: the connection went away
        request = self._deferred_request
        self._deferred = self._deferred_request = None
        self._busy = False
        self._last_activity = time.monotonic()
        if self._closing:
            if self._access_log is not None and request is not None:
                self._log_request(request, 499, 0)
            return
        keep_alive = self._keep_alive(reply.keep_alive)
        try:
            data = reply.encode(keep_alive)
        except Exception:
            # The fast path answers plain JSON requests only.
            response = self._internal_error(None)
            self._write(response, keep_alive)
            status, size = response.status, len(response.body)
        else:
            self._write_encoded(data, keep_alive)
            status, size = encoded_status(data)
        if self._access_log is not None and request is not None:
            self._log_request(request, status, size)
        self._next()

    def _done(self, task: asyncio.Future, request: HttpRequest) -> None:
        self._busy = False
        self._task = self._task_done = self._task_request = None
        self._last_activity = time.monotonic()
        try:
            response = task.result()
        except Exception:
            response = self._internal_error(request.headers)
        if not self._closing:
            self._write(response, request.keep_alive)
            if self._access_log is not None:
                self._log_request(request, response.status, len(response.body))
            self._next()
        elif self._access_log is not None:
            self._log_request(request, 499, 0)

    def _internal_error(self, headers: Mapping[bytes, bytes] | None) -> HttpResponse:
        """Logs the exception being handled; returns the 500 the client gets for it (for a
        request with ``headers``)."""
        _log.exception("HTTP handler failed")
        return self._error_response(500, "Internal server error", headers)

    def _keep_alive(self, keep_alive: bool) -> bool:
        """Whether the answer now written keeps the connection open: as the request asked,
        unless the connection drains and has nothing more to answer."""
        return keep_alive and not (self._draining and not self._more_to_answer())

    def _more_to_answer(self) -> bool:
        """Requests received and not taken yet: queued, partly parsed, or still unread."""
        return (bool(self._queue) or self._in_head or self._in_body
                or unread_bytes(self._transport) > 0)

    def _write(self, response: HttpResponse, keep_alive: bool) -> None:
        keep_alive = (self._keep_alive(keep_alive) and not response.close
                      and not self._closing)
        self._write_encoded(encode_response(response, keep_alive), keep_alive)

    def _write_encoded(self, data: bytes, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._closing:
            return  # gone, or half-closed: nothing may be written after the FIN
        transport.write(data)
        if not keep_alive:
            if self._draining:
                self._half_close()
            else:
                self._closing = True
                transport.close()

    def _half_close(self) -> None:
        """Ends the answers: FIN after what is written, then reads on, discarding, until the
        client closes (or ``close``); see the module docstring."""
        self._closing = True
        end_answers(self._transport, self._reading_paused)
        self._reading_paused = False

    def _reject(self, status: int, message: str) -> None:
        """Answers a request that cannot be parsed or is over a limit, then closes; in the
        format of the headers read so far."""
        self._queue.clear()
        response = self._error_response(status, message, self._headers)
        response.close = True
        self._write(response, keep_alive=False)
        if self._access_log is not None:
            self._log(*self._request_so_far(), status, len(response.body))

    def check_idle(self, now: float) -> None:
        """Closes the connection if it stalled past a timeout (called by the server's sweep)."""
        if self._busy or self._queue or self._closing:
            return
        idle = now - self._last_activity
        if self._in_head or self._in_body:
            rejection = stalled(self._limits, self._in_head, self._in_body, idle)
            if rejection is not None:
                self._reject(*rejection)
        elif idle > self._limits.keep_alive_timeout and self._transport is not None:
            self._closing = True
            self._transport.close()

    # --- the drain ------------------------------------------------------------------------

    def drain(self) -> None:
        """The listener has closed: answer what was received, then close (module docstring)."""
        if self._closing or self._draining:
            return
        self._draining = True
        if not self._busy and not self._more_to_answer():
            self._half_close()

    @property
    def in_progress(self) -> bool:
        """Whether a request received is not answered yet (or is partly received)."""
        return not self._closing and (self._busy or self._more_to_answer())

    def answer_in_progress(self, message: str) -> None:
        """The drain's deadline: a 503 ``message`` for every request received and not answered
        yet, in order (the one in progress, those queued, one partly received or unread), the
        last saying ``Connection: close``; then the half-close. The answers still to come are
        dropped (their run too, if it has not started)."""
        if self._closing:
            return
        unanswered: list[Mapping[bytes, bytes] | None] = []
        # What the access log says of each: (method, target, bytes in, received).
        requests: list[tuple[str, bytes, int, float]] = []
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
            unanswered.append(None)  # the fast path takes plain JSON requests only
            requests.append(_described(self._deferred_request))
            self._deferred_request = None
        elif self._task is not None and self._task_done is not None:
            self._task.remove_done_callback(self._task_done)
            self._task.cancel()
            unanswered.append(self._task_request.headers if self._task_request else None)
            requests.append(_described(self._task_request))
            self._task = self._task_done = self._task_request = None
        unanswered.extend(request.headers for request in self._queue)
        requests.extend(_described(request) for request in self._queue)
        self._queue.clear()
        self._busy = False
        if self._in_head or self._in_body:
            unanswered.append(self._headers)
            requests.append(self._request_so_far())
        elif unread_bytes(self._transport) > 0:
            unanswered.append(None)
            requests.append(("", b"", 0, self._last_activity))
        transport = self._transport
        for i, headers in enumerate(unanswered):
            response = self._error_response(503, message, headers)
            if transport is not None and not transport.is_closing():
                transport.write(encode_response(response, i < len(unanswered) - 1))
            if self._access_log is not None:
                self._log(*requests[i], 503, len(response.body))
        self._draining = True
        self._half_close()

    # --- the access log (called with one only) ------------------------------------------------

    def _log(self, method: str, target: bytes, bytes_in: int, received: float, status: int,
             bytes_out: int) -> None:
        assert self._access_log is not None
        self._access_log.record_rest(received, self._peer, method, target, status, bytes_in,
                                     bytes_out)

    def _log_request(self, request: HttpRequest, status: int, bytes_out: int) -> None:
        self._log(request.method, request.path, len(request.body), request.received, status,
                  bytes_out)

    def _request_so_far(self) -> tuple[str, bytes, int, float]:
        """(method, target, bytes in, received) of the request being parsed, as far as it
        was: the method once the target has begun (the parser knows it by then)."""
        method = self._parser.get_method().decode("latin-1") if self._url else ""
        return method, bytes(self._url), self._body_size, self._last_activity

    def close(self, force: bool = True) -> bool:
        """Closes the connection after what it has written; unless ``force``, not while bytes
        the client sent are still to be read (closing would reset the connection). Returns
        whether it closed."""
        if not force and unread_bytes(self._transport) > 0:
            return False
        self._closing = True
        if self._transport is not None:
            self._transport.close()
        return True
