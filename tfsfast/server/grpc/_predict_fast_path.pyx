# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled gRPC Predict fast path; the same contract as ``_predict_fast_path_py`` (its twin).

What differs is only how: the PredictRequest's envelope (model spec, input entries, output
filter) is read here in C, without a ``PredictRequestView``, and anything in it the codec would
merge or repeat (a second model spec, a repeated input alias, an input entry in several parts,
both a version and a label, a known field with another wire type) is handed to
``predict_answer`` rather than interpreted a second way. The tensors themselves, the response,
the handle table, the signature checks, the run and its ``RunCost`` are the same code the twin
and ``predict_answer`` call, so all three answer with the same bytes.
"""

import math

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t

from tfsfast.codecs._tensor_proto cimport read_varint, skip_field
from tfsfast.server.grpc._clock cimport perf_counter

from tfsfast.codecs import tensor_proto
from tfsfast.core.handle_table import LATEST as _LATEST_POLICY
from tfsfast.servables import predict_util, saved_model_bundle

cdef object LATEST = _LATEST_POLICY
cdef Py_ssize_t _MAX_MODELS = 64
cdef object _decode_tensor = tensor_proto.decode_tensor
cdef object _encode_response = tensor_proto.encode_predict_response
cdef object _resolve_output_filter = predict_util.resolve_output_filter
cdef object _get_predict_signature = predict_util.get_predict_signature
cdef object _ceil = math.ceil

cdef enum:
    WT_VARINT = 0
    WT_LEN = 2
    WT_END_GROUP = 4


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


cdef class _Request:
    """The envelope of one PredictRequest, as far as the fast path takes it."""
    cdef str name
    cdef object version
    cdef object label
    cdef str signature_name
    cdef dict inputs
    cdef list output_filter


cdef int _field(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end, uint64_t known,
                int* seen, int once, Py_ssize_t* start, Py_ssize_t* stop) except -2:
    """Reads the next field. Returns its number, with its bounds, when it is a length-delimited
    field numbered up to ``known`` (marked in ``seen``); 0 for a field numbered above (skipped);
    -1 for what the fast path leaves to predict_answer: a tag the codec refuses (field 0, out of
    range, a stray end group), a known field with another wire type or a length past ``end``,
    a second occurrence of a field in the ``once`` mask (the codec merges those)."""
    cdef uint64_t tag = 0, n = 0
    read_varint(buf, pos, end, &tag)
    cdef uint64_t number = tag >> 3
    if number == 0 or number > 0x1FFFFFFF or (tag & 7) == WT_END_GROUP:
        return -1
    if number > known:
        skip_field(buf, pos, end, tag)
        return 0
    cdef int bit = 1 << <int>number
    if (tag & 7) != WT_LEN or (seen[0] & bit & once):
        return -1
    seen[0] |= bit
    read_varint(buf, pos, end, &n)
    if n > <uint64_t>(end - pos[0]):
        return -1
    start[0] = pos[0]
    stop[0] = pos[0] + <Py_ssize_t>n
    pos[0] = stop[0]
    return <int>number


cdef inline str _text(const uint8_t* buf, Py_ssize_t start, Py_ssize_t stop):
    return PyUnicode_DecodeUTF8(<const char*>buf + start, stop - start, NULL)


cdef int _read_version(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                       _Request request) except -1:
    """An Int64Value (its last value field wins); 0 for a form left to predict_answer."""
    cdef uint64_t tag = 0, v = 0
    while pos < end:
        read_varint(buf, &pos, end, &tag)
        if tag == ((1 << 3) | WT_VARINT):
            read_varint(buf, &pos, end, &v)
        elif (tag >> 3) <= 1 or (tag >> 3) > 0x1FFFFFFF or (tag & 7) == WT_END_GROUP:
            return 0
        else:
            skip_field(buf, &pos, end, tag)
    request.version = <int64_t>v
    return 1


cdef int _read_model_spec(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                          _Request request) except -1:
    """1: read; 0: a form the fast path leaves to predict_answer (a field repeated, both a
    version and a label, no name)."""
    cdef Py_ssize_t start = 0, stop = 0
    cdef int field, seen = 0
    while pos < end:
        field = _field(buf, &pos, end, 4, &seen, 0b11110, &start, &stop)
        if field < 0:
            return 0
        if field == 1:
            request.name = _text(buf, start, stop)
        elif field == 2:
            if not _read_version(buf, start, stop, request):
                return 0
        elif field == 3:
            request.signature_name = _text(buf, start, stop)
        elif field == 4:
            request.label = _text(buf, start, stop)
    return (seen & 0b10) != 0 and (seen & 0b10100) != 0b10100


cdef int _read_input(object view, const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                     dict inputs) except -1:
    """1: one ``alias -> serialized TensorProto`` entry added; 0: a form left to predict_answer
    (a key or value repeated, no value, an alias already sent)."""
    cdef Py_ssize_t start = 0, stop = 0, value_start = 0, value_stop = 0
    cdef int field, seen = 0
    key = ""
    while pos < end:
        field = _field(buf, &pos, end, 2, &seen, 0b110, &start, &stop)
        if field < 0:
            return 0
        if field == 1:
            key = _text(buf, start, stop)
        elif field == 2:
            value_start = start
            value_stop = stop
    if not (seen & 0b100) or key in inputs:
        return 0
    inputs[key] = view[value_start:value_stop]
    return 1


cdef _Request _read_request(bytes data):
    """The request's envelope, or None: a form the fast path leaves to predict_answer."""
    cdef const uint8_t* buf = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, start = 0, stop = 0
    cdef int field, seen = 0
    cdef _Request request = _Request.__new__(_Request)
    request.signature_name = ""
    request.inputs = {}
    view = memoryview(data)
    while pos < end:
        field = _field(buf, &pos, end, 3, &seen, 0b10, &start, &stop)
        if field < 0:
            return None
        if field == 1:
            if not _read_model_spec(buf, start, stop, request):
                return None
        elif field == 2:
            if not _read_input(view, buf, start, stop, request.inputs):
                return None
        elif field == 3:
            if request.output_filter is None:
                request.output_filter = []
            request.output_filter.append(_text(buf, start, stop))
    return request if seen & 0b10 else None


