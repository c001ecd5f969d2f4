"""The access log (``--access_log_file``, a tfsfast flag; off by default): one line per request.

A line is logfmt, so that both a person and a log pipeline (Loki, Fluent Bit, Vector) read it::

    time=2026-12-07T00:57:12.123456Z peer=10.0.0.7:53412 protocol=REST method=POST
    route=/v1/models/m:predict model=m version=1 status=200 bytes_in=31 bytes_out=24
    latency_us=180

(on one line). Every line has every field, in this order:

``time``
    when the answer was handed to the transport (UTC, microseconds).
``peer``
    the client's address: ``host:port``, ``[v6 host]:port``, or ``unix:`` for a client of the
    gRPC UNIX socket (gRPC names the client's own path, which it most often has not).
``protocol``
    ``REST`` or ``GRPC``.
``method``
    the HTTP method, or the gRPC full method (``/tensorflow.serving.PredictionService/Predict``).
``route``
    the REST request's path, without its query (at most ``MAX_ROUTE_CHARS`` characters); empty
    for gRPC.
``model``, ``version``
    the model the request names and its version or label, as the request wrote them; empty
    when it names none or it could not be read that far. REST reads them from the path
    (``/v1/models/{m}[/versions/{v}|/labels/{l}]...``, ``/v2/models/{m}[/versions/{v}]/...``),
    gRPC from the request's ``model_spec`` (Predict, Classify, Regress, GetModelMetadata,
    MultiInference's first task, GetModelStatus) or, for the Open Inference Protocol's
    ModelInfer, ModelMetadata and ModelReady, its model name and version, in the first
    ``REQUEST_PREFIX_BYTES`` bytes of the message: a longer name is cut there.
``status``
    the HTTP status (REST) or the gRPC code's name (``OK``, ``NOT_FOUND``, ...). A REST request
    whose answer could not be sent, because its connection closed while it was handled (the
    client went away, most often), is ``499``, nginx's number for it.
``bytes_in``, ``bytes_out``
    the request's and the answer's body (REST; a gzip body as it came) or message (gRPC), in
    bytes; headers are not counted.
``latency_us``
    from the request's completion (REST: its last byte read; gRPC: its message received, or the
    call's arrival for a call refused before it) to its answer's hand-off, in microseconds.

Values that are empty or hold a space, a control character, a quote, a backslash or a ``=`` are
quoted, JSON-style.

What produces the lines: the HTTP protocol (``server/http/_http_protocol``) for every answer it
writes, the fast path's, batched ones and the handler's alike, and those it gives itself (400,
408, 413, 414, 431, the connection cap's 503, the drain's 503); the gRPC completion-queue loop
(``server/grpc/fast_unary``) for PredictionService; ``server/grpc/access_log_interceptor`` for
the services grpcio serves. A request that never started (pipelined behind one whose connection
closed) has no line.

Off the serving threads: they call ``record_rest`` or ``record_grpc`` with values they already
hold, which append one tuple to a deque (no lock, no formatting, no I/O); the model, the
version, the peer's text and the status's name are worked out later. A thread of its own formats
and writes what has gathered every ``FLUSH_SECONDS``, so a slow or full disk delays the log,
never a request. The backlog is bounded (``MAX_PENDING`` lines): beyond, lines are dropped and
counted (``/tfsfast/access_log/dropped``, on the Prometheus page as
``:tfsfast:access_log:dropped``), as are lines a failing write loses; an access log that can
exhaust memory or stop the server is worse than a gap in it. ``close`` writes what is pending
and stops the thread.

Several processes, one file: the REST workers of ``--rest_api_num_workers`` each write their
own lines to the same file. The file is opened with ``O_APPEND`` and every ``write`` carries
whole lines and at most ``PIPE_BUF`` bytes of them (a longer line, which only a route full of
characters written escaped makes, is written alone): ``O_APPEND`` puts each write at the end of the
file in one piece, and ``PIPE_BUF`` is what POSIX guarantees for a pipe, which standard output
often is in a container. So lines of different processes never mix within a line.

The path ``-`` is standard output (tfsfast's own log goes to standard error), for a container
whose runtime collects its output; it is never reopened. A file is reopened when it is moved or
removed (logrotate's ``create`` mode), checked at each flush; ``copytruncate`` works too,
as appended lines go to the end of the truncated file.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import select
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote

from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.metrics import Counter
from tfsfast.util import proto_wire
from tfsfast.util.status import Code, ServingError

__all__ = [
    "DROPPED",
    "FLUSH_SECONDS",
    "MAX_PENDING",
    "MAX_ROUTE_CHARS",
    "REQUEST_PREFIX_BYTES",
    "STDOUT",
    "AccessLog",
    "describe",
    "format_line",
    "grpc_model_spec",
    "peer_text",
    "rest_model_spec",
]

_log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
MAX_PENDING = 100_000
# What a gRPC request's line is read from: its model_spec comes first (field 1, and protobuf
# writes fields in number order), so a prefix holds it, and the serving thread copies no more.
REQUEST_PREFIX_BYTES = 256
# A route is cut to this many characters ("..." after them), so that a line stays short.
MAX_ROUTE_CHARS = 1024
STDOUT = "-"
_PIPE_BUF = select.PIPE_BUF

DROPPED = DEFAULT.register(Counter(
    "/tfsfast/access_log/dropped",
    "Access log lines dropped: the log fell behind, or a write to its file failed."))

# What a serving thread appends: (answered, received, peer, protocol, method, request, status,
# bytes in, bytes out). The two times are time.monotonic(); ``peer`` is asyncio's peername (REST)
# or gRPC core's peer (bytes); ``request`` is the request target (REST) or the first bytes of the
# request message (gRPC); ``status`` is the HTTP status or the gRPC code.
Entry = tuple[float, float, object, str, str, bytes, int, int, int]
# The values of a line, in the order of the module docstring: (unix time, peer, protocol, method,
# route, model, version, status, bytes in, bytes out, latency in µs).
Line = tuple[float, str, str, str, str, str, str, str, int, int, int]
# A value written as it is: not empty, no space, control character, quote, backslash or "=".
_PLAIN = re.compile(r'[^\x00-\x20"=\\\x7f]+')

_monotonic = time.monotonic


# --- a line ------------------------------------------------------------------------------------


def _value(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text) if text else '""'


# The writer formats lines by the thousand: what repeats from one line to the next is worked out
# once. Every cache is bounded; a race between two logs' writers can only compute an entry twice.
_CACHE_SIZE = 4096
# (the Unix second, its text up to the seconds) of the last line's time.
_last_second: tuple[int, str] = (-1, "")


def _stamp(unix_time: float) -> str:
    global _last_second
    second = int(unix_time)
    if second != _last_second[0]:
        _last_second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_last_second[1]}.{int((unix_time - second) * 1e6):06d}Z"


def format_line(line: Line) -> str:
    """The text of one line, newline included."""
    when, peer, protocol, method, route, model, version, status, bytes_in, bytes_out, us = line
    # The protocol and the status are tfsfast's own words or digits: never quoted.
    return (f"time={_stamp(when)} peer={_value(peer)} protocol={protocol} "
            f"method={_value(method)} route={_value(route)} model={_value(model)} "
            f"version={_value(version)} status={status} bytes_in={bytes_in} "
            f"bytes_out={bytes_out} latency_us={us}\n")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def peer_text(peer: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of asyncio's peername or gRPC core's peer
    (``ipv4:1.2.3.4:5``, ``ipv6:%5B::1%5D:5``); an IPv4 client of a dual-stack socket
    (``::ffff:1.2.3.4``) as IPv4; ``unix:<path>`` as it is; empty when unknown."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
    elif isinstance(peer, bytes | str):
        text = peer.decode("utf-8", "replace") if isinstance(peer, bytes) else peer
        scheme, _, address = text.partition(":")
        if scheme not in ("ipv4", "ipv6"):
            return text
        address = unquote(address)
        host, _, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
    else:
        return ""
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# TF Serving's REST routes name a model this way (the V2 protocol's too); what follows the name
# (a verb, /metadata, /ready, ...) does not matter here.
_REST_MODEL = re.compile(r"/v[12]/models/([^/:]+)(?:/versions/([^/:]+)|/labels/([^/:]+))?",
                         re.IGNORECASE)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def rest_model_spec(path: str) -> tuple[str, str]:
    """(model, version or label) a REST path names, percent-decoded; empty when it names
    none."""
    match = _REST_MODEL.match(path)
    if match is None:
        return "", ""
    name, version, label = match.groups()
    if version is not None:
        return unquote(name, errors="replace"), version
    return unquote(name, errors="replace"), unquote(label, errors="replace") if label else ""


# The field numbers that lead from a request message to its ModelSpec, by gRPC method.
_PREDICTION_SERVICE = "/tensorflow.serving.PredictionService/"
_MODEL_SPEC_FIELDS: dict[str, tuple[int, ...]] = {
    _PREDICTION_SERVICE + "Predict": (1,),
    _PREDICTION_SERVICE + "Classify": (1,),
    _PREDICTION_SERVICE + "Regress": (1,),
    _PREDICTION_SERVICE + "GetModelMetadata": (1,),
    _PREDICTION_SERVICE + "MultiInference": (1, 1),  # tasks[0].model_spec
    "/tensorflow.serving.ModelService/GetModelStatus": (1,),
}
# ModelSpec's fields.
_NAME, _VERSION, _LABEL = 1, 2, 4
# The Open Inference Protocol's requests name the model in fields of their own: the name 1, the
# version 2, both strings.
_V2_SERVICE = "/inference.GRPCInferenceService/"
_NAMED_IN_FIELDS = frozenset(_V2_SERVICE + name
                             for name in ("ModelInfer", "ModelMetadata", "ModelReady"))


def _prefix_fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``proto_wire.fields`` over the first bytes of a message: a length-delimited field the
    end cuts is given as far as it goes, and the reading stops at the cut."""
    pos, end = 0, len(data)
    try:
        while pos < end:
            tag, pos = proto_wire.read_varint(data, pos, end)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == proto_wire.VARINT:
                value, pos = proto_wire.read_varint(data, pos, end)
                yield number, wire_type, value
            elif wire_type == proto_wire.LEN:
                size, pos = proto_wire.read_varint(data, pos, end)
                yield number, wire_type, data[pos:pos + size]
                pos += size
            elif wire_type in (proto_wire.FIXED32, proto_wire.FIXED64):
                pos += 4 if wire_type == proto_wire.FIXED32 else 8
            else:
                return
    except proto_wire.WireError:
        return


