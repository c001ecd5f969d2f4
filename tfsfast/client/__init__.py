"""A client for TF Serving's APIs (tfsfast's, or TF Serving's own) without TensorFlow.

Four clients with the same calls, arguments, results and errors, so code can switch between
transports (and between sync and asyncio) by changing one line::

    RestClient("host:8501")          AsyncRestClient("host:8501")
    GrpcClient("host:8500")          AsyncGrpcClient("host:8500")

    predict(model, {alias: array}, version=, version_label=, signature_name=, timeout=)
        -> the output array (one output) or {alias: array}
    classify(model, [{feature: value}], context=, ...)  -> [[(label, score), ...], ...]
    regress(model, [{feature: value}], context=, ...)   -> [value, ...]
    model_status(model, version=)                      -> [ModelVersionStatus]
    model_metadata(model, version=, version_label=)    -> ModelMetadata

REST (``/v1/models/...``) sends tensors as msgpack tensor maps by default (tfsfast's format:
raw array bytes, no text conversion on either side) or as TF Serving's JSON with
``wire_format="json"`` (the format TF Serving itself serves). gRPC speaks
``tensorflow.serving.PredictionService`` and ``ModelService`` with protobuf written and read
by the client itself, tensors by tfsfast's compiled TensorProto codec (numeric tensors as
``tensor_content``). Every call has a deadline (``timeout``, 30 s by default) and raises
``RequestError`` (``code``, the server's ``message``, REST's ``http_status``) when it fails.

What it imports: numpy, msgpack (REST), grpcio (gRPC), ml_dtypes (bfloat16 arrays; the codec's
dtype table), and from tfsfast only the TensorProto codec and the modules it needs
(``tfsfast.codecs.tensor_proto`` and its compiled ``_tensor_proto``, ``tfsfast.runtime.dtypes``,
``tfsfast.util.status``) -- never TensorFlow, ``tensorflow-serving-api`` or protobuf. The clients
are imported on first use: ``from tfsfast.client import RestClient`` does not import grpcio.

Installing it without TensorFlow: the ``tfsfast-client`` distribution (``client/`` in the
repository; ``pip install ./client``, or a wheel from ``pip wheel ./client``) packages this
package and those modules from the repository's own files, and compiles the codec (Cython and
numpy's headers at build time; numpy, msgpack, grpcio and ml_dtypes to run). The codec must be
the compiled one there: its pure-Python twin parses with TensorFlow's protos. It is a separate
distribution rather than an extra of ``tfsfast`` (``pip install "tfsfast[client]"``) because an
extra can only add requirements: ``tfsfast`` requires TensorFlow to run and to build (its runtime
extension compiles against TensorFlow's C API), so every install of it brings TensorFlow's 600 MB.
``tfsfast`` ships the client too (it has every requirement of it); the two distributions hold
the same files of this package and are not meant to be installed into one environment (install
``tfsfast`` where the server runs, ``tfsfast-client`` elsewhere).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tfsfast.client.errors import Code, RequestError
from tfsfast.client.results import ModelMetadata, ModelVersionStatus, SignatureDef, TensorInfo

if TYPE_CHECKING:
    from tfsfast.client.async_grpc_client import AsyncGrpcClient
    from tfsfast.client.async_rest_client import AsyncRestClient
    from tfsfast.client.grpc_client import GrpcClient
    from tfsfast.client.rest_client import RestClient

__all__ = [
    "AsyncGrpcClient",
    "AsyncRestClient",
    "Code",
    "GrpcClient",
    "ModelMetadata",
    "ModelVersionStatus",
    "RequestError",
    "RestClient",
    "SignatureDef",
    "TensorInfo",
]

_CLIENTS = {
    "RestClient": "tfsfast.client.rest_client",
    "AsyncRestClient": "tfsfast.client.async_rest_client",
    "GrpcClient": "tfsfast.client.grpc_client",
    "AsyncGrpcClient": "tfsfast.client.async_grpc_client",
}


def __getattr__(name: str) -> Any:
    module = _CLIENTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
