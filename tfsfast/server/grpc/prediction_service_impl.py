"""``tensorflow.serving.PredictionService``: TF Serving's ``prediction_service_impl.cc``.

Every method takes the request's raw bytes and returns the response's bytes:

* Predict is read and written at the wire level by ``codecs.tensor_proto`` (tensors are views
  over the request; outputs are copied once, into the response), so no protobuf objects are
  built on the hot path. It composes the steps of ``tfsfast.server.predict`` (the signature and
  the input checks are ``predict_signatures``'), as the fast path does. TF Serving's order of
  checks: ``Missing ModelSpec``; the servable
  (NOT_FOUND ``Servable not found for request: ...``); the signature (FAILED_PRECONDITION
  ``Serving signature key "s" not found.``); the method name (only with
  ``--enable_signature_method_name_check``); the input count (skipped when the signature has
  defaults) and aliases; each tensor (``tensor parsing error: a``); ``output_filter``. The
  response's ``model_spec`` carries the *resolved* signature name and the version that ran.
* Classify/Regress/MultiInference parse the request with its tf.Examples kept as bytes (see
  ``servables.serialized_input``) and run ``servables.classifier`` / ``regressor`` /
  ``multi_inference``.
* GetModelMetadata runs ``server.get_model_metadata_impl``.

Metrics, where TF Serving's ``prediction_service_impl.cc`` records them: Predict, Classify and
Regress each count ``request_count{model_name, status}`` once (the name from the request's
``model_spec``, "" when the request has none or does not parse) and, when OK,
``request_latency{model_name, API="Predict"|"Classify"|"Regress", entrypoint="GRPC"}`` from
the call to the answer (a continuation's end included); a request whose deadline passed before
it was read is not counted (in TF Serving, gRPC refuses it before the service). The fast path
counts what it answers itself; GetModelMetadata and MultiInference count nothing, as in TF
Serving. A successful run records ``runtime_latency{model_name, API, "TF1"}`` (µs), and
Classify, Regress and MultiInference ``request_example_counts`` and
``request_example_count_total``.

Around every method: a request larger than ``max_message_bytes`` is RESOURCE_EXHAUSTED naming
``--grpc_max_message_bytes``, and so is a response that would be; a request whose deadline has
already passed is DEADLINE_EXCEEDED without running, otherwise the time left becomes the run's
``timeout_in_ms``. Handlers are synchronous. Served from ``fast_unary``'s loop (see
``grpc_server``), Predict starts on the loop thread and runs the model there when its measured
cost allows (``RunCosts``), else returns a continuation for the handler pool; the other methods
run in the pool. The model runs with the GIL released by the runtime. The common Predict is
answered by ``predict_fast_path`` in front of ``predict_answer``, with the same bytes; it hands
everything else (every error but the run's, batching, runs for the pool) to ``predict_answer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.monitoring import serving_metrics
from tfsfast.servables import classifier, predict_util, regressor
from tfsfast.servables.multi_inference import InferenceTask, run_multi_inference
from tfsfast.servables.serialized_input import serialized_request_class
from tfsfast.server.get_model_metadata_impl import get_model_metadata
from tfsfast.server.grpc import grpc_status_util, predict_fast_path
from tfsfast.server.grpc.deadline import DEADLINE_PASSED, run_timeout_ms
from tfsfast.server.grpc.fast_unary import Answer, grpcio_handler
from tfsfast.server.grpc.model_spec_util import (
    get_servable_handle,
    get_servable_handle_for_spec,
    version_choice,
)
from tfsfast.server.predict.predict_signatures import SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.util.run_cost import DEFAULT_RUN_COST_POLICY, RunCost, RunCostPolicy
from tfsfast.util.status import Code, ServingError

SERVICE_NAME = "tensorflow.serving.PredictionService"


# Larger Predict requests always run in the pool, whatever their signature's measured cost: a
# big batch can take far longer than the small ones that made the average.
INLINE_MAX_REQUEST_BYTES = 64 << 10

# request_count and request_latency of the gRPC API (the fast path records through its own).
_RECORDER = serving_metrics.RequestRecorder("GRPC")


@dataclass(frozen=True)
class PredictionServiceOptions:
    enforce_signature_method_name: bool = False
    # --enable_serialization_as_tensor_content: Predict outputs as tensor_content bytes.
    serialize_as_tensor_content: bool = False
    max_message_bytes: int = 64 << 20
    # What one Predict may make the TensorProto codec build.
    codec_limits: CodecLimits = DEFAULT_CODEC_LIMITS
    # Which Predict runs stay on the completion-queue loop's thread (RunCosts).
    run_cost_policy: RunCostPolicy = DEFAULT_RUN_COST_POLICY


def missing_model_spec() -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")


def timeout_in_ms(context: grpc.ServicerContext) -> int:
    """The run timeout from the client's deadline (0: none); DEADLINE_EXCEEDED if it passed."""
    timeout = run_timeout_ms(context.time_remaining())
    if timeout == DEADLINE_PASSED:
        raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
    return timeout