def _field(message: bytes, number: int) -> bytes | None:
    """The first length-delimited field ``number`` of the message prefix, as far as the prefix
    goes (a message field: a ModelSpec is written once, and of a repeated one the first element
    is wanted), or None. Fields before it are skipped as ``_prefix_fields`` reads them."""
    pos, end = 0, len(message)
    try:
        while pos < end:
            tag, pos = proto_wire.read_varint(message, pos, end)
            wire_type = tag & 7
            if wire_type == proto_wire.LEN:
                size, pos = proto_wire.read_varint(message, pos, end)
                if tag >> 3 == number:
                    return message[pos:pos + size]
                pos += size
            elif wire_type == proto_wire.VARINT:
                pos = proto_wire.read_varint(message, pos, end)[1]
            elif wire_type in (proto_wire.FIXED32, proto_wire.FIXED64):
                pos += 4 if wire_type == proto_wire.FIXED32 else 8
            else:
                return None
    except proto_wire.WireError:
        return None
    return None


def grpc_model_spec(method: str, request_head: bytes) -> tuple[str, str]:
    """(model, version or label) of the ModelSpec in the first bytes of a gRPC request of
    ``method``; empty for a method without one, or bytes that do not hold one."""
    path = _MODEL_SPEC_FIELDS.get(method)
    if path is None:
        return _named_in_fields(request_head) if method in _NAMED_IN_FIELDS else ("", "")
    spec: bytes | None = request_head
    for number in path:
        assert spec is not None
        spec = _field(spec, number)
        if spec is None:
            return "", ""
    assert spec is not None
    return _model_spec(spec)


