"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``), for grpcurl and friends.

Lists the services the server registered and answers file and symbol queries with the
FileDescriptorProtos of TF Serving's APIs, of the Open Inference Protocol (in
``server.v2.grpc_protocol``'s private pool) and of health/reflection themselves, each file
followed by its dependencies, as gRPC's reference implementation does. Extension queries answer
NOT_FOUND: these APIs declare no extensions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from tfsfast.server.grpc import protos
from tfsfast.server.v2 import grpc_protocol

SERVICE_NAMES = ("grpc.reflection.v1.ServerReflection",
                 "grpc.reflection.v1alpha.ServerReflection")
_NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
_UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]


class ReflectionServicer:
    """Answers ``ServerReflectionInfo`` streams; stateless and thread-safe."""

    def __init__(self, service_names: Sequence[str], version: str) -> None:
        self._services = sorted(set(service_names) | set(SERVICE_NAMES))
        self._version = version
        self._request = protos.message_class(f"grpc.reflection.{version}.ServerReflectionRequest")
        self._response = protos.message_class(
            f"grpc.reflection.{version}.ServerReflectionResponse")
        # The *_pb2_grpc stubs do not import the service files; load them into the default
        # pool so the services themselves can be described.
        from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

        del model_service_pb2, prediction_service_pb2
        self._pools = [descriptor_pool.Default(), protos.POOL, grpc_protocol.POOL]

    def _file(self, finder: str, key: str) -> Any | None:
        for pool in self._pools:
            try:
                return getattr(pool, finder)(key)
            except KeyError:
                continue
        return None

    def _files_with_dependencies(self, file: Any) -> list[bytes]:
        out: list[bytes] = []
        seen: set[str] = set()
        stack = [file]
        while stack:
            f = stack.pop()
            if f.name in seen:
                continue
            seen.add(f.name)
            proto = descriptor_pb2.FileDescriptorProto()
            f.CopyToProto(proto)
            out.append(proto.SerializeToString())
            stack.extend(f.dependencies)
        return out

    def _answer(self, request: Any) -> Any:
        response = self._response(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        file = None
        if kind == "list_services":
            for name in self._services:
                response.list_services_response.service.add(name=name)
            return response
        if kind == "file_by_filename":
            file = self._file("FindFileByName", request.file_by_filename)
        elif kind == "file_containing_symbol":
            file = self._file("FindFileContainingSymbol", request.file_containing_symbol)
        elif kind in ("file_containing_extension", "all_extension_numbers_of_type"):
            response.error_response.error_code = _NOT_FOUND
            response.error_response.error_message = "extensions are not supported"
            return response
        else:
            response.error_response.error_code = _UNIMPLEMENTED
            response.error_response.error_message = "unknown reflection request"
            return response
        if file is None:
            response.error_response.error_code = _NOT_FOUND
            response.error_response.error_message = "not found"
        else:
            response.file_descriptor_response.file_descriptor_proto.extend(
                self._files_with_dependencies(file))
        return response

    def info(self, requests: Iterable[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            yield self._answer(request)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            f"grpc.reflection.{self._version}.ServerReflection", {
                "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                    self.info, request_deserializer=self._request.FromString,
                    response_serializer=self._response.SerializeToString)})


def reflection_handlers(service_names: Sequence[str]) -> list[grpc.GenericRpcHandler]:
    """Handlers for both reflection versions, listing ``service_names`` (and themselves)."""
    return [ReflectionServicer(service_names, v).handler() for v in ("v1", "v1alpha")]
