"""The gRPC Predict fast path: one source, compiled twice.

``_predict_fast_path.pxd`` declares the C types with which Cython compiles this file into
``tfsfast.server.grpc._predict_fast_path``: there the signature step, the ``RunCost``, the request
counts and the clock are the compiled modules' (``_predict_signatures``, ``_run_cost``,
``_request_counts``), called in C; this file as it is uses their Python twins.

``PredictFastPath.answer`` serves the request shape that dominates gRPC Predict traffic, a
PredictRequest naming a model (optionally a version or a label, a signature, an output filter)
with its inputs as TensorProtos, for a model whose runs take microseconds, without
``PredictionServiceImpl.predict_answer``'s per-request ServableRequest, ServableHandle,
signature resolution and closures. It composes ``predict_answer``'s steps
(``tfsfast.server.predict``): the codec decodes the request, the servable comes from the handle
table instead of a ServableHandle, the signature from a ``predict_signatures.SignatureCache``
(``predict_answer``'s ``BundleSignatures``, kept per servable), whose ``PredictSignature``
checks and decodes the inputs and the output filter; the run is measured by the signature's
``RunCost`` and the codec encodes the response. It returns the response bytes, byte for byte what
``predict_answer`` returns, or None, and then the caller hands the request to ``predict_answer``
unchanged (calling the instance does both). So every status other than those of the run itself
comes from ``predict_answer``.

Taken here (everything else returns None):

* a request of at most ``max_inline_bytes`` (larger ones always run in the pool) whose deadline,
  if any, has not passed;
* a ``model_spec`` with a name, which the codec reads (``decode_predict_request``);
* a version in the manager's handle table (a label resolved by ``label_version``, which raises
  for an unknown one); a servable that has ``run`` and ``signatures`` and no batching session
  (batched runs go through ``predict_answer`` and the batching session as before);
* a signature that resolves (cached per bundle and signature name as sent), inputs that match it
  (count unless it has defaults, aliases) and that the service's codec (``tensors``, a
  ``TensorProtoCodec`` with the service's limits) decodes, an output filter it accepts;
* and the signature's ``RunCost`` (the one ``RunCosts`` keeps for the servable version and
  signature, shared with ``predict_answer``) allowing the run on this thread. A run that does
  not may be slow: ``predict_answer`` redoes the request and returns its continuation for the
  pool.

Before the run nothing has side effects (the cost's ``allows`` is asked last and only once per
request), so any failure up to there returns None and ``predict_answer`` redoes the request and
says what was wrong. Once the model has run, its errors and those of encoding the response
propagate, as they do out of ``predict_answer``.

The handle-table entry is held until the run is over, as ``predict_answer`` holds its handle.

Metrics: a request answered here is counted as ``predict_answer`` counts its own, TF Serving's
``request_count`` once by model and status and, when OK, the ``request_latency`` (API
``Predict``, entrypoint ``GRPC``) from the call, and the run's ``runtime_latency``, in this
instance's ``request_counts.RequestCounts``; one handed to ``predict_answer`` is its to count
(a failed run is counted here, with its status, or INTERNAL for another exception, and
propagates).

Thread-safety: the per-bundle caches are not locked; concurrent misses build equal entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.core.handle_table import LATEST

# The twins under the compiled modules' names: compiled, the .pxd cimports the compiled modules.
from tfsfast.monitoring import _request_counts_py as _request_counts
from tfsfast.server.grpc.deadline import DEADLINE_PASSED, run_timeout_ms
from tfsfast.server.predict import _predict_signatures_py as _predict_signatures
from tfsfast.util.status import Code, ServingError

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]


class PredictFastPath:
    """The Predict fast path in front of ``predict_answer`` (see the module docstring).

    ``find``: the manager's handle-table lookup; ``label_version(name, label)``: the version a
    label points at (ServingError when unknown); ``costs``: the service's ``RunCosts`` (whose
    policy decides which runs happen here); ``fallback``: ``predict_answer``;
    ``enforce_method_name`` and ``tensor_content``: the service's options; ``tensors``: the
    service's ``TensorProtoCodec`` (None: one with the default limits).
    """

    def __init__(self, find: Find, label_version: Callable[[str, str], int], costs: Any,
                 fallback: Callable[[bytes, Any], Any], enforce_method_name: bool = False,
                 tensor_content: bool = False, max_inline_bytes: int = 64 << 10,
                 tensors: Any = None) -> None:
        self._find = find
        self._label_version = label_version
        self._costs = costs
        self._fallback = fallback
        self._tensor_content = tensor_content
        self._max_inline_bytes = max_inline_bytes
        if tensors is None:
            tensors = tensor_proto.TensorProtoCodec(DEFAULT_CODEC_LIMITS)
        self._decode_tensor = tensors.decode_tensor
        self._signatures = _predict_signatures.SignatureCache(enforce_method_name)
        self._counts = _request_counts.RequestCounts("GRPC")
        # The model of the last OK answer, and its counts.
        self._last_name: str | None = None
        self._last_ok: Any = None
        self._last_runtime: Any = None

    def __call__(self, data: bytes, context: Any) -> Any:
        """The answer ``predict_answer`` gives: the response bytes, or its continuation."""
        answer = self._answer(data, context, _request_counts.now_ns())
        return answer if answer is not None else self._fallback(data, context)

    def answer(self, data: bytes, context: Any) -> bytes | None:
        """The response, or None: hand the request to ``predict_answer``."""
        return self._answer(data, context, _request_counts.now_ns())

    def _answer(self, data: bytes, context: Any, begun: int) -> bytes | None:
        if type(data) is not bytes or len(data) > self._max_inline_bytes:
            return None
        timeout = run_timeout_ms(context.time_remaining())
        if timeout == DEADLINE_PASSED:
            return None  # predict_answer's DEADLINE_EXCEEDED
        try:
            request = tensor_proto.decode_predict_request(data)
        except Exception:
            return None
        name = request.model_name
        if not request.has_model_spec or not name:
            return None
        version = request.version
        if request.version_label is not None:
            try:
                version = self._label_version(name, request.version_label)
            except ServingError:
                return None
        entry = self._find(name, version, LATEST)
        if entry is None:
            return None
        bundle = entry.servable
        if getattr(bundle, "batching_session", None) is not None:
            return None
        servable = self._signatures.of(bundle, entry.id)
        if servable.run is None:
            return None  # not a SavedModelBundle: predict_answer says what it gets
        try:
            signature = servable.get(request.signature_name)
            tensors = signature.decode_inputs(request.inputs, self._decode_tensor)
            aliases = signature.output_aliases(request.output_filter)
        except Exception:
            return None
        cost = signature.cost
        if cost is None:
            cost = signature.cost = self._costs.cost(servable.servable_id, signature.key)
        if not cost.allows():
            return None
        try:
            # RunCost.timed, on the requests' clock: the run's time is added when it returns.
            run_start = _request_counts.now_ns()
            outputs = servable.run(signature.key, tensors, aliases, timeout)
            run_ns = _request_counts.now_ns() - run_start
            cost.add(run_ns * 1e-9)
            order = signature.order if aliases is None else aliases
            response = tensor_proto.encode_predict_response(
                name, signature.key, servable.servable_id.version,
                [(a, outputs[a]) for a in order], self._tensor_content)
        except ServingError as e:
            self._counts.error(name, e.code)
            raise
        except Exception:
            self._counts.error(name, Code.INTERNAL)  # what the loop answers for it
            raise
        ok = self._last_ok
        if ok is None or name != self._last_name:
            ok = self._last_ok = self._counts.ok_counts(name, "Predict")
            self._last_runtime = self._counts.runtime_counts(name, "Predict")
            self._last_name = name
        self._last_runtime.record_elapsed(run_ns)
        ok.record(begun)
        return response
