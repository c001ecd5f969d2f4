"""``inference.GRPCInferenceService``: the Open Inference Protocol (KServe V2) over gRPC.

Served on the gRPC port beside PredictionService, by grpcio's server (``grpc_server``); the
messages are Triton's definition of the protocol (``grpc_protocol``). The methods:

- ServerLive, ServerReady, ModelReady: ``ServerHealth``'s answers, as the REST health routes
  give them (ModelReady of a model outside the config is NOT_FOUND; draining turns readiness
  off).
- ServerMetadata, ModelMetadata: ``model_metadata``'s, the REST metadata's content.
- ModelInfer: the request bound to a signature by ``infer`` (``grpc_codec`` reads the wire),
  run through ``SavedModelBundle.run``, which enqueues it on the signature's batcher when the
  model batches (so V2 gRPC, V2 REST and ``/v1`` requests share batches; a batched run computes
  every output and the answer keeps those asked for, TF Serving's rule), else runs it on the
  handler thread with only the outputs asked for. The response carries every answered output
  in ``raw_output_contents``.

Triton's other methods (streaming, repository, shared memory, statistics, ...) are not
registered: gRPC answers them UNIMPLEMENTED.

A model version is the protocol's string: "" for the latest AVAILABLE one, else a number
(INVALID_ARGUMENT ``Failed to convert version: v to numeric.``, TF Serving's text, otherwise).
As around PredictionService's methods: a request or a response larger than
``max_message_bytes`` is RESOURCE_EXHAUSTED naming ``--grpc_max_message_bytes``; a ModelInfer
whose deadline has passed is DEADLINE_EXCEEDED before it is read, otherwise the time left is
its run's ``timeout_in_ms``; inputs are within the ``codec_limits``. Errors carry the gRPC code
of their ServingError's code and its message (``grpc_status_util``); an unexpected exception is
INTERNAL.

Metrics: every ModelInfer that is read counts ``request_count{model_name, status}`` once and,
when OK, ``request_latency{model_name, API="ModelInfer", entrypoint="GRPC"}``; a successful
run records ``runtime_latency`` with API ``ModelInfer``, as the REST V2 route does. The health
and metadata methods count nothing, as PredictionService's GetModelMetadata.

Thread-safe: handlers run on grpcio's pool; what they share is the core, the health and a
``SignatureCache`` (whose races build equal entries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.monitoring import serving_metrics
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.server.grpc import grpc_status_util
from tfsfast.server.grpc.fast_unary import grpcio_handler
from tfsfast.server.grpc.prediction_service_impl import timeout_in_ms
from tfsfast.server.predict.predict_route import INT64_MAX
from tfsfast.server.predict.predict_signatures import SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2 import grpc_codec, infer, model_metadata
from tfsfast.server.v2.grpc_protocol import SERVICE_NAME, message_class
from tfsfast.util.status import Code, ServingError

__all__ = ["INFER_API", "SERVICE_NAME", "GrpcInferenceServiceImpl"]

# The metric label of ModelInfer's requests and runs: the protocol's RPC.
INFER_API = "ModelInfer"
_RECORDER = serving_metrics.RequestRecorder("GRPC")
# grpcio's server reports a call without a deadline as one in gRPC's infinite future (some
# 1e18 seconds away): a time remaining this long is no deadline.
_NO_DEADLINE_SECONDS = 1e15


def run_timeout_in_ms(context: grpc.ServicerContext) -> int:
    """Predict's ``timeout_in_ms`` of the call (0: no deadline; DEADLINE_EXCEEDED if it has
    passed)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining >= _NO_DEADLINE_SECONDS:
        return 0
    return timeout_in_ms(context)


def model_version(text: str) -> int | None:
    """The version a request's ``model_version`` names (None: the latest)."""
    if not text:
        return None
    if (not text.isascii() or not text.isdigit() or len(text) > len(str(INT64_MAX))
            or int(text) > INT64_MAX):
        raise ServingError(Code.INVALID_ARGUMENT, f"Failed to convert version: {text} to "
                           "numeric.")
    return int(text)


