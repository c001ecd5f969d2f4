"""Pure-Python gRPC Predict fast path: the reference twin of ``_predict_fast_path``.

``PredictFastPath.answer`` serves the request shape that dominates gRPC Predict traffic, a
PredictRequest naming a model (optionally a version or a label, a signature, an output filter)
with its inputs as TensorProtos, for a model whose runs take microseconds, without
``PredictionServiceImpl.predict_answer``'s per-request ServableRequest, ServableHandle,
signature resolution and closures. It returns the response bytes, byte for byte what
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
  (count unless it has defaults, aliases), an output filter it accepts, tensors the service's
  codec (``tensors``, a ``TensorProtoCodec`` with the service's limits) decodes;
* and the signature's ``RunCost`` (the one ``RunCosts`` keeps for the servable version and
  signature, shared with ``predict_answer``) allowing the run on this thread. A run that does
  not may be slow: ``predict_answer`` redoes the request and returns its continuation for the
  pool.

Before the run nothing has side effects (the cost's ``allows`` is asked last and only once per
request), so any failure up to there returns None and ``predict_answer`` redoes the request and
says what was wrong. Once the model has run, its errors and those of encoding the response
propagate, as they do out of ``predict_answer``.

The handle-table entry is held until the run is over, as ``predict_answer`` holds its handle.
Thread-safety: the per-bundle caches are not locked; concurrent misses build equal entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.core.handle_table import LATEST
from tfsfast.servables import predict_util
from tfsfast.util.status import ServingError

# Bounds the per-bundle cache; a server with more versions than this re-caches in turn.
_MAX_MODELS = 64

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]


class _Signature:
    """One signature as resolved for a signature name sent: what the checks and the run use."""

    __slots__ = ("cost", "defaults", "inputs", "key", "order", "signature")

    def __init__(self, signature: Any, cost: Any) -> None:
        self.signature = signature
        self.key = signature.key
        self.inputs = signature.inputs
        self.defaults = bool(signature.defaults)
        self.order = list(signature.outputs)
        self.cost = cost


class _Model:
    """What the fast path keeps about one bundle: its signatures, resolved."""

    __slots__ = ("bundle", "servable_id", "signatures")

    def __init__(self, bundle: Any, servable_id: Any) -> None:
        self.bundle = bundle
        self.servable_id = servable_id
        self.signatures: dict[str, _Signature] = {}


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
        self._enforce = enforce_method_name
        self._tensor_content = tensor_content
        self._max_inline_bytes = max_inline_bytes
        if tensors is None:
            tensors = tensor_proto.TensorProtoCodec(DEFAULT_CODEC_LIMITS)
        self._decode_tensor = tensors.decode_tensor
        self._models: dict[int, _Model] = {}

    def __call__(self, data: bytes, context: Any) -> Any:
        """The answer ``predict_answer`` gives: the response bytes, or its continuation."""
        answer = self.answer(data, context)
        return answer if answer is not None else self._fallback(data, context)

    def answer(self, data: bytes, context: Any) -> bytes | None:
        """The response, or None: hand the request to ``predict_answer``."""
        if type(data) is not bytes or len(data) > self._max_inline_bytes:
            return None
        remaining = context.time_remaining()
        if remaining is None:
            timeout = 0
        elif remaining <= 0:
            return None  # predict_answer's DEADLINE_EXCEEDED
        else:
            timeout = max(1, math.ceil(remaining * 1000.0))
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
        model = self._model(bundle, entry.id)
        if model is None:
            return None
        signature = self._signature(model, request.signature_name)
        if signature is None:
            return None
        inputs = request.inputs
        if len(inputs) != len(signature.inputs) and not signature.defaults:
            return None
        for alias in inputs:
            if alias not in signature.inputs:
                return None
        aliases = None
        order = signature.order
        try:
            if request.output_filter:
                aliases = predict_util.resolve_output_filter(signature.signature,
                                                             request.output_filter)
                if aliases is not None:  # always, for a filter that is not empty
                    order = aliases
            budget = [0]
            decode = self._decode_tensor
            tensors = {alias: decode(tensor, alias, budget) for alias, tensor in inputs.items()}
        except Exception:
            return None
        cost = signature.cost
        if not cost.allows():
            return None
        outputs = cost.timed(bundle.run, signature.key, tensors, aliases, timeout)
        return tensor_proto.encode_predict_response(
            name, signature.key, model.servable_id.version, [(a, outputs[a]) for a in order],
            self._tensor_content)

    def _model(self, bundle: Any, servable_id: Any) -> _Model | None:
        # Keyed by id: the cache holds the bundle, so its id is not reused while cached (and a
        # servable need not be hashable).
        key = id(bundle)
        model = self._models.get(key)
        if model is None or model.bundle is not bundle:
            if not (hasattr(bundle, "run") and hasattr(bundle, "signatures")):
                return None  # not a SavedModelBundle: predict_answer says what it gets
            if len(self._models) >= _MAX_MODELS:
                self._models.clear()
            model = _Model(bundle, servable_id)
            self._models[key] = model
        return model

    def _signature(self, model: _Model, signature_name: str) -> _Signature | None:
        found = model.signatures.get(signature_name)
        if found is None:
            try:
                signature = predict_util.get_predict_signature(model.bundle, signature_name,
                                                               self._enforce)
            except Exception:
                return None
            found = _Signature(signature, self._costs.cost(model.servable_id, signature.key))
            model.signatures[signature_name] = found
        return found
