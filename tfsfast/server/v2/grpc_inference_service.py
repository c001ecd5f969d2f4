"""``inference.GRPCInferenceService``: the Open Inference Protocol (KServe V2) over gRPC.

Served on the gRPC port beside PredictionService, by grpcio's server (``grpc_server``); the
messages are Triton's definition of the protocol (``grpc_protocol``). The methods:

- ServerLive, ServerReady, ModelReady: ``ServerHealth``'s answers, as the REST health routes
  give them (ModelReady of a model outside the config is NOT_FOUND; draining turns readiness
  off).
- ServerMetadata, ModelMetadata: ``model_metadata``'s, the REST metadata's content.
- ModelConfig: Triton's model configuration extension, ``model_config``'s message, whose JSON
  the REST ``/config`` route answers.
- ModelInfer: the request bound to a signature by ``infer`` (``grpc_codec`` reads the wire),
  served, as Predict, from the completion-queue loop (``fast_methods``; grpcio's server when the
  loop is off): a run whose measured cost is microseconds runs on the loop thread (``RunCosts``,
  as Predict's), any other goes to the handler pool through ``SavedModelBundle.run``, which
  enqueues it on the signature's batcher when the model batches (so V2 gRPC, V2 REST and
  ``/v1`` requests share batches; a batched run computes every output and the answer keeps
  those asked for, TF Serving's rule), else runs only the outputs asked for. The response
  carries every answered output in ``raw_output_contents``.

- RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload: the model repository extension
  (``model_repository``), a load or unload bounded by the call's deadline as
  HandleReloadConfigRequest is (``reload_timeout``); they count nothing either.

Triton's other methods (streaming, shared memory, statistics, ...) are not registered: gRPC
answers them UNIMPLEMENTED.

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
run records ``runtime_latency`` with API ``ModelInfer``, as the REST V2 route does. The health,
metadata and configuration methods count nothing, as PredictionService's GetModelMetadata.

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
from tfsfast.server.grpc.fast_unary import Answer, grpcio_handler
from tfsfast.server.grpc.model_service_impl import reload_timeout
from tfsfast.server.grpc.prediction_service_impl import (
    INLINE_MAX_REQUEST_BYTES,
    RunCosts,
    recorded_answer,
    timeout_in_ms,
)
from tfsfast.server.predict.predict_route import INT64_MAX
from tfsfast.server.predict.predict_signatures import SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2 import grpc_codec, infer, model_config, model_metadata
from tfsfast.server.v2.grpc_protocol import SERVICE_NAME, message_class
from tfsfast.server.v2.infer_fast_path import InferFastPath
from tfsfast.server.v2.model_repository import ModelRepository, check_repository_name
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCostPolicy
from tfsfast.util.status import Code, ServingError

__all__ = ["INFER_API", "SERVICE_NAME", "GrpcInferenceServiceImpl"]

# The metric label of ModelInfer's requests and runs: the protocol's RPC.
INFER_API = "ModelInfer"
_RECORDER = serving_metrics.RequestRecorder("GRPC")
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
                 enforce_signature_method_name: bool = False,
                 repository: ModelRepository | None = None,
                 run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY) -> None:
        self._core = core
        # Which runs stay on the completion-queue loop's thread, measured per signature as
        # Predict's are.
        self._run_costs = RunCosts(run_cost_policy)
        self._repository = repository if repository is not None else ModelRepository(core)
        self._health = health
        self._max_message_bytes = max_message_bytes
        self._limits = codec_limits
        self._signatures = SignatureCache(enforce_signature_method_name)
        self._enforce_method_name = enforce_signature_method_name
        self._decode = grpc_codec.ContentsDecoder()

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, method: Callable[[bytes, grpc.ServicerContext], Any]
              ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """``method`` (request bytes in, response message out) as a grpcio handler of raw bytes,
        so that both sizes are checked against the limit (see the module docstring)."""
        return grpcio_handler(lambda data, context: _serialized(method(data, context)),
                              self._max_message_bytes)

    def _methods(self) -> dict[str, Callable[[bytes, grpc.ServicerContext], Any]]:
        return {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelConfig": self.model_config,
            "ModelInfer": self.model_infer,
            "RepositoryIndex": self.repository_index,
            "RepositoryModelLoad": self.repository_model_load,
            "RepositoryModelUnload": self.repository_model_unload,
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

    def model_config(self, data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse("ModelConfigRequest", data)
        config = model_config.served_model_config(self._core, self._signatures, request.name,
                                                  model_version(request.version))
        return message_class("ModelConfigResponse")(config=config)

    # --- model repository --------------------------------------------------------------------

    def repository_index(self, data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse("RepositoryIndexRequest", data)
        check_repository_name(request.repository_name)
        index_class = message_class("RepositoryIndexResponse")
        return index_class(models=[
            index_class.ModelIndex(name=e.name, version=e.version, state=e.state,
                                   reason=e.reason)
            for e in self._repository.index(request.ready)])

    def repository_model_load(self, data: bytes, context: grpc.ServicerContext) -> Any:
        return self._repository_edit("RepositoryModelLoad", self._repository.load, data,
                                     context)

    def repository_model_unload(self, data: bytes, context: grpc.ServicerContext) -> Any:
        return self._repository_edit("RepositoryModelUnload", self._repository.unload, data,
                                     context)

    @staticmethod
    def _repository_edit(method: str, edit: Callable[[str, dict[str, Any], float | None], None],
                         data: bytes, context: grpc.ServicerContext) -> Any:
        """A load or unload: ``<method>Request`` in, ``edit`` applied, ``<method>Response``."""
        request = _parse(f"{method}Request", data)
        check_repository_name(request.repository_name)
        edit(request.model_name, _parameters(request.parameters), reload_timeout(context))
        return message_class(f"{method}Response")()

    # --- inference ---------------------------------------------------------------------------

    def fast_methods(self) -> dict[str, tuple[Callable[[bytes, Any], Answer], bool]]:
        """ModelInfer for ``fast_unary.FastUnaryMethods`` (full name -> (handler, inline)), as
        PredictionService's Predict: it starts on the completion-queue loop's thread, in the
        ``InferFastPath`` before ``model_infer_answer``, and hands a run that is not cheap, or
        that batches, to the pool."""
        fast_path = InferFastPath(self._core.manager.handle_table.find, self._run_costs,
                                  self.model_infer_answer, self._enforce_method_name,
                                  INLINE_MAX_REQUEST_BYTES, self._limits)
        return {f"/{SERVICE_NAME}/ModelInfer": (fast_path, True)}

    def model_infer(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """ModelInfer, answered on the calling thread (grpcio's handler)."""
        answer = self.model_infer_answer(data, context)
        return answer if isinstance(answer, bytes) else answer()

    def model_infer_answer(self, data: bytes, context: grpc.ServicerContext) -> Answer:
        """ModelInfer up to the model run; then the response, when the run is cheap enough for
        the calling thread (``RunCosts.runs_inline``, and a request of at most
        ``INLINE_MAX_REQUEST_BYTES``, as Predict's), else a continuation that runs the model and
        returns the response (it holds the servable handle until the run is over). Counted (see
        the module docstring)."""
        start = _RECORDER.start()
        # An expired deadline is refused before the request is read, and not counted, as
        # Predict's.
        timeout = timeout_in_ms(context)
        name = ""
        try:
            request = _parse("ModelInferRequest", data)
            name = request.model_name
            answer = self._infer_answer(request, len(data) <= INLINE_MAX_REQUEST_BYTES, context,
                                        timeout)
        except Exception as e:
            _RECORDER.error(name, e.code if isinstance(e, ServingError) else Code.INTERNAL)
            raise
        if isinstance(answer, bytes):
            _RECORDER.ok(name, INFER_API, start)
            return answer
        return recorded_answer(answer, name, INFER_API, start)

    def _infer_answer(self, request: Any, inline: bool, context: grpc.ServicerContext,
                      timeout: int) -> Answer:
        name = request.model_name
        version = model_version(request.model_version)
        parsed = grpc_codec.parse_infer_request(request)
        handle = self._core.get_servable_handle(name, version, None)
        try:
            bundle: SavedModelBundle = handle.servable
            signatures = self._signatures.of(bundle, handle.id)
            signature = signatures.get(infer.signature_name(parsed))
            inputs = infer.bind_inputs(signature.signature, parsed.inputs, self._decode,
                                       self._limits)
            aliases = infer.requested_aliases(signature.signature, parsed.outputs)
            # Batched runs compute every output: a subset would not join the batch.
            run_aliases = None if signatures.batching is not None else aliases
            servable_id = handle.id
            key = signature.key
            costs = self._run_costs
            outputs = None
            if inline and costs.runs_inline(bundle, servable_id, key):
                run_start = time.monotonic_ns()
                outputs = costs.run(bundle, servable_id, key, inputs, run_aliases, timeout)
        except BaseException:
            handle.release()
            raise

        def respond(outputs: dict[str, Any]) -> bytes:
            answer = infer.response_outputs(signature.signature, outputs, aliases)
            return grpc_codec.infer_response(name, str(servable_id.version), request.id,
                                             answer).SerializeToString()

        if outputs is not None:
            handle.release()
            _record_runtime(name, run_start)
            return respond(outputs)

        def run() -> bytes:
            try:  # the time spent waiting for a pool thread counts against the deadline
                run_start = time.monotonic_ns()
                outputs = costs.run(bundle, servable_id, key, inputs, run_aliases,
                                    timeout_in_ms(context))
                _record_runtime(name, run_start)
            finally:
                handle.release()
            return respond(outputs)

        return run


def _record_runtime(model_name: str, start: int) -> None:
    """TF Serving's RecordRuntimeLatency of a successful run begun at ``start``
    (``time.monotonic_ns``), under the protocol's RPC name."""
    serving_metrics.record_runtime_latency(model_name, INFER_API, "TF1",
                                           (time.monotonic_ns() - start) // 1000)


def _parameters(parameters: Any) -> dict[str, Any]:
    """A repository request's ``ModelRepositoryParameter`` map as Python values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "bool_param")
            for key, value in parameters.items()}


def _serialized(response: Any) -> bytes:
    """A method's response as bytes (ModelInfer's already is)."""
    return response if type(response) is bytes else response.SerializeToString()


def _parse(name: str, data: bytes) -> Any:
    """Message ``inference.<name>`` from ``data``; INVALID_ARGUMENT when it does not parse."""
    return grpc_status_util.parse_request(message_class(name), data)