def _named_in_fields(request_head: bytes) -> tuple[str, str]:
    """(name, version) of an Open Inference Protocol request: its fields 1 and 2."""
    name = version = ""
    for number, wire_type, value in _prefix_fields(memoryview(request_head)):
        if number > 2:
            break  # fields come in number order: the rest is the request's body
        if wire_type == proto_wire.LEN:
            assert isinstance(value, memoryview)
            text = bytes(value).decode("utf-8", "replace")
            name, version = (text, version) if number == 1 else (name, text)
    return name, version


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _model_spec(spec: bytes) -> tuple[str, str]:
    """(name, version or label) of a serialized ModelSpec, or of its first bytes."""
    name = version = label = ""
    for number, wire_type, value in _prefix_fields(memoryview(spec)):
        if wire_type != proto_wire.LEN:
            continue
        assert isinstance(value, memoryview)
        if number == _NAME:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _VERSION:  # a google.protobuf.Int64Value: its field 1, 0 when absent
            number_value = 0
            for inner, inner_type, inner_value in _prefix_fields(value):
                if inner == 1 and inner_type == proto_wire.VARINT:
                    assert isinstance(inner_value, int)
                    number_value = proto_wire.as_int64(inner_value)
            version = str(number_value)
        elif number == _LABEL:
            label = bytes(value).decode("utf-8", "replace")
    return name, version or label


_CODE_NAMES = {int(code): code.name for code in Code}


def _status_text(protocol: str, status: int) -> str:
    if protocol == "GRPC":
        return _CODE_NAMES.get(status) or str(status)
    return str(status)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _rest_route(target: bytes) -> tuple[str, str, str]:
    """(route, model, version) of a REST request target."""
    path = target.split(b"?", 1)[0].decode("utf-8", "backslashreplace")
    model, version = rest_model_spec(path)
    return (path if len(path) <= MAX_ROUTE_CHARS else path[:MAX_ROUTE_CHARS] + "...", model,
            version)


