"""``RemoteModelRepository``: a REST worker's model repository, which is the server process's.

A REST worker (``--rest_api_num_workers`` > 1) serves the server process's config and never
changes it itself (``rest_workers``): a load or unload that reached a worker's REST port must
change the server's config, which then reaches every worker. So a worker's repository routes call
the server's own V2 gRPC methods (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload)
over the server's UNIX socket (``--grpc_socket_path``) when it has one, else its plain TCP port
on the loopback; the answer, or the error with its code and message, is the server's. A server
whose gRPC port takes TLS or ALTS only, and has no socket, cannot be called so: the worker's
load and unload are then FAILED_PRECONDITION, saying to call the gRPC port (the index too).

Thread-safe (one channel, made at the first call).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import grpc

from tfsfast.server.v2.grpc_protocol import SERVICE_NAME, message_class
from tfsfast.server.v2.model_repository import ModelIndex
from tfsfast.util.status import Code, ServingError

__all__ = ["RemoteModelRepository"]

# How long an index may take; a load or unload is bounded by the server's reload timeout.
_INDEX_TIMEOUT_SECONDS = 30.0


class RemoteModelRepository:
    """The repository of the server at ``target`` (a gRPC target: ``unix:<path>`` or
    ``127.0.0.1:<port>``; "" when the server cannot be reached without credentials)."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None

    def index(self, ready_only: bool = False) -> list[ModelIndex]:
        response = self._call("RepositoryIndex", message_class("RepositoryIndexRequest")(
            ready=ready_only), "RepositoryIndexResponse", _INDEX_TIMEOUT_SECONDS)
        return [ModelIndex(m.name, m.version, m.state, m.reason) for m in response.models]

    def load(self, name: str, parameters: Mapping[str, Any] | None = None,
             timeout: float | None = None) -> None:
        self._call("RepositoryModelLoad", self._model_request(
            "RepositoryModelLoadRequest", name, parameters), "RepositoryModelLoadResponse",
            timeout)

    def unload(self, name: str, parameters: Mapping[str, Any] | None = None,
               timeout: float | None = None) -> None:
        self._call("RepositoryModelUnload", self._model_request(
            "RepositoryModelUnloadRequest", name, parameters), "RepositoryModelUnloadResponse",
            timeout)

    @staticmethod
    def _model_request(message: str, name: str, parameters: Mapping[str, Any] | None) -> Any:
        request = message_class(message)(model_name=name)
        for key, value in (parameters or {}).items():
            parameter = request.parameters[key]
            if isinstance(value, bool):
                parameter.bool_param = value
            elif isinstance(value, int):
                parameter.int64_param = value
            elif isinstance(value, str):
                parameter.string_param = value
            else:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Repository parameter '{key}' must be a boolean, an "
                                   f"integer or a string")
        return request

    def _call(self, method: str, request: Any, response: str, timeout: float | None) -> Any:
        if not self._target:
            raise ServingError(Code.FAILED_PRECONDITION,
                               f"{method} is served by the server's gRPC port, which takes "
                               f"credentials: call it there")
        call = self._get_channel().unary_unary(
            f"/{SERVICE_NAME}/{method}", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_class(response).FromString)
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as e:
            code = Code[e.code().name] if e.code() is not None else Code.UNKNOWN
            raise ServingError(code, e.details() or "") from None

    def _get_channel(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(self._target)
            return self._channel