class GrpcInferenceServiceImpl:
    """The service's handlers over ``core``, readiness from ``health`` (see the module
    docstring); ``max_message_bytes``, ``codec_limits`` and ``enforce_signature_method_name``
    are Predict's."""

    def __init__(self, core: ServerCore, health: ServerHealth, max_message_bytes: int,
                 codec_limits: CodecLimits = DEFAULT_CODEC_LIMITS,
                 enforce_signature_method_name: bool = False) -> None:
        self._core = core
        self._health = health
        self._max_message_bytes = max_message_bytes
        self._limits = codec_limits
        self._signatures = SignatureCache(enforce_signature_method_name)
        self._decode = grpc_codec.ContentsDecoder()

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, method: Callable[[bytes, grpc.ServicerContext], Any]
              ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """``method`` (request bytes in, response message out) as a grpcio handler of raw bytes,
        so that both sizes are checked against the limit (see the module docstring)."""
        return grpcio_handler(lambda data, context: method(data, context).SerializeToString(),
                              self._max_message_bytes)

    def _methods(self) -> dict[str, Callable[[bytes, grpc.ServicerContext], Any]]:
        return {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
        }

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in and out: each method parses its request, and the sizes are checked.
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            name: grpc.unary_unary_rpc_method_handler(self._call(method))
            for name, method in self._methods().items()})

    # --- health and metadata -----------------------------------------------------------------

    def server_live(self, data: bytes, context: grpc.ServicerContext) -> Any:
        _parse("ServerLiveRequest", data)
        return message_class("ServerLiveResponse")(live=self._health.is_server_live())

    def server_ready(self, data: bytes, context: grpc.ServicerContext) -> Any:
        _parse("ServerReadyRequest", data)
        return message_class("ServerReadyResponse")(ready=self._health.is_server_ready())

    def model_ready(self, data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse("ModelReadyRequest", data)
        ready = self._health.is_model_ready(request.name, model_version(request.version))
        return message_class("ModelReadyResponse")(ready=ready)

    def server_metadata(self, data: bytes, context: grpc.ServicerContext) -> Any:
        _parse("ServerMetadataRequest", data)
        return message_class("ServerMetadataResponse")(**model_metadata.server_metadata())

    def model_metadata(self, data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse("ModelMetadataRequest", data)
        body = model_metadata.served_model_metadata(self._core, self._signatures, request.name,
                                                    model_version(request.version))
        return message_class("ModelMetadataResponse")(**body)

    # --- inference ---------------------------------------------------------------------------

    def model_infer(self, data: bytes, context: grpc.ServicerContext) -> Any:
        """ModelInfer, counted (see the module docstring)."""
        start = _RECORDER.start()
        # An expired deadline is refused before the request is read, and not counted, as
        # Predict's.
        timeout = run_timeout_in_ms(context)
        name = ""
        try:
            request = _parse("ModelInferRequest", data)
            name = request.model_name
            response = self._infer(request, timeout)
        except Exception as e:
            _RECORDER.error(name, e.code if isinstance(e, ServingError) else Code.INTERNAL)
            raise
        _RECORDER.ok(name, INFER_API, start)
        return response

    def _infer(self, request: Any, timeout: int) -> Any:
        name = request.model_name
        version = model_version(request.model_version)
        parsed = grpc_codec.parse_infer_request(request)
        with self._core.get_servable_handle(name, version, None) as handle:
            bundle: SavedModelBundle = handle.servable
            signatures = self._signatures.of(bundle, handle.id)
            signature = signatures.get(infer.signature_name(parsed))
            inputs = infer.bind_inputs(signature.signature, parsed.inputs, self._decode,
                                       self._limits)
            aliases = infer.requested_aliases(signature.signature, parsed.outputs)
            # Batched runs compute every output: a subset would not join the batch.
            run_aliases = None if signatures.batching is not None else aliases
            run_start = time.monotonic_ns()
            outputs = bundle.run(signature.key, inputs, run_aliases, timeout)
            serving_metrics.record_runtime_latency(
                name, INFER_API, "TF1", (time.monotonic_ns() - run_start) // 1000)
            served = handle.id.version
        answer = infer.response_outputs(signature.signature, outputs, aliases)
        return grpc_codec.infer_response(name, str(served), request.id, answer)


def _parse(name: str, data: bytes) -> Any:
    """Message ``inference.<name>`` from ``data``; INVALID_ARGUMENT when it does not parse."""
    return grpc_status_util.parse_request(message_class(name), data)
