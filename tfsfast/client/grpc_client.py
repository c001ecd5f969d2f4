"""``GrpcClient``: TF Serving's gRPC API (PredictionService, ModelService) without its stubs.

The calls go through grpcio's generic unary calls with bytes in and out: requests are written
and responses read by ``_grpc_messages`` (TensorProtos by the compiled codec), so neither
TensorFlow nor ``tensorflow-serving-api`` is needed.

The channel: one per client, opened lazily by gRPC, kept for the client's life and reconnected
by gRPC when it breaks; every call multiplexes on it, from any thread. Message sizes are not
capped on the client side (grpcio's default would refuse an answer over 4 MiB; the server has
its own limit, ``--grpc_max_message_bytes``). ``options`` adds channel arguments, e.g.
``[("grpc.keepalive_time_ms", 300_000)]`` for keepalive pings: none are sent by default,
because gRPC servers by default answer pings more frequent than every 5 minutes, or pings
without a call in flight, by closing the connection.

Deadlines: ``timeout`` seconds (the client's, or the call's) go to the server as the call's
deadline (gRPC's ``grpc-timeout``), which TF Serving and tfsfast apply to the run; past it the
call raises ``RequestError(DEADLINE_EXCEEDED)``. Errors carry the call's status code and the
server's details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from tfsfast.client import _grpc_messages as messages
from tfsfast.client._examples import Example
from tfsfast.client.errors import Code, RequestError
from tfsfast.client.results import ModelMetadata, ModelVersionStatus

__all__ = ["GrpcClient", "channel_options", "rpc_error"]


def channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The client's channel arguments, then the caller's (a later one wins)."""
    return [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
            *options]


def rpc_error(e: grpc.RpcError) -> RequestError:
    """The RequestError of a failed call (``grpc.RpcError`` is also a ``grpc.Call``)."""
    status = e.code()
    code = Code(status.value[0]) if status is not None else Code.UNKNOWN
    return RequestError(code, e.details() or "")


class GrpcClient:
    """TF Serving's gRPC API at ``target`` (``"host:port"``, ``"unix:/path"``, any gRPC target).

    ``credentials``: ``grpc.ssl_channel_credentials(...)`` for TLS (the server's
    ``--ssl_config_file``); None for plaintext. ``options``: extra channel arguments.
    ``timeout``: seconds each call may take unless the call gives its own; None for no
    deadline. Thread-safe; ``close()`` (or ``with``) closes the channel.

    The calls are ``RestClient``'s, with the same arguments and results (so code can switch
    transports), plus ``output_filter`` on ``predict``. They raise ``RequestError`` with the
    call's status code and the server's message, ``ValueError`` for arguments the API cannot
    carry. Numeric inputs travel as ``tensor_content``; results' numeric arrays may be read-only
    views of the response (copy one before writing to it).
    """

    def __init__(self, target: str = "localhost:8500", *,
                 credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), timeout: float | None = 30.0) -> None:
        arguments = channel_options(options)
        self._channel = (grpc.insecure_channel(target, arguments) if credentials is None
                         else grpc.secure_channel(target, credentials, arguments))
        self._timeout = timeout
        # No serializers: requests and responses are bytes.
        self._predict = self._channel.unary_unary(messages.PREDICT)
        self._classify = self._channel.unary_unary(messages.CLASSIFY)
        self._regress = self._channel.unary_unary(messages.REGRESS)
        self._metadata = self._channel.unary_unary(messages.GET_MODEL_METADATA)
        self._status = self._channel.unary_unary(messages.GET_MODEL_STATUS)

    def _invoke(self, method: Any, request: bytes, timeout: float | None) -> bytes:
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def predict(self, model: str, inputs: Mapping[str, Any], *, version: int | None = None,
                version_label: str | None = None, signature_name: str | None = None,
                output_filter: Sequence[str] | None = None,
                timeout: float | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Runs the signature (``serving_default`` unless named) on ``inputs`` (alias ->
        array), answering the ``output_filter`` aliases (all by default). Returns the output
        array when there is one output, else a dict alias -> array (as ``RestClient``)."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.predict_request(spec, inputs, output_filter)
        return messages.read_predict_response(self._invoke(self._predict, request, timeout))

    def classify(self, model: str, examples: Sequence[Example], *,
                 context: Example | None = None, version: int | None = None,
                 version_label: str | None = None, signature_name: str | None = None,
                 timeout: float | None = None) -> list[list[tuple[str, float]]]:
        """Classifies tf.Examples (feature name -> value mappings, as ``RestClient.classify``
        takes them). Returns, per example, its (label, score) classes."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.classification_request(spec, examples, context)
        return messages.read_classification_response(
            self._invoke(self._classify, request, timeout))

    def regress(self, model: str, examples: Sequence[Example], *,
                context: Example | None = None, version: int | None = None,
                version_label: str | None = None, signature_name: str | None = None,
                timeout: float | None = None) -> list[float]:
        """Regresses tf.Examples; one value per example."""
        spec = messages.model_spec(model, version, version_label, signature_name)
        request = messages.regression_request(spec, examples, context)
        return messages.read_regression_response(self._invoke(self._regress, request, timeout))

    def model_status(self, model: str, *, version: int | None = None,
                     timeout: float | None = None) -> list[ModelVersionStatus]:
        """The state of every version of ``model`` the server knows (or of ``version``)."""
        request = messages.model_status_request(messages.model_spec(model, version))
        return messages.read_model_status_response(self._invoke(self._status, request, timeout))

    def model_metadata(self, model: str, *, version: int | None = None,
                       version_label: str | None = None,
                       timeout: float | None = None) -> ModelMetadata:
        """The signatures of the version that would serve the call (the latest by
        default)."""
        request = messages.model_metadata_request(
            messages.model_spec(model, version, version_label))
        return messages.read_model_metadata_response(
            self._invoke(self._metadata, request, timeout))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
