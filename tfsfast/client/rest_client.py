"""``RestClient``: TF Serving's REST API over kept-alive sockets, from any number of threads.

Each call takes an idle connection from the client's pool (or opens one), writes the request in
one send, reads the whole answer and puts the connection back when the server keeps it open.
HTTP/1.1 is written and read here directly (``_http11``): ``http.client`` parses every answer's
headers with the ``email`` package, which costs more CPU than the rest of a small predict call.

Connections: at most ``max_idle_connections`` are kept between calls; a call that finds none
idle opens another, so concurrent threads never wait for each other. A kept connection the
server has closed meanwhile (tfsfast closes one idle for 5 s, TF Serving's libevent server after
its own timeout) is noticed before it is used, when it has been idle for a second or more; and if
the server closes it just as the request goes out, before answering anything, the call is sent
once more on a new connection. That repeat is safe: every call of this API only reads (TF
Serving's predict, classify and regress have no side effects).

Deadlines: ``timeout`` seconds (the client's, or the call's) bound the whole call, connecting
included; past it the call raises ``RequestError(DEADLINE_EXCEEDED)`` and its connection is
closed (the answer may still arrive on it). The server is not told: its own run timeout
(``--rest_api_timeout_in_ms``) ends the run.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from tfsfast.client._examples import Example
from tfsfast.client._http11 import (
    HEAD_END,
    MAX_HEAD_BYTES,
    ProtocolError,
    ResponseHead,
    chunk_size,
    parse_response_head,
    raise_exchange_error,
    request_head,
)
from tfsfast.client._rest_messages import MSGPACK, Body, RestCall, RestMessages, answer
from tfsfast.client.results import ModelMetadata, ModelVersionStatus

__all__ = ["RestClient", "split_target"]

T = TypeVar("T")

_RECV_BYTES = 256 * 1024
# A kept connection idle for less than this is used without first asking the kernel whether
# the server closed it (a system call per request otherwise).
_TRUSTED_IDLE_SECONDS = 1.0
# A body above this is sent beside its head (sendmsg) rather than copied after it.
_GATHER_BYTES = 64 * 1024


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of ``"host:port"`` (``"http://host:port"`` and ``"[::1]:port"`` too)."""
    address = target.removeprefix("http://").rstrip("/")
    if "://" in address or "/" in address:
        raise ValueError(f"the REST target is host:port (plain HTTP, as TF Serving's REST API "
                         f"is served), got {target!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"the REST target must be host:port, got {target!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class _Stale(Exception):
    """A kept connection the server closed before answering anything."""


class _Connection:
    """A socket, the bytes read from it beyond the last answer, and how many bytes of the
    current answer arrived (none: the server may have closed the connection unanswered).

    The socket is blocking and waits in the kernel, bounded by the call's deadline through the
    socket's own send and receive timeouts (``SO_SNDTIMEO``, ``SO_RCVTIMEO``): a small call is
    then one send and one receive. Python's socket timeouts would ``poll`` before each of them
    (as a non-blocking socket needs to), which costs a system call and its Python wrapping on
    every call. The kernel timeouts are changed only when the time left is shorter than the
    one set, or once a wait has ended on it; so a wait never outlasts the deadline.
    """

    __slots__ = ("buffer", "idle_since", "last_head", "last_head_bytes", "readable", "received",
                 "sock", "wait_limit")

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        self.sock = sock
        self.buffer = bytearray()
        self.received = 0
        self.idle_since = 0.0  # when the last answer was read
        self.readable = select.poll()  # (for is_idle_and_open only)
        self.readable.register(sock, select.POLLIN)
        self.wait_limit: float | None = None  # the kernel timeouts, None: none
        # The last answer's head, and what it said (answers to repeated calls repeat it).
        self.last_head_bytes = b""
        self.last_head: ResponseHead | None = None

    def is_idle_and_open(self) -> bool:
        """True while the server has neither closed the connection nor sent anything on it
        (either makes an idle socket readable). A connection idle for less than
        ``_TRUSTED_IDLE_SECONDS`` is not asked: servers close idle connections after seconds,
        and one closed just as a request goes out is sent again (``_Stale``)."""
        if self.buffer:
            return False
        if time.monotonic() - self.idle_since < _TRUSTED_IDLE_SECONDS:
            return True
        try:
            return not self.readable.poll(0)
        except OSError:
            return False

    def _limit(self, deadline: float | None, expired: bool = False) -> None:
        """Bounds the next send or receive by ``deadline``; TimeoutError once it has passed.
        ``expired``: the last wait ended on the kernel timeout (set again, exactly)."""
        if deadline is None:
            if self.wait_limit is not None:
                self._set_wait_limit(0.0)
                self.wait_limit = None
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if expired or self.wait_limit is None or remaining < self.wait_limit:
            self._set_wait_limit(remaining)
            self.wait_limit = remaining

    def _set_wait_limit(self, seconds: float) -> None:
        """Both kernel timeouts, in whole microseconds rounded up (0: wait without a limit)."""
        micros = math.ceil(seconds * 1e6)
        value = struct.pack("ll", micros // 1_000_000, micros % 1_000_000)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    def _send(self, data: bytes | memoryview, deadline: float | None) -> None:
        expired = False
        while data:
            self._limit(deadline, expired)
            try:
                sent = self.sock.send(data)
            except BlockingIOError:  # the kernel timeout
                expired = True
                continue
            expired = False
            if sent == len(data):
                return  # a small request: all of it, at once
            data = memoryview(data)[sent:]

    def send(self, head: bytes, body: bytes | None, deadline: float | None) -> None:
        self.received = 0
        if body is None:
            self._send(head, deadline)
        elif len(body) < _GATHER_BYTES:
            self._send(head + body, deadline)
        else:
            self._limit(deadline)
            try:
                sent = self.sock.sendmsg([head, body])
            except BlockingIOError:
                sent = 0
            if sent < len(head):
                self._send(memoryview(head)[sent:], deadline)
                sent = len(head)
            self._send(memoryview(body)[sent - len(head):], deadline)

    def receive(self, deadline: float | None) -> bytes:
        """What the socket has (waiting for something); EOFError when the server closed it."""
        expired = False
        while True:
            self._limit(deadline, expired)
            try:
                data = self.sock.recv(_RECV_BYTES)
            except BlockingIOError:  # the kernel timeout
                expired = True
                continue
            if not data:
                raise EOFError
            self.received += len(data)
            return data

    def _fill(self, deadline: float | None) -> None:
        """Reads what the socket has into the buffer; EOFError when the server closed it."""
        self.buffer += self.receive(deadline)

    def read_until(self, separator: bytes, limit: int, deadline: float | None) -> bytes:
        start = 0
        while True:
            i = self.buffer.find(separator, start)
            if i >= 0:
                end = i + len(separator)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            if len(self.buffer) > limit:
                raise ProtocolError(f"no {separator!r} within {limit} bytes")
            start = max(0, len(self.buffer) - len(separator) + 1)
            self._fill(deadline)

    def read_exactly(self, n: int, deadline: float | None) -> Body:
        if len(self.buffer) >= n:
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
            return data
        # The rest goes straight into the result: a large answer is copied once.
        out = bytearray(n)
        have = len(self.buffer)
        out[:have] = self.buffer
        self.buffer.clear()
        view = memoryview(out)
        expired = False
        while have < n:
            self._limit(deadline, expired)
            try:
                got = self.sock.recv_into(view[have:])
            except BlockingIOError:  # the kernel timeout
                expired = True
                continue
            expired = False
            if not got:
                raise EOFError
            self.received += got
            have += got
        return out

    def read_to_eof(self, deadline: float | None) -> bytes:
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                data = bytes(self.buffer)
                self.buffer.clear()
                return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _read_answer(conn: _Connection, deadline: float | None
                 ) -> tuple[ResponseHead, Body]:
    if not conn.buffer:
        # Most answers arrive whole in the first read: taken from it, without the buffer.
        data = conn.receive(deadline)
        end = data.find(HEAD_END) + len(HEAD_END)
        if end >= len(HEAD_END):
            head_bytes = data[:end]
            if head_bytes == conn.last_head_bytes and conn.last_head is not None:
                head = conn.last_head
            else:
                head = conn.last_head = parse_response_head(head_bytes)
                conn.last_head_bytes = head_bytes
            length = head.content_length
            if (length is not None and len(data) - end >= length
                    and not 100 <= head.status < 200):
                if len(data) > end + length:
                    conn.buffer += data[end + length:]
                return head, data[end:end + length]
        conn.buffer += data
    while True:
        head = parse_response_head(conn.read_until(HEAD_END, MAX_HEAD_BYTES, deadline))
        if not 100 <= head.status < 200:
            break  # an interim answer (100 Continue) is followed by the real one
    if head.content_length is not None:
        return head, conn.read_exactly(head.content_length, deadline)
    if not head.chunked:
        return head, conn.read_to_eof(deadline)
    parts: list[Body] = []
    while True:
        size = chunk_size(conn.read_until(b"\r\n", MAX_HEAD_BYTES, deadline))
        if size == 0:
            while conn.read_until(b"\r\n", MAX_HEAD_BYTES, deadline) != b"\r\n":
                pass  # trailer fields
            return head, b"".join(parts)
        parts.append(conn.read_exactly(size, deadline))
        if conn.read_exactly(2, deadline) != b"\r\n":
            raise ProtocolError("a chunk not followed by CRLF")


class RestClient:
    """TF Serving's REST API (``/v1/models/...``) at ``target`` (``"host:port"``).

    ``wire_format``: ``"msgpack"`` (default; tfsfast's tensor maps, README "msgpack") or
    ``"json"`` (TF Serving's JSON, which TF Serving itself serves). ``timeout``: seconds each
    call may take unless the call gives its own; None for no deadline. Thread-safe; ``close()``
    (or ``with``) closes the kept connections.

    Calls raise ``RequestError`` with the server's status and message, ``ValueError`` for
    arguments the API cannot carry. Inputs are numpy arrays (or values ``np.asarray`` takes) of
    the signature's dtypes; results' numeric arrays may be read-only views of the answer (copy
    one before writing to it).
    """

    def __init__(self, target: str = "localhost:8501", *, wire_format: str = MSGPACK,
                 timeout: float | None = 30.0, max_idle_connections: int = 8) -> None:
        self._address = split_target(target)
        host, port = self._address
        self._host = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("idna")
        self._target = target
        self._messages = RestMessages(wire_format)
        self._timeout = timeout
        self._max_idle = max_idle_connections
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def wire_format(self) -> str:
        return self._messages.wire_format

    # --- the API ------------------------------------------------------------------------

    def predict(self, model: str, inputs: Mapping[str, Any], *, version: int | None = None,
                version_label: str | None = None, signature_name: str | None = None,
                timeout: float | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Runs the signature (``serving_default`` unless named) on ``inputs`` (alias ->
        array). Returns the output array when the signature has one output, else a dict
        alias -> array (TF Serving's REST answer)."""
        return self._call(self._messages.predict(model, inputs, version, version_label,
                                                 signature_name), timeout)

    def classify(self, model: str, examples: Sequence[Example], *,
                 context: Example | None = None, version: int | None = None,
                 version_label: str | None = None, signature_name: str | None = None,
                 timeout: float | None = None) -> list[list[tuple[str, float]]]:
        """Classifies tf.Examples given as feature name -> value mappings (``_examples``
        says which values); ``context`` holds features common to all. Returns, per example,
        its (label, score) classes."""
        return self._call(self._messages.classify(model, examples, context, version,
                                                  version_label, signature_name), timeout)

    def regress(self, model: str, examples: Sequence[Example], *,
                context: Example | None = None, version: int | None = None,
                version_label: str | None = None, signature_name: str | None = None,
                timeout: float | None = None) -> list[float]:
        """Regresses tf.Examples (as ``classify`` takes them); one value per example."""
        return self._call(self._messages.regress(model, examples, context, version,
                                                 version_label, signature_name), timeout)

    def model_status(self, model: str, *, version: int | None = None,
                     timeout: float | None = None) -> list[ModelVersionStatus]:
        """The state of every version of ``model`` the server knows (or of ``version``)."""
        return self._call(self._messages.model_status(model, version), timeout)

    def model_metadata(self, model: str, *, version: int | None = None,
                       version_label: str | None = None,
                       timeout: float | None = None) -> ModelMetadata:
        """The signatures of the version that would serve the call (the latest by
        default)."""
        return self._call(self._messages.model_metadata(model, version, version_label),
                          timeout)

    # --- connections ----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _kept(self) -> _Connection | None:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the client is closed")
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if conn.is_idle_and_open():
                return conn
            conn.close()

    def _connect(self, deadline: float | None) -> _Connection:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError
        sock = socket.create_connection(self._address, timeout=remaining)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock)

    def _release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _exchange(self, conn: _Connection, reused: bool, head: bytes, body: bytes | None,
                  deadline: float | None) -> tuple[ResponseHead, Body]:
        try:
            conn.send(head, body, deadline)
            return _read_answer(conn, deadline)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            if reused and not conn.received:
                raise _Stale from None
            raise

    def _call(self, call: RestCall[T], timeout: float | None) -> T:
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        head = request_head(call.method, call.path, self._host, call.content_type, call.accept,
                            None if call.body is None else len(call.body))
        conn = self._kept()
        try:
            try:
                if conn is None:
                    conn = self._connect(deadline)
                    answer_head, body = self._exchange(conn, False, head, call.body, deadline)
                else:
                    try:
                        answer_head, body = self._exchange(conn, True, head, call.body, deadline)
                    except _Stale:
                        conn.close()
                        conn = self._connect(deadline)
                        answer_head, body = self._exchange(conn, False, head, call.body,
                                                           deadline)
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
        except (EOFError, OSError, ProtocolError) as e:
            raise_exchange_error(e, self._target)
        if answer_head.keep_alive:
            self._release(conn)
        else:
            conn.close()
        return answer(call, answer_head.status, answer_head.reason,
                      answer_head.content_type, body)
