"""``AccessLogInterceptor``: the access log's lines of the gRPC services grpcio serves.

PredictionService's calls are answered by the completion-queue loop (``fast_unary``), which
records its own lines. grpcio's synchronous server serves the rest (ModelService, health,
reflection, the profiler, and PredictionService with the loop off); this server interceptor
gives each of their calls one line (``tfsfast.server.access_log``).

How it sees bytes rather than messages: it serves each method through a handler of its own,
whose request deserializer keeps the message's bytes beside the message and whose behavior
serializes the response itself (the handler has no response serializer, so grpcio sends the
bytes as they are). The line gets the sizes and the request's first bytes without anything
serialized twice. A request that does not deserialize gets grpcio's answer to it (INTERNAL
``Exception deserializing request!``), and its line.

The status is the one grpcio sends: OK when the behavior returns, else the code it set or aborted
with, UNKNOWN for an exception without one (grpcio's ``Exception calling application``), and
CANCELLED for a response stream the client left. A stream's line comes when it ends, with the
bytes of all its messages; its latency is from the call's start. A method no service has is
answered UNIMPLEMENTED by grpcio at once, and its line has no peer (grpcio tells an interceptor
only the method and the metadata).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from tfsfast.server.access_log import REQUEST_PREFIX_BYTES, AccessLog
from tfsfast.util.status import Code

_DESERIALIZE_ERROR = "Exception deserializing request!"  # grpcio's details, word for word

Serializer = Callable[[Any], bytes] | None


class _Undecodable:
    """What the deserializer hands the behavior for a request that does not deserialize."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _keeping_bytes(deserialize: Callable[[bytes], Any] | None
                   ) -> Callable[[bytes], tuple[Any, bytes]]:
    def deserializer(data: bytes) -> tuple[Any, bytes]:
        if deserialize is None:
            return data, data
        try:
            return deserialize(data), data
        except Exception:
            return _UNDECODABLE, data

    return deserializer


def _message(request: Any, context: grpc.ServicerContext) -> Any:
    if request is _UNDECODABLE:
        context.abort(grpc.StatusCode.INTERNAL, _DESERIALIZE_ERROR)
    return request


def _code(context: grpc.ServicerContext, default: Code) -> int:
    """The status code grpcio sends for the call: the one set or aborted with, else
    ``default``."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(default) if code is None else int(code)


class _Requests:
    """A request stream as the behavior sees it (messages), counting its bytes and keeping the
    first message's first bytes."""

    def __init__(self, requests: Iterator[tuple[Any, bytes]],
                 context: grpc.ServicerContext) -> None:
        self._requests = requests
        self._context = context
        self.bytes_in = 0
        self.head = b""
        self._first = True

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> Any:
        message, data = next(self._requests)
        if self._first:
            self._first = False
            self.head = data[:REQUEST_PREFIX_BYTES]
        self.bytes_in += len(data)
        return _message(message, self._context)


class AccessLogInterceptor(grpc.ServerInterceptor):
    """Records a line per call of every method grpcio serves (module docstring)."""

    def __init__(self, access_log: AccessLog) -> None:
        self._log = access_log

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            self._log.record_grpc(time.monotonic(), None, method, b"", int(Code.UNIMPLEMENTED),
                                  0, 0)
            return None
        deserialize = _keeping_bytes(handler.request_deserializer)
        serialize: Serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(method, handler.unary_unary, serialize),
                request_deserializer=deserialize)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, handler.unary_stream, serialize),
                request_deserializer=deserialize)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(method, handler.stream_unary, serialize),
                request_deserializer=deserialize)
        return grpc.stream_stream_rpc_method_handler(
            self._stream_stream(method, handler.stream_stream, serialize),
            request_deserializer=deserialize)

    def _record(self, received: float, context: grpc.ServicerContext, method: str, head: bytes,
                code: int, bytes_in: int, bytes_out: int) -> None:
        self._log.record_grpc(received, context.peer(), method, head, code, bytes_in, bytes_out)

    def _response(self, received: float, context: grpc.ServicerContext, method: str,
                  call: Callable[[], Any], serialize: Serializer,
                  request: Callable[[], tuple[bytes, int]]) -> bytes:
        """``call()``'s response, serialized, recording the line when it returns or raises;
        ``request()`` then gives the request's head and size in bytes."""
        code, bytes_out = int(Code.UNKNOWN), 0
        try:
            response = call()
            if serialize is not None:
                response = serialize(response)
            bytes_out = len(response)
            code = _code(context, Code.OK)
            return response
        except BaseException:
            code = _code(context, Code.UNKNOWN)
            raise
        finally:
            head, bytes_in = request()
            self._record(received, context, method, head, code, bytes_in, bytes_out)

    def _unary_unary(self, method: str, behavior: Callable[..., Any],
                     serialize: Serializer) -> Callable[..., bytes]:
        def unary_unary(request: tuple[Any, bytes], context: grpc.ServicerContext) -> bytes:
            received = time.monotonic()
            message, data = request
            return self._response(received, context, method,
                                  lambda: behavior(_message(message, context), context),
                                  serialize, lambda: (data[:REQUEST_PREFIX_BYTES], len(data)))

        return unary_unary

    def _responses(self, received: float, context: grpc.ServicerContext, method: str,
                   responses: Callable[[], Iterator[Any]], serialize: Serializer,
                   requests: _Requests | None, head: bytes, bytes_in: int) -> Iterator[bytes]:
        """The behavior's response stream, serialized, recording the line when it ends."""
        code, bytes_out = int(Code.UNKNOWN), 0
        try:
            for response in responses():
                data = serialize(response) if serialize is not None else response
                bytes_out += len(data)
                yield data
            code = _code(context, Code.OK)
        except GeneratorExit:  # grpcio stopped asking: the client went
            code = _code(context, Code.CANCELLED)
            raise
        except BaseException:
            code = _code(context, Code.UNKNOWN)
            raise
        finally:
            if requests is not None:
                head, bytes_in = requests.head, requests.bytes_in
            self._record(received, context, method, head, code, bytes_in, bytes_out)

    def _unary_stream(self, method: str, behavior: Callable[..., Iterator[Any]],
                      serialize: Serializer) -> Callable[..., Iterator[bytes]]:
        def unary_stream(request: tuple[Any, bytes],
                         context: grpc.ServicerContext) -> Iterator[bytes]:
            received = time.monotonic()
            message, data = request
            return self._responses(
                received, context, method,
                lambda: behavior(_message(message, context), context), serialize, None,
                data[:REQUEST_PREFIX_BYTES], len(data))

        return unary_stream

    def _stream_unary(self, method: str, behavior: Callable[..., Any],
                      serialize: Serializer) -> Callable[..., bytes]:
        def stream_unary(request_iterator: Iterator[tuple[Any, bytes]],
                         context: grpc.ServicerContext) -> bytes:
            received = time.monotonic()
            requests = _Requests(request_iterator, context)
            return self._response(received, context, method,
                                  lambda: behavior(requests, context), serialize,
                                  lambda: (requests.head, requests.bytes_in))

        return stream_unary

    def _stream_stream(self, method: str, behavior: Callable[..., Iterator[Any]],
                       serialize: Serializer) -> Callable[..., Iterator[bytes]]:
        def stream_stream(request_iterator: Iterator[tuple[Any, bytes]],
                          context: grpc.ServicerContext) -> Iterator[bytes]:
            received = time.monotonic()
            requests = _Requests(request_iterator, context)
            return self._responses(received, context, method,
                                   lambda: behavior(requests, context), serialize, requests,
                                   b"", 0)

        return stream_stream
