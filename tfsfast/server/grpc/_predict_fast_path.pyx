# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled gRPC Predict fast path; the same contract as ``_predict_fast_path_py`` (its twin).

What differs is only how: the signature step is the compiled ``predict_signatures`` (its cache
and the input checks called in C), the signature's ``RunCost`` is called in C and the run's clock
read in C. The request is read by the TensorProto codec (``decode_predict_request``, tensors kept
as views); the tensors, the response, the handle table, the signature and input checks, the run
and its ``RunCost`` are the same code the twin and ``predict_answer`` call, so all three answer
with the same bytes.

Two implementations rather than one source compiled twice: this one calls the compiled
signatures, RunCost and codec through their C methods, which its twin reaches as Python
objects; the steps themselves are shared code, written once in ``tfsfast.server.predict``.

The counts (see the twin) go to a compiled ``RequestCounts``: an OK answer adds to a C counter
and a C histogram (``OkCounts.add``), with no Python call.
"""

import math

from cpython.bytes cimport PyBytes_GET_SIZE

from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts, monotonic_ns
from tfsfast.server.predict._predict_signatures cimport (
    BundleSignatures,
    PredictSignature,
    SignatureCache,
)
from tfsfast.util._run_cost cimport RunCost

from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.core.handle_table import LATEST as _LATEST_POLICY
from tfsfast.util.status import Code, ServingError

cdef object _ServingError = ServingError
cdef int _INTERNAL = Code.INTERNAL

cdef object LATEST = _LATEST_POLICY
cdef object _decode_request = tensor_proto.decode_predict_request
cdef object _encode_response = tensor_proto.encode_predict_response
cdef object _ceil = math.ceil


cdef class PredictFastPath:
    """The Predict fast path in front of ``predict_answer``; see ``_predict_fast_path_py``."""
    cdef object _find
    cdef object _label_version
    cdef object _costs
    cdef object _fallback
    cdef bint _tensor_content
    cdef Py_ssize_t _max_inline_bytes
    cdef object _decode_tensor  # the service's TensorProtoCodec's, bound once
    cdef SignatureCache _signatures
    cdef RequestCounts _counts
    cdef str _last_name  # the model of the last OK answer, and its counts
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime

    def __init__(self, find, label_version, costs, fallback, bint enforce_method_name=False,
                 bint tensor_content=False, Py_ssize_t max_inline_bytes=64 << 10,
                 tensors=None):
        self._find = find
        self._label_version = label_version
        self._costs = costs
        self._fallback = fallback
        self._tensor_content = tensor_content
        self._max_inline_bytes = max_inline_bytes
        if tensors is None:
            tensors = tensor_proto.TensorProtoCodec(DEFAULT_CODEC_LIMITS)
        self._decode_tensor = tensors.decode_tensor
        self._signatures = SignatureCache(enforce_method_name)
        self._counts = RequestCounts("GRPC")
        self._last_name = None
        self._last_ok = None
        self._last_runtime = None

    def __call__(self, data, context):
        """The answer ``predict_answer`` gives: the response bytes, or its continuation."""
        answer = self._answer(data, context, monotonic_ns())
        return answer if answer is not None else self._fallback(data, context)

    cpdef object answer(self, object data, object context):
        """The response, or None: hand the request to ``predict_answer``."""
        return self._answer(data, context, monotonic_ns())

    cdef object _answer(self, object data, object context, long long begun):
        cdef BundleSignatures servable
        cdef PredictSignature signature
        cdef RunCost cost
        cdef double remaining
        cdef long long timeout
        cdef list aliases
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
        servable = self._signatures.of(bundle, entry.id)
        if servable.run is None:
            return None  # not a SavedModelBundle: predict_answer says what it gets
        try:
            signature = servable.get(request.signature_name)
            tensors = signature.decode_inputs(request.inputs, self._decode_tensor)
            aliases = signature.output_aliases(request.output_filter)
        except Exception:
            return None
        if signature.cost is None:
            signature.cost = self._costs.cost(servable.servable_id, signature.key)
        cost = <RunCost>signature.cost
        if not cost.allows():
            return None
        # RunCost.timed, with the clock read in C: its time is added when the run returns.
        cdef long long run_start, run_ns = 0
        try:
            run_start = monotonic_ns()
            outputs = servable.run(signature.key, tensors, aliases, timeout)
            run_ns = monotonic_ns() - run_start
            cost.add(run_ns * 1e-9)
            response = _encode_response(name, signature.key, servable.servable_id.version,
                                        [(a, outputs[a]) for a in
                                         (signature.order if aliases is None else aliases)],
                                        self._tensor_content)
        except _ServingError as e:
            self._counts.error(name, e.code)
            raise
        except Exception:
            self._counts.error(name, _INTERNAL)  # what the loop answers for it
            raise
        cdef OkCounts ok = self._last_ok
        if ok is None or name != self._last_name:
            ok = self._last_ok = self._counts.ok_counts(name, "Predict")
            self._last_runtime = self._counts.runtime_counts(name, "Predict")
            self._last_name = name
        self._last_runtime.add_elapsed(run_ns)
        ok.add(begun)
        return response
