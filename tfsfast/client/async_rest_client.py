"""``AsyncRestClient``: ``RestClient`` for asyncio, over kept-alive asyncio streams.

The same calls, arguments, results and errors as ``RestClient`` (``rest_client`` describes
the connection pool, the one repeat of a call whose kept connection the server had closed, and
deadlines), as coroutines. Connections belong to the event loop that opened them: use a client
from one loop. At most ``max_connections`` calls are in flight at once (the others wait their
turn, within their deadline), each on its own connection; up to ``max_idle_connections`` are
kept between calls.

A deadline bounds the call, waiting for a connection included; the call then raises
``RequestError(DEADLINE_EXCEEDED)`` and its connection is closed. A cancelled call closes its
connection too (its answer may still be on the way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from tfsfast.client._examples import Example
from tfsfast.client._http11 import (
    HEAD_END,
    ProtocolError,
    ResponseHead,
    chunk_size,
    parse_response_head,
    raise_exchange_error,
    request_head,
)
from tfsfast.client._rest_messages import MSGPACK, Body, RestCall, RestMessages, answer
from tfsfast.client.rest_client import split_target
from tfsfast.client.results import ModelMetadata, ModelVersionStatus

__all__ = ["AsyncRestClient"]

T = TypeVar("T")

_GATHER_BYTES = 64 * 1024
# The streams' buffer limit: the longest head or chunk-size line, and how much the stream reads
# ahead before pausing the socket (twice this).
_STREAM_LIMIT = 1 << 20


class _Stale(Exception):
    """A kept connection the server closed before answering anything."""


class _Connection:
    __slots__ = ("reader", "received", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = False  # a byte of the current answer arrived

    def is_idle_and_open(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


async def _read_answer(conn: _Connection) -> tuple[ResponseHead, Body]:
    reader = conn.reader
    while True:
        try:
            data = await reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as e:
            conn.received = conn.received or bool(e.partial)
            raise EOFError from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"an answer head over {_STREAM_LIMIT} bytes") from None
        conn.received = True
        head = parse_response_head(data)
        if not 100 <= head.status < 200:
            break  # an interim answer (100 Continue) is followed by the real one
    try:
        if head.content_length is not None:
            return head, await reader.readexactly(head.content_length)
        if not head.chunked:
            return head, await reader.read()
        parts: list[bytes] = []
        while True:
            size = chunk_size(await reader.readuntil(b"\r\n"))
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return head, b"".join(parts)
            parts.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise ProtocolError("a chunk not followed by CRLF")
    except asyncio.IncompleteReadError:
        raise EOFError from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("a chunk-size line too long") from None


class AsyncRestClient:
    """``RestClient`` for asyncio (see its docstring for the arguments and results)."""

    def __init__(self, target: str = "localhost:8501", *, wire_format: str = MSGPACK,
                 timeout: float | None = 30.0, max_connections: int = 100,
                 max_idle_connections: int = 8) -> None:
        self._host, self._port = split_target(target)
        self._host_header = (f"[{self._host}]:{self._port}" if ":" in self._host
                             else f"{self._host}:{self._port}").encode("idna")
        self._target = target
        self._messages = RestMessages(wire_format)
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle_connections
        self._idle: list[_Connection] = []
        self._closed = False

    @property
    def wire_format(self) -> str:
        return self._messages.wire_format

    # --- the API ------------------------------------------------------------------------

    async def predict(self, model: str, inputs: Mapping[str, Any], *,
                      version: int | None = None, version_label: str | None = None,
                      signature_name: str | None = None,
                      timeout: float | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """``RestClient.predict``."""
        return await self._call(self._messages.predict(model, inputs, version, version_label,
                                                       signature_name), timeout)

    async def classify(self, model: str, examples: Sequence[Example], *,
                       context: Example | None = None, version: int | None = None,
                       version_label: str | None = None, signature_name: str | None = None,
                       timeout: float | None = None) -> list[list[tuple[str, float]]]:
        """``RestClient.classify``."""
        return await self._call(self._messages.classify(model, examples, context, version,
                                                        version_label, signature_name),
                                timeout)

    async def regress(self, model: str, examples: Sequence[Example], *,
                      context: Example | None = None, version: int | None = None,
                      version_label: str | None = None, signature_name: str | None = None,
                      timeout: float | None = None) -> list[float]:
        """``RestClient.regress``."""
        return await self._call(self._messages.regress(model, examples, context, version,
                                                       version_label, signature_name), timeout)

    async def model_status(self, model: str, *, version: int | None = None,
                           timeout: float | None = None) -> list[ModelVersionStatus]:
        """``RestClient.model_status``."""
        return await self._call(self._messages.model_status(model, version), timeout)

    async def model_metadata(self, model: str, *, version: int | None = None,
                             version_label: str | None = None,
                             timeout: float | None = None) -> ModelMetadata:
        """``RestClient.model_metadata``."""
        return await self._call(self._messages.model_metadata(model, version, version_label),
                                timeout)

    # --- connections ----------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> AsyncRestClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _kept(self) -> _Connection | None:
        if self._closed:
            raise RuntimeError("the client is closed")
        while self._idle:
            conn = self._idle.pop()
            if conn.is_idle_and_open():
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port,
                                                       limit=_STREAM_LIMIT)
        return _Connection(reader, writer)

    def _release(self, conn: _Connection) -> None:
        if not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Connection, reused: bool, head: bytes,
                        body: bytes | None) -> tuple[ResponseHead, Body]:
        conn.received = False
        try:
            if body is None:
                conn.writer.write(head)
            elif len(body) < _GATHER_BYTES:
                conn.writer.write(head + body)
            else:
                conn.writer.writelines((head, body))
            await conn.writer.drain()
            return await _read_answer(conn)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            if reused and not conn.received:
                raise _Stale from None
            raise

    async def _exchange_on_a_connection(self, head: bytes, body: bytes | None
                                        ) -> tuple[ResponseHead, Body]:
        async with self._slots:
            conn = self._kept()
            try:
                if conn is None:
                    conn = await self._connect()
                    result = await self._exchange(conn, False, head, body)
                else:
                    try:
                        result = await self._exchange(conn, True, head, body)
                    except _Stale:
                        conn.close()
                        conn = await self._connect()
                        result = await self._exchange(conn, False, head, body)
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            if result[0].keep_alive:
                self._release(conn)
            else:
                conn.close()
            return result

    async def _call(self, call: RestCall[T], timeout: float | None) -> T:
        timeout = self._timeout if timeout is None else timeout
        head = request_head(call.method, call.path, self._host_header, call.content_type,
                            call.accept, None if call.body is None else len(call.body))
        try:
            async with asyncio.timeout(timeout):
                answer_head, body = await self._exchange_on_a_connection(head, call.body)
        except (EOFError, OSError, ProtocolError) as e:
            raise_exchange_error(e, self._target)
        return answer(call, answer_head.status, answer_head.reason,
                      answer_head.content_type, body)