cdef class PredictFastPath:
    """The Predict fast path in front of ``predict_answer``; see ``_predict_fast_path_py``."""
    cdef object _find
    cdef object _label_version
    cdef object _costs
    cdef object _fallback
    cdef bint _enforce
    cdef bint _tensor_content
    cdef Py_ssize_t _max_inline_bytes
    cdef dict _models

    def __init__(self, find, label_version, costs, fallback, bint enforce_method_name=False,
                 bint tensor_content=False, Py_ssize_t max_inline_bytes=64 << 10):
        self._find = find
        self._label_version = label_version
        self._costs = costs
        self._fallback = fallback
        self._enforce = enforce_method_name
        self._tensor_content = tensor_content
        self._max_inline_bytes = max_inline_bytes
        self._models = {}

    def __call__(self, data, context):
        """The answer ``predict_answer`` gives: the response bytes, or its continuation."""
        answer = self.answer(data, context)
        return answer if answer is not None else self._fallback(data, context)

    cpdef object answer(self, object data, object context):
        """The response, or None: hand the request to ``predict_answer``."""
        cdef _Request request
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
            request = _read_request(<bytes>data)
        except Exception:
            return None
        if request is None:
            return None
        version = request.version
        if request.label is not None:
            try:
                version = self._label_version(request.name, request.label)
            except Exception:
                return None
        entry = self._find(request.name, version, LATEST)
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
                tensors[alias] = _decode_tensor(tensor, alias, budget)
        except Exception:
            return None
        if not signature._allows(saved_model_bundle.INLINE_RUN_MAX_SECONDS):
            return None
        # RunCost.timed, with the clock read in C: its time is added when the run returns.
        start = perf_counter()
        outputs = model.run(signature.key, tensors, aliases, timeout)
        signature._add(perf_counter() - start)
        return _encode_response(request.name, signature.key, model.version,
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
