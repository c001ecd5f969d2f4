"""HTTP/1.1 for the REST clients, without I/O: the request head, and the response head read.

Both REST clients (sockets, asyncio streams) write a request as ``request_head(...) + body`` and
read the response as a head (up to the blank line, read by ``parse_response_head``) then a
body framed as the head says: ``Content-Length`` bytes, chunks (``Transfer-Encoding:
chunked``), or everything until the server closes. That is all TF Serving's REST server
(libevent) and tfsfast's send, and what a proxy in between may turn them into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from tfsfast.client.errors import Code, RequestError

__all__ = ["HEAD_END", "MAX_HEAD_BYTES", "ProtocolError", "ResponseHead", "chunk_size",
           "parse_response_head", "raise_exchange_error", "request_head"]

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(Exception):
    """A response that is not HTTP/1.x as RFC 9112 frames it."""


def raise_exchange_error(error: EOFError | OSError | ProtocolError, target: str) -> NoReturn:
    """Raises the ``RequestError`` a failed exchange with ``target`` is to its caller, as gRPC
    reports the same failures: the deadline passed (a ``TimeoutError``) is DEADLINE_EXCEEDED,
    a server that closed without answering or could not be reached UNAVAILABLE (the socket's
    error kept as the cause), an answer that is not HTTP INTERNAL."""
    if isinstance(error, TimeoutError):
        raise RequestError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
    if isinstance(error, EOFError):
        raise RequestError(Code.UNAVAILABLE, f"the server at {target} closed the connection "
                           "before answering") from None
    if isinstance(error, ProtocolError):
        raise RequestError(Code.INTERNAL, f"malformed HTTP answer from {target}: "
                           f"{error}") from None
    raise RequestError(Code.UNAVAILABLE, f"connection to {target} failed: {error}") from error


@dataclass(slots=True)
class ResponseHead:
    """A response's status line and what its headers say about the body."""

    status: int
    reason: str
    content_type: str  # lower-case; "" when absent
    content_length: int | None  # None: chunked, or until the connection closes
    chunked: bool
    keep_alive: bool  # the connection may carry another request after this response


def request_head(method: bytes, path: bytes, host: bytes, content_type: bytes | None,
                 accept: bytes, content_length: int | None) -> bytes:
    """The head of a request (``content_length`` None: no body)."""
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\n" % (method, path, host, accept)
    if content_type is not None:
        head += b"Content-Type: %s\r\n" % content_type
    if content_length is not None:
        head += b"Content-Length: %d\r\n" % content_length
    return head + b"\r\n"


# A header field as it follows the previous line in a lower-cased head (RFC 9112 allows no
# space between a field's name and its colon).
_CONTENT_TYPE = b"\r\ncontent-type:"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_CONNECTION = b"\r\nconnection:"


def _field(head: bytes, prefix: bytes) -> bytes | None:
    """The value of the first field ``prefix`` names in the lower-cased ``head``."""
    i = head.find(prefix)
    if i < 0:
        return None
    start = i + len(prefix)
    return head[start:head.find(b"\r\n", start)].strip()


def parse_response_head(data: bytes) -> ResponseHead:
    """The head in ``data`` (the bytes up to and including the blank line).

    Only the fields the client acts on are read, each with one search of the lower-cased
    head: this runs once per call, and splitting every field out cost more than the rest of
    reading a small answer.
    """
    line_end = data.find(b"\r\n")
    parts = data[:line_end].split(b" ", 2)
    # bytes.isdigit is ASCII digits only, as the grammar wants them.
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {data[:min(line_end, 100)]!r}")
    status = int(parts[1])
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    head = data.lower()
    content_type = _field(head, _CONTENT_TYPE)
    connection = (_field(head, _CONNECTION) or b"") if _CONNECTION in head else b""
    keep_alive = (b"close" not in connection if parts[0] != b"HTTP/1.0"
                  else b"keep-alive" in connection)
    chunked = _TRANSFER_ENCODING in head and b"chunked" in (
        _field(head, _TRANSFER_ENCODING) or b"")
    content_length = None
    if not chunked:
        length = _field(head, _CONTENT_LENGTH)
        if length is not None:
            if not length.isdigit():
                raise ProtocolError(f"malformed Content-Length: {length[:100]!r}")
            content_length = int(length)
        elif status in (204, 304) or 100 <= status < 200:
            content_length = 0
        else:
            keep_alive = False  # the body ends when the server closes
    return ResponseHead(status, reason,
                        "" if content_type is None else content_type.decode("latin-1"),
                        content_length, chunked, keep_alive)


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (``1a;ext=v\\r\\n``)."""
    size = line.split(b";", 1)[0].strip()
    if not size or size.strip(b"0123456789abcdefABCDEF"):
        raise ProtocolError(f"malformed chunk size: {line[:100]!r}")
    return int(size, 16)
