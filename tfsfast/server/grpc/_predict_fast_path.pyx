# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled gRPC Predict fast path; the same contract as ``_predict_fast_path_py`` (its twin).

What differs is only how: typed caches and the run's clock read in C. The request is read by the
TensorProto codec (``decode_predict_request``, tensors kept as views), the tensors, the
response, the handle table, the signature checks, the run and its ``RunCost`` are the same code
the twin and ``predict_answer`` call, so all three answer with the same bytes.
"""

import math

from cpython.bytes cimport PyBytes_GET_SIZE

from tfsfast.server.grpc._clock cimport perf_counter

from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.core.handle_table import LATEST as _LATEST_POLICY
from tfsfast.servables import predict_util

cdef object LATEST = _LATEST_POLICY
cdef Py_ssize_t _MAX_MODELS = 64
cdef object _decode_request = tensor_proto.decode_predict_request
cdef object _encode_response = tensor_proto.encode_predict_response
cdef object _resolve_output_filter = predict_util.resolve_output_filter
cdef object _get_predict_signature = predict_util.get_predict_signature
cdef object _ceil = math.ceil

cdef class _Signature:
    """One signature as resolved for a signature name sent (see the twin)."""
    cdef readonly object signature
    cdef readonly str key
    cdef readonly object inputs
    cdef readonly bint defaults
    cdef readonly list order
    cdef readonly object cost
    cdef object _allows
    cdef object _add

    def __cinit__(self, signature, cost):
        self.signature = signature
        self.key = signature.key
        self.inputs = signature.inputs
        self.defaults = bool(signature.defaults)
        self.order = list(signature.outputs)
        self.cost = cost
        self._allows = cost.allows
        self._add = cost.add


cdef class _Model:
    """What the fast path keeps about one bundle: its signatures, resolved."""
    cdef readonly object bundle
    cdef readonly object servable_id
    cdef readonly object version
    cdef object run
    cdef dict signatures

    def __cinit__(self, bundle, servable_id):
        self.bundle = bundle
        self.servable_id = servable_id
        self.version = servable_id.version
        self.run = bundle.run
        self.signatures = {}


cdef class PredictFastPath:
    """The Predict fast path in front of ``predict_answer``; see ``_predict_fast_path_py``."""
    cdef object _find
    cdef object _label_version
    cdef object _costs
    cdef object _fallback
    cdef bint _enforce
    cdef bint _tensor_content
    cdef Py_ssize_t _max_inline_bytes
    cdef object _decode_tensor  # the service's TensorProtoCodec's, bound once
    cdef dict _models

    def __init__(self, find, label_version, costs, fallback, bint enforce_method_name=False,
                 bint tensor_content=False, Py_ssize_t max_inline_bytes=64 << 10,
                 tensors=None):
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
        self._models = {}

    def __call__(self, data, context):
        """The answer ``predict_answer`` gives: the response bytes, or its continuation."""
        answer = self.answer(data, context)
        return answer if answer is not None else self._fallback(data, context)

    cpdef object answer(self, object data, object context):
        """The response, or None: hand the request to ``predict_answer``."""
        cdef _Model model
        cdef _Signature signature
        cdef double remaining, start
        cdef long long timeout
        cdef list budget
        cdef dict tensors
        if type(data) is not bytes or PyBytes_GET_SIZE(data) > self._max_inline_bytes:
            return None
        left = context.time_remaining()
        if left is None:
            timeout = 0
        else:
            remaining = left
            if remaining <= 0:
                return None  # predict_answer's DEADLINE_EXCEEDED
            timeout = max(1, <long long>_ceil(remaining * 1000.0))
        try:
            request = _decode_request(data)
        except Exception:
            return None
        name = request.model_name
        if not request.has_model_spec or not name:
            return None
        version = request.version
        if request.version_label is not None:
            try:
                version = self._label_version(name, request.version_label)
            except Exception:
                return None
        entry = self._find(name, version, LATEST)
        if entry is None:
            return None
        bundle = entry.servable
        if getattr(bundle, "batching_session", None) is not None:
            return None
        model = self._model(bundle, entry)
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
        budget = [0]
        tensors = {}
        try:
            if request.output_filter:
                aliases = _resolve_output_filter(signature.signature, request.output_filter)
                order = aliases
            for alias, tensor in (<dict>inputs).items():
                tensors[alias] = self._decode_tensor(tensor, alias, budget)
        except Exception:
            return None
        if not signature._allows():
            return None
        # RunCost.timed, with the clock read in C: its time is added when the run returns.
        start = perf_counter()
        outputs = model.run(signature.key, tensors, aliases, timeout)
        signature._add(perf_counter() - start)
        return _encode_response(name, signature.key, model.version,
                                [(a, outputs[a]) for a in order], self._tensor_content)

    cdef _Model _model(self, object bundle, object entry):
        # Keyed by id: the cache holds the bundle, so its id is not reused while cached (and a
        # servable need not be hashable).
        cdef object key = id(bundle)
        cdef _Model model = self._models.get(key)
        if model is None or model.bundle is not bundle:
            if not (hasattr(bundle, "run") and hasattr(bundle, "signatures")):
                return None  # not a SavedModelBundle: predict_answer says what it gets
            if len(self._models) >= _MAX_MODELS:
                self._models.clear()
            model = _Model(bundle, entry.id)
            self._models[key] = model
        return model

    cdef _Signature _signature(self, _Model model, str signature_name):
        cdef _Signature found = model.signatures.get(signature_name)
        if found is None:
            try:
                signature = _get_predict_signature(model.bundle, signature_name, self._enforce)
            except Exception:
                return None
            found = _Signature(signature, self._costs.cost(model.servable_id, signature.key))
            model.signatures[signature_name] = found
        return found