def _record_runtime(model_name: str, api: str, start: int) -> None:
    """TF Serving's RecordRuntimeLatency of a successful run begun at ``start``
    (``time.monotonic_ns``)."""
    serving_metrics.record_runtime_latency(model_name, api, "TF1",
                                           (time.monotonic_ns() - start) // 1000)


def recorded_answer(run: Callable[[], bytes], name: str, api: str, start: int
              ) -> Callable[[], bytes]:
    """The continuation ``run``, counted when it ends (see the module docstring)."""

    def recorded() -> bytes:
        try:
            response = run()
        except Exception as e:
            _RECORDER.error(name, e.code if isinstance(e, ServingError) else Code.INTERNAL)
            raise
        _RECORDER.ok(name, api, start)
        return response

    return recorded


class RunCosts:
    """Which Predict runs may happen on the completion-queue loop's own thread.

    A run does when its servable has no batching session (a batched run waits for its batch)
    and the estimated cost of its runs, per (servable version, signature), is below ``policy``'s
    ``inline_run_max_seconds`` (the server's one policy, which the REST loop follows too):
    handing a ~10 µs run to a pool thread and back costs several times the run. A signature not
    measured yet runs in the pool.

    The estimate per entry is a ``RunCost`` (a faster run counts at once, a slower one a little,
    an isolated spike not at all: a run's wall time on a shared machine also holds preemptions
    and, in the pool, the wait for the GIL the loop holds). Entries are dropped wholesale past
    ``MAX_ENTRIES`` (versions come and go with reloads). Updated without a lock from several
    threads: a lost update only delays the estimate.
    """

    MAX_ENTRIES = 1024

    def __init__(self, policy: RunCostPolicy) -> None:
        self._policy = policy
        self._costs: dict[tuple[Any, str], RunCost] = {}

    def runs_inline(self, bundle: Any, servable_id: Any, key: str) -> bool:
        cost = self._costs.get((servable_id, key))
        return (cost is not None and getattr(bundle, "batching_session", None) is None
                and cost.allows())

    def cost(self, servable_id: Any, key: str) -> RunCost:
        """The entry of (servable version, signature), made if there is none (the fast path
        keeps it with the signature it resolved)."""
        costs = self._costs
        cost = costs.get((servable_id, key))
        if cost is None:
            if len(costs) >= self.MAX_ENTRIES:
                costs.clear()
            cost = costs.setdefault((servable_id, key), RunCost(self._policy))
        return cost

    def run(self, bundle: Any, servable_id: Any, key: str, inputs: dict[str, Any],
            aliases: list[str] | None, timeout: int) -> dict[str, Any]:
        """``bundle.run``, measured."""
        return self.cost(servable_id, key).timed(bundle.run, key, inputs, aliases, timeout)


class PredictionServiceImpl:
    """The service's handlers; thread-safe (besides the core and the options, only caches whose
    races build equal entries)."""

    def __init__(self, core: ServerCore, options: PredictionServiceOptions | None = None
                 ) -> None:
        from tensorflow_serving.apis import (
            classification_pb2,
            get_model_metadata_pb2,
            regression_pb2,
        )

        self._core = core
        self._options = options or PredictionServiceOptions()
        self._single_request = serialized_request_class("single")
        self._multi_request = serialized_request_class("multi")
        self._classification_response = classification_pb2.ClassificationResponse
        self._regression_response = regression_pb2.RegressionResponse
        self._metadata_request = get_model_metadata_pb2.GetModelMetadataRequest
        options = self._options
        self._run_costs = RunCosts(options.run_cost_policy)
        self._tensors = tensor_proto.TensorProtoCodec(options.codec_limits)
        # Predict's signatures, resolved once per servable (the fast path keeps its own).
        self._signatures = SignatureCache(options.enforce_signature_method_name)
        # The common Predict, answered without predict_answer's per-request objects (it hands
        # everything else to predict_answer).
        self._predict_fast = predict_fast_path.PredictFastPath(
            core.manager.handle_table.find, core.get_model_version_for_label, self._run_costs,
            self.predict_answer, options.enforce_signature_method_name,
            options.serialize_as_tensor_content, INLINE_MAX_REQUEST_BYTES, self._tensors)

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, method: Callable[[bytes, grpc.ServicerContext], Answer], name: str
              ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """``method`` as a grpcio handler (the path when the completion-queue loop is off)."""
        handler = grpcio_handler(method, self._options.max_message_bytes)
        handler.__name__ = name
        return handler

    def _methods(self) -> dict[str, tuple[Callable[[bytes, Any], Answer], bool]]:
        return {
            "Predict": (self._predict_fast, True),
            "Classify": (self.classify, False),
            "Regress": (self.regress, False),
            "MultiInference": (self.multi_inference, False),
            "GetModelMetadata": (self.get_model_metadata, False),
        }

    def fast_methods(self) -> dict[str, tuple[Callable[[bytes, Any], Answer], bool]]:
        """The methods for ``fast_unary.FastUnaryMethods``: full name -> (handler, inline).
        Predict starts on the loop thread (it hands slow runs over itself); the others run
        their blocking work in the pool from the start."""
        return {f"/{SERVICE_NAME}/{name}": entry for name, entry in self._methods().items()}

    def handler(self) -> grpc.GenericRpcHandler:
        # Raw bytes in and out: each method parses and writes its own messages.
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            name: grpc.unary_unary_rpc_method_handler(self._call(method, name))
            for name, (method, _) in self._methods().items()})

    # --- Predict -------------------------------------------------------------------------------

    def predict(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """Predict, answered on the calling thread."""
        answer = self._predict_fast(data, context)
        return answer if type(answer) is bytes else answer()

    def predict_answer(self, data: bytes, context: grpc.ServicerContext) -> Answer:
        """Predict up to the model run; then the response, when the run is cheap enough for the
        calling thread (``RunCosts.runs_inline``), else a continuation that runs the model and
        returns the response (it holds the servable handle until the run is over). Counted
        (see the module docstring)."""
        start = _RECORDER.start()
        # An expired deadline is refused before the request is read, and not counted: TF
        # Serving's handler never sees one (gRPC itself refuses it).
        timeout = timeout_in_ms(context)
        name = ""
        try:
            request = tensor_proto.decode_predict_request(data)
            name = request.model_name if request.has_model_spec else ""
            answer = self._predict_answer(request, data, context, timeout)
        except Exception as e:
            _RECORDER.error(name, e.code if isinstance(e, ServingError) else Code.INTERNAL)
            raise
        if isinstance(answer, bytes):
            _RECORDER.ok(name, "Predict", start)
            return answer
        return recorded_answer(answer, name, "Predict", start)

    def _predict_answer(self, request: Any, data: bytes, context: grpc.ServicerContext,
                        timeout: int) -> Answer:
        options = self._options
        if not request.has_model_spec:
            raise missing_model_spec()
        handle = get_servable_handle(self._core, request.model_name, request.version,
                                     request.version_label)
        try:
            servable_id = handle.id
            bundle = handle.servable
            signature = self._signatures.of(bundle, servable_id).get(request.signature_name)
            inputs = signature.decode_inputs(request.inputs, self._tensors.decode_tensor)
            aliases = signature.output_aliases(request.output_filter)
        except BaseException:
            handle.release()
            raise
        key = signature.key
        order = signature.order if aliases is None else aliases
        costs = self._run_costs

        def respond(outputs: dict[str, Any]) -> bytes:
            return tensor_proto.encode_predict_response(
                request.model_name, key, servable_id.version, [(a, outputs[a]) for a in order],
                options.serialize_as_tensor_content)

        name = request.model_name
        if len(data) <= INLINE_MAX_REQUEST_BYTES and costs.runs_inline(bundle, servable_id, key):
            try:
                run_start = time.monotonic_ns()
                outputs = costs.run(bundle, servable_id, key, inputs, aliases, timeout)
                _record_runtime(name, "Predict", run_start)
            finally:
                handle.release()
            return respond(outputs)

        def run() -> bytes:
            try:  # the time spent waiting for a pool thread counts against the deadline
                run_start = time.monotonic_ns()
                outputs = costs.run(bundle, servable_id, key, inputs, aliases,
                                    timeout_in_ms(context))
                _record_runtime(name, "Predict", run_start)
            finally:
                handle.release()
            return respond(outputs)

        return run

    # --- Classify / Regress / MultiInference -------------------------------------------------

    def _single(self, data: bytes, context: grpc.ServicerContext, response: Any,
                run: Callable[..., Any], api: str) -> bytes:
        start = _RECORDER.start()
        timeout = timeout_in_ms(context)  # before the request is read (see predict_answer)
        name = ""
        try:
            request = grpc_status_util.parse_request(self._single_request, data)
            name = request.model_spec.name
            answer = self._run_single(request, timeout, response, run, api)
        except Exception as e:
            _RECORDER.error(name, e.code if isinstance(e, ServingError) else Code.INTERNAL)
            raise
        _RECORDER.ok(name, api, start)
        return answer

    def _run_single(self, request: Any, timeout: int, response: Any,
                    run: Callable[..., Any], api: str) -> bytes:
        if not request.HasField("model_spec"):
            raise missing_model_spec()
        spec = request.model_spec
        with get_servable_handle_for_spec(self._core, spec) as handle:
            run_start = time.monotonic_ns()
            result = run(handle.servable, spec.signature_name, request.input,
                         enforce_method_name=self._options.enforce_signature_method_name,
                         timeout_in_ms=timeout)
            _record_runtime(spec.name, api, run_start)
            version = handle.id.version
        # TF Serving's RecordRequestExampleCount, after a successful run: one result each.
        serving_metrics.record_request_example_count(
            spec.name, len(result.classifications if hasattr(result, "classifications")
                           else result.regressions))
        response.model_spec.name = spec.name
        response.model_spec.signature_name = predict_util.resolve_signature_name(
            spec.signature_name)
        response.model_spec.version.value = version
        response.result.CopyFrom(result)
        return response.SerializeToString()

    def classify(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        return self._single(data, context, self._classification_response(),
                            classifier.run_classify, "Classify")

    def regress(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        return self._single(data, context, self._regression_response(), regressor.run_regress,
                            "Regress")

    def multi_inference(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        timeout = timeout_in_ms(context)
        request = grpc_status_util.parse_request(self._multi_request, data)
        # TF Serving resolves the servable from the first task's spec (an empty one if none).
        spec = request.tasks[0].model_spec if len(request.tasks) else None
        version, label = version_choice(spec) if spec is not None else (None, None)
        tasks = [InferenceTask(t.model_spec.name, t.model_spec.signature_name, t.method_name)
                 for t in request.tasks]
        with get_servable_handle(self._core, spec.name if spec is not None else "", version,
                                 label) as handle:
            response = run_multi_inference(
                handle.servable, tasks, request.input, servable_version=handle.id.version,
                enforce_method_name=self._options.enforce_signature_method_name,
                timeout_in_ms=timeout)
        if len(response.results):
            first = response.results[0]
            result = (first.classification_result if first.HasField("classification_result")
                      else first.regression_result)
            serving_metrics.record_request_example_count(
                spec.name if spec is not None else "",
                len(result.classifications if first.HasField("classification_result")
                    else result.regressions))
        return response.SerializeToString()

    # --- GetModelMetadata ------------------------------------------------------------------------

    def get_model_metadata(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        request = grpc_status_util.parse_request(self._metadata_request, data)
        if not request.HasField("model_spec"):
            raise missing_model_spec()
        version, label = version_choice(request.model_spec)
        return get_model_metadata(self._core, request.model_spec.name, version, label,
                                  list(request.metadata_field)).SerializeToString()