def describe(entry: Entry, wall_offset: float) -> Line:
    """The values of ``entry``'s line; ``wall_offset`` is ``time.time() - time.monotonic()``."""
    answered, received, peer, protocol, method, request, status, bytes_in, bytes_out = entry
    if protocol == "REST":
        route, model, version = _rest_route(request)
    else:
        model, version = grpc_model_spec(method, request)
        route = ""
    return (answered + wall_offset, peer_text(peer), protocol, method, route, model, version,
            _status_text(protocol, status), bytes_in, bytes_out,
            max(0, round((answered - received) * 1e6)))


# --- the log -----------------------------------------------------------------------------------


class AccessLog:
    """Lines to ``path`` (``STDOUT``: standard output); see the module docstring.

    ``record_rest`` and ``record_grpc`` are thread-safe and never block; ``close`` once, after
    the servers have stopped. Opening the file is the constructor's: an unusable path is an
    INVALID_ARGUMENT naming ``--access_log_file``.
    """

    def __init__(self, path: str, max_pending: int = MAX_PENDING,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = path
        self._max_pending = max_pending
        self._flush_seconds = flush_seconds
        self._pending: collections.deque[Entry] = collections.deque()
        self._dropped = DROPPED.get_cell()
        self._failing = False  # the last write or reopen failed (said once, not per line)
        try:
            self._fd = os.dup(1) if path == STDOUT else self._open()
        except OSError as e:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Cannot open --access_log_file {path}: {e.strerror}") from None
        self._stop = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="tfsfast_access_log",
                                        daemon=True)
        self._writer.start()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    # --- the serving threads' part -------------------------------------------------------

    def record_rest(self, received: float, peer: object, method: str, target: bytes,
                    status: int, bytes_in: int, bytes_out: int) -> None:
        """Queues the line of a REST answer being handed to the transport now: ``received``
        is ``time.monotonic()`` when the request was complete, ``peer`` asyncio's peername,
        ``target`` the request target as received."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._dropped.increment_by(1)
            return
        pending.append((_monotonic(), received, peer, "REST", method, target, status, bytes_in,
                        bytes_out))

    def record_grpc(self, received: float, peer: object, method: str, request_head: bytes,
                    code: int, bytes_in: int, bytes_out: int) -> None:
        """Queues the line of a gRPC call answered now: ``received`` is ``time.monotonic()``
        when its request message was received, ``peer`` gRPC core's, ``method`` the full
        method, ``request_head`` at most the first ``REQUEST_PREFIX_BYTES`` of the request
        message, ``code`` the status code."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._dropped.increment_by(1)
            return
        pending.append((_monotonic(), received, peer, "GRPC", method, request_head, code,
                        bytes_in, bytes_out))

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        if self.path != STDOUT:
            self._reopen_if_moved()
        wall_offset = time.time() - _monotonic()
        chunk: list[bytes] = []
        size = 0
        while pending:
            entry = pending.popleft()
            try:
                line = format_line(describe(entry, wall_offset)).encode()
            except Exception:  # a bug must cost its line, not the writer thread
                _log.exception("Access log: cannot format %r", entry)
                self._dropped.increment_by(1)
                continue
            if chunk and size + len(line) > _PIPE_BUF:
                self._write(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(chunk)

    def _write(self, lines: list[bytes]) -> None:
        """One ``write`` of whole lines (the rule of the module docstring); a failing disk
        loses them, counted, and the log carries on."""
        data = memoryview(b"".join(lines))
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            self._dropped.increment_by(len(lines))
            if not self._failing:
                _log.warning("Access log %s: write failed (%s); lines are dropped until a "
                             "write succeeds", self.path, e.strerror)
            self._failing = True
            return
        self._failing = False

    def _reopen_if_moved(self) -> None:
        try:
            named, opened = os.stat(self.path), os.fstat(self._fd)
            moved = (named.st_ino, named.st_dev) != (opened.st_ino, opened.st_dev)
        except FileNotFoundError:
            moved = True
        if not moved:
            return
        try:
            fd = self._open()
        except OSError as e:
            # Lines go on to the old file until the path can be created again.
            if not self._failing:
                _log.warning("Access log %s: cannot reopen it (%s)", self.path, e.strerror)
            self._failing = True
            return
        os.close(self._fd)
        self._fd = fd

    def close(self, timeout: float | None = None) -> None:
        """Writes every line recorded so far and stops; waits at most ``timeout`` seconds for
        the writer (None: as long as it takes). Lines recorded afterwards are not written."""
        if self._closed:
            return
        self._stop.set()
        self._writer.join(timeout)
        if not self._writer.is_alive():
            self._closed = True
            os.close(self._fd)
