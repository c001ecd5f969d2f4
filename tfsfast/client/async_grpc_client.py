"""``AsyncGrpcClient``: ``GrpcClient`` for asyncio, on grpcio's ``grpc.aio`` channel.

The same calls, arguments, results and errors as ``GrpcClient`` (whose docstring describes the
channel, its options and deadlines), as coroutines. A ``grpc.aio`` channel belongs to the event
loop it was made in: make the client inside the loop that uses it. Cancelling a call cancels
the RPC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from tfsfast.client import _grpc_messages as messages
from tfsfast.client._examples import Example
from tfsfast.client.grpc_client import channel_options, rpc_error
from tfsfast.client.results import ModelMetadata, ModelVersionStatus

__all__ = ["AsyncGrpcClient"]


class AsyncGrpcClient:
    """``GrpcClient`` for asyncio (see its docstring for the arguments and results)."""

    def __init__(self, target: str = "localhost:8500", *,
                 credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), timeout: float | None = 30.0) -> None:
        arguments = channel_options(options)
        self._channel = (grpc.aio.insecure_channel(target, arguments) if credentials is None
                         else grpc.aio.secure_channel(target, credentials, arguments))
        self._timeout = timeout
        self._predict = self._channel.unary_unary(messages.PREDICT)
        self._classify = self._channel.unary_unary(messages.CLASSIFY)
        self._regress = self._channel.unary_unary(messages.REGRESS)
        self._metadata = self._channel.unary_unary(messages.GET_MODEL_METADATA)
        self._status = self._channel.unary_unary(messages.GET_MODEL_STATUS)

    async def _invoke(self, method: Any, request: bytes, timeout: float | None) -> bytes:
        try:
            return await method(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    async def predict(self, model: str, inputs: Mapping[str, Any], *,
                      version: int | None = None, version_label: str | None = None,
                      signature_name: str | None = None,
                      output_filter: Sequence[str] | None = None,
                      timeout: float | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """``GrpcClient.predict``."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.predict_request(spec, inputs, output_filter)
        return messages.read_predict_response(
            await self._invoke(self._predict, request, timeout))

    async def classify(self, model: str, examples: Sequence[Example], *,
                       context: Example | None = None, version: int | None = None,
                       version_label: str | None = None, signature_name: str | None = None,
                       timeout: float | None = None) -> list[list[tuple[str, float]]]:
        """``GrpcClient.classify``."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.classification_request(spec, examples, context)
        return messages.read_classification_response(
            await self._invoke(self._classify, request, timeout))

    async def regress(self, model: str, examples: Sequence[Example], *,
                      context: Example | None = None, version: int | None = None,
                      version_label: str | None = None, signature_name: str | None = None,
                      timeout: float | None = None) -> list[float]:
        """``GrpcClient.regress``."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.regression_request(spec, examples, context)
        return messages.read_regression_response(
            await self._invoke(self._regress, request, timeout))

    async def model_status(self, model: str, *, version: int | None = None,
                           timeout: float | None = None) -> list[ModelVersionStatus]:
        """``GrpcClient.model_status``."""
        request = messages.model_status_request(messages.model_spec(model, version))
        return messages.read_model_status_response(
            await self._invoke(self._status, request, timeout))

    async def model_metadata(self, model: str, *, version: int | None = None,
                             version_label: str | None = None,
                             timeout: float | None = None) -> ModelMetadata:
        """``GrpcClient.model_metadata``."""
        request = messages.model_metadata_request(
            messages.model_spec(model, version, version_label))
        return messages.read_model_metadata_response(
            await self._invoke(self._metadata, request, timeout))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
