# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled REST V2 infer fast path; the same contract as ``_rest_infer_fast_path_py`` (its twin).

``RestInferFastPath.answer(path, body, keep_alive)`` returns the complete HTTP response, byte
for byte what ``HttpRestApiHandler`` plus ``encode_response`` send, or None (the handler's
request); it takes exactly the requests the twin's docstring lists, and declines a few more
where C has a fixed size (more than ``_MAX_INPUTS`` inputs, ``_MAX_OUTPUTS`` outputs or
``_MAX_RANK`` dimensions).

A separate algorithm from the twin's, not the twin compiled: the twin reads the body into Python
lists of ints and floats and lets numpy convert them, where this reads the body's bytes in place
and makes no Python object per request but the arrays, their dict and the response.

* Request. One pass checks the JSON and notes where each input's name, datatype, shape and data
  are (a C struct on the stack); the signature's per-dict facts (its aliases as bytes, datatypes,
  numpy dtypes, the outputs' JSON heads) are derived once per signature (``_Plan``). Each input's
  array is then allocated through numpy's C API and filled by a second pass over its data with
  the compiled JSON codec's number reader (``csrc/tfsfast_json_number.h``: an exact int64 or a
  correctly rounded double; the few doubles it leaves to rapidjson, Python's reading, correctly
  rounded as well). The values are those of the twin's (and the handler's) reading: an
  integer's text is its exact value, any other number's the correctly rounded double, made a
  float32 by one C cast, as numpy's float64 to float32 conversion does.
* Response. Every output whose dtype the JSON codec writes without a conversion (an exact
  C-contiguous ndarray of that dtype) is written from its buffer by the codec's C writer
  (``csrc/tfsfast_json_write.h``, the text of ``rest_codec.tensor_json``); any other output's
  data is ``rest_codec.tensor_json``'s own. The JSON goes into a buffer kept by the instance,
  and the HTTP response is one ``bytes`` of the 200 head, Content-Length and that JSON.

Thread-safety: one instance per event loop, as the twin's.
"""

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.conversion cimport PyOS_string_to_double
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from tfsfast._cdefs.numpy_array cimport new_array
from tfsfast.codecs._json_c cimport (
    TFS_MAX_BOOL_TEXT,
    TFS_MAX_F32_TEXT,
    TFS_MAX_F64_TEXT,
    TFS_MAX_INT_TEXT,
    TFS_NUM_DBL,
    TFS_NUM_INT,
    TFS_NUM_UINT,
    TFS_W_BOOL,
    TFS_W_F32,
    TFS_W_F64,
    TFS_W_I8,
    TFS_W_I16,
    TFS_W_I32,
    TFS_W_I64,
    TFS_W_U8,
    TFS_W_U32,
    TFS_W_U64,
    tfs_num_value,
    tfs_number_init,
    tfs_read_number,
    tfs_write_i64,
    tfs_write_run,
    tfs_wsrc,
)
from tfsfast.monitoring._request_counts cimport OkCounts, RequestCounts, monotonic_ns
from tfsfast.server.predict._predict_signatures cimport (
    BundleSignatures,
    PredictSignature,
    SignatureCache,
)

from tfsfast.codecs import json_codec
from tfsfast.core.handle_table import LATEST as _LATEST_POLICY
from tfsfast.runtime.dtypes import DataType
from tfsfast.server.http._http_protocol_py import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.server.v2._rest_infer_fast_path_py import (
    INFER_API,
    MAX_BODY_BYTES,
    RUNTIME_API,
    plain_name,
    route,
)
from tfsfast.server.v2.datatypes import DATATYPES
from tfsfast.server.v2.rest_codec import tensor_json
from tfsfast.util.status import ServingError, to_http_status

__all__ = ["INFER_API", "MAX_BODY_BYTES", "RUNTIME_API", "RestInferFastPath"]


cnp.import_array()
if sizeof(cnp.npy_intp) != sizeof(int64_t):
    raise ImportError("tfsfast.server.v2._rest_infer_fast_path: needs a 64-bit npy_intp")
if tfs_number_init() != 0:  # this module's copy of the number tables
    raise ImportError("tfsfast.server.v2._rest_infer_fast_path: cannot create the C locale")

cdef object LATEST = _LATEST_POLICY
cdef object _ServingError = ServingError
cdef object _ndarray = np.ndarray

cdef enum:
    _MAX_INPUTS = 16
    _MAX_OUTPUTS = 16
    _MAX_RANK = 32
    # The twin's bounds on a data value's and a dimension's text.
    _MAX_VALUE_TEXT = 40
    _MAX_DIM_TEXT = 18
    # Integer texts with more digits are read as doubles (then declined for integer inputs).
    _MAX_READ_DIGITS = 20
    # The inputs taken, by how their values are stored.
    _FP32 = 1
    _FP64 = 2
    _INT32 = 3
    _INT64 = 4

cdef double _FLOAT32_MAX = 3.4028234663852886e38
# A response buffer larger than this is given back after the response that needed it.
cdef size_t _SCRATCH_KEEP = 1 << 20

# By TF DataType (int): how an input's values are stored, and the array's dtype.
cdef dict _INPUT_KINDS = {
    int(DataType.DT_FLOAT): (_FP32, np.dtype(np.float32)),
    int(DataType.DT_DOUBLE): (_FP64, np.dtype(np.float64)),
    int(DataType.DT_INT32): (_INT32, np.dtype(np.int32)),
    int(DataType.DT_INT64): (_INT64, np.dtype(np.int64)),
}
# By TF DataType (int): the JSON codec's C writer for outputs of that DataType written as they
# are (``rest_codec.WRITTEN_AS`` converts the others), the numpy dtype it reads, its longest value.
cdef dict _OUTPUT_WRITERS = {
    int(DataType.DT_FLOAT): (TFS_W_F32, np.dtype(np.float32), TFS_MAX_F32_TEXT),
    int(DataType.DT_DOUBLE): (TFS_W_F64, np.dtype(np.float64), TFS_MAX_F64_TEXT),
    int(DataType.DT_INT8): (TFS_W_I8, np.dtype(np.int8), TFS_MAX_INT_TEXT),
    int(DataType.DT_INT16): (TFS_W_I16, np.dtype(np.int16), TFS_MAX_INT_TEXT),
    int(DataType.DT_INT32): (TFS_W_I32, np.dtype(np.int32), TFS_MAX_INT_TEXT),
    int(DataType.DT_INT64): (TFS_W_I64, np.dtype(np.int64), TFS_MAX_INT_TEXT),
    int(DataType.DT_UINT8): (TFS_W_U8, np.dtype(np.uint8), TFS_MAX_INT_TEXT),
    int(DataType.DT_UINT32): (TFS_W_U32, np.dtype(np.uint32), TFS_MAX_INT_TEXT),
    int(DataType.DT_UINT64): (TFS_W_U64, np.dtype(np.uint64), TFS_MAX_INT_TEXT),
    int(DataType.DT_BOOL): (TFS_W_BOOL, np.dtype(np.bool_), TFS_MAX_BOOL_TEXT),
}
# Bytes around the outputs beyond the model name, version and id texts.
cdef Py_ssize_t _ENVELOPE_BYTES = 64


# ---------------------------------------------------------------------------------------------
# What a signature implies, derived once per signature.

@cython.final
cdef class _PlanInput:
    cdef bytes name  # the alias in UTF-8, as a request names it
    cdef str alias
    cdef bytes datatype  # the protocol's datatype, b"" for a dtype it has none for
    cdef int kind  # _FP32 ... _INT64, 0: not taken here
    cdef cnp.dtype descr


@cython.final
cdef class _PlanOutput:
    cdef bytes name
    cdef str alias
    cdef object dtype  # the TF DataType
    cdef bint taken  # has a protocol datatype and a name JSON writes as it is
    cdef int writer  # the C writer's kind, 0: rest_codec.tensor_json writes it
    cdef cnp.dtype descr  # the dtype the C writer reads
    cdef int per_value  # the C writer's longest value text
    cdef bytes head  # {"name": "<alias>", "datatype": "<datatype>", "shape": [


@cython.final
cdef class _Plan:
    cdef object info  # the signature (held: its id keys the plan cache)
    cdef list inputs  # _PlanInput, by alias
    cdef list outputs  # _PlanOutput, by alias: the answer's order without "outputs"
    cdef bint all_taken  # every output is taken (a request without "outputs" can be)


cdef _Plan _make_plan(object info):
    cdef _Plan plan = _Plan.__new__(_Plan)
    cdef _PlanInput pi
    cdef _PlanOutput po
    plan.info = info
    plan.inputs = []
    for alias, spec in info.inputs.items():
        pi = _PlanInput.__new__(_PlanInput)
        pi.alias = alias
        pi.name = alias.encode("utf-8", "surrogatepass")
        text = DATATYPES.get(spec.dtype)
        pi.datatype = text.encode("ascii") if text is not None else b""
        kind = _INPUT_KINDS.get(int(spec.dtype))
        if kind is None:
            pi.kind = 0
            pi.descr = None
        else:
            pi.kind = kind[0]
            pi.descr = kind[1]
        plan.inputs.append(pi)
    plan.outputs = []
    plan.all_taken = True
    for alias in sorted(info.outputs):
        spec = info.outputs[alias]
        po = _PlanOutput.__new__(_PlanOutput)
        po.alias = alias
        po.name = alias.encode("utf-8", "surrogatepass")
        po.dtype = spec.dtype
        text = DATATYPES.get(spec.dtype)
        po.taken = text is not None and plain_name(alias)
        plan.all_taken = plan.all_taken and po.taken
        writer = _OUTPUT_WRITERS.get(int(spec.dtype))
        if writer is None:
            po.writer = 0
            po.descr = None
            po.per_value = 0
        else:
            po.writer = writer[0]
            po.descr = writer[1]
            po.per_value = writer[2]
        po.head = (b'{"name": "' + po.name + b'", "datatype": "'
                   + (text.encode("ascii") if text is not None else b"") + b'", "shape": [')
        plan.outputs.append(po)
    return plan


# ---------------------------------------------------------------------------------------------
# The request body, read in place: where each part is (offsets into the body).

cdef struct _Span:
    Py_ssize_t start  # -1: absent
    Py_ssize_t length


cdef struct _TensorText:
    _Span name
    _Span datatype
    int rank  # -1: no shape
    int64_t shape[_MAX_RANK]
    Py_ssize_t data  # the data's "[", -1: no data
    int64_t count  # values in data
    bint ints  # every value is an integer's text
    int digits  # the most digits of an integer's text


cdef struct _BodyText:
    int n_inputs  # -1: no "inputs"
    _TensorText inputs[_MAX_INPUTS]
    int n_outputs  # -1: no "outputs"
    _Span outputs[_MAX_OUTPUTS]
    _Span id


# Each reader takes the body, a position and the end, and returns the position after what it
# read, or -1: the body is not one taken here. The body is a bytes object, so body[end] is NUL.

cdef inline Py_ssize_t _space(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """The position after the whitespace at ``pos`` (-1 stays -1)."""
    while 0 <= pos < end and (s[pos] == c' ' or s[pos] == c'\t' or s[pos] == c'\n'
                         or s[pos] == c'\r'):
        pos += 1
    return pos


cdef inline Py_ssize_t _expect(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                               unsigned char c) noexcept:
    """The position after ``c`` at ``pos`` and the whitespace after it, or -1."""
    if pos < 0 or pos >= end or s[pos] != c:
        return -1
    return _space(s, pos + 1, end)


cdef inline Py_ssize_t _next(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                             unsigned char close, bint *closed) noexcept:
    """After an array's or object's item at ``pos``: the position after ``close`` (and
    ``closed`` set), or of the next item, after the comma; or -1."""
    pos = _space(s, pos, end)
    closed[0] = 0 <= pos < end and s[pos] == close
    return pos + 1 if closed[0] else _expect(s, pos, end, c',')


cdef inline Py_ssize_t _open(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                             unsigned char open, unsigned char close, bint *closed) noexcept:
    """At an array or object: the position of its first item, or after it if it is empty
    (and ``closed`` set); or -1."""
    pos = _expect(s, pos, end, open)
    closed[0] = 0 <= pos < end and s[pos] == close
    return pos + 1 if closed[0] else pos


cdef Py_ssize_t _string(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                        _Span *out) noexcept:
    """A string of printable ASCII without escapes (its span in ``out``)."""
    cdef Py_ssize_t start
    cdef unsigned char c
    if pos < 0 or pos >= end or s[pos] != c'"':
        return -1
    pos += 1
    start = pos
    while pos < end:
        c = s[pos]
        if c == c'"':
            out.start = start
            out.length = pos - start
            return pos + 1
        if c < 0x20 or c > 0x7E or c == c'\\':
            return -1
        pos += 1
    return -1


cdef inline Py_ssize_t _digits(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """The position after the one or more digits at ``pos``, or -1."""
    cdef Py_ssize_t start = pos
    while pos < end and c'0' <= s[pos] <= c'9':
        pos += 1
    return pos if pos > start else -1


cdef Py_ssize_t _number(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                        bint *integer) noexcept:
    """A JSON number's text (RFC 8259's grammar); ``integer``: it has no fraction or exponent."""
    cdef Py_ssize_t start
    integer[0] = True
    if pos < end and s[pos] == c'-':
        pos += 1
    start = pos
    pos = _digits(s, pos, end)
    if pos < 0 or (s[start] == c'0' and pos - start > 1):
        return -1
    if pos < end and s[pos] == c'.':
        integer[0] = False
        pos = _digits(s, pos + 1, end)
        if pos < 0:
            return -1
    if pos < end and (s[pos] == c'e' or s[pos] == c'E'):
        integer[0] = False
        pos += 1
        if pos < end and (s[pos] == c'+' or s[pos] == c'-'):
            pos += 1
        pos = _digits(s, pos, end)
    return pos


cdef Py_ssize_t _shape(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                       _TensorText *t) noexcept:
    """A flat array of non-negative integers of at most _MAX_DIM_TEXT digits."""
    cdef Py_ssize_t start
    cdef bint integer, closed
    cdef int64_t size
    t.rank = 0
    pos = _open(s, pos, end, c'[', c']', &closed)
    while pos >= 0 and not closed:
        start = pos
        pos = _number(s, pos, end, &integer)
        if (pos < 0 or not integer or s[start] == c'-' or pos - start > _MAX_DIM_TEXT
                or t.rank == _MAX_RANK):
            return -1
        size = 0
        while start < pos:
            size = size * 10 + (s[start] - c'0')
            start += 1
        t.shape[t.rank] = size
        t.rank += 1
        pos = _next(s, pos, end, c']', &closed)
    return pos


cdef Py_ssize_t _data(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                      _TensorText *t) noexcept:
    """A flat array of numbers of at most _MAX_VALUE_TEXT bytes each: counted, not converted
    (``_fill`` reads them once the dtype is known)."""
    cdef Py_ssize_t start
    cdef bint integer, closed
    t.data = pos
    t.count = 0
    t.ints = True
    t.digits = 0
    pos = _open(s, pos, end, c'[', c']', &closed)
    while pos >= 0 and not closed:
        start = pos
        pos = _number(s, pos, end, &integer)
        if pos < 0 or pos - start > _MAX_VALUE_TEXT:
            return -1
        if integer:
            if pos - start - (s[start] == c'-') > t.digits:
                t.digits = <int>(pos - start - (s[start] == c'-'))
        else:
            t.ints = False
        t.count += 1
        pos = _next(s, pos, end, c']', &closed)
    return pos


cdef inline Py_ssize_t _key(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                            _Span *key) noexcept:
    """An object's key and its colon: the position of the value, or -1."""
    return _expect(s, _space(s, _string(s, pos, end, key), end), end, c':')


cdef inline bint _is(const unsigned char *s, _Span key, const char *name, Py_ssize_t n) noexcept:
    return key.length == n and memcmp(s + key.start, name, n) == 0


cdef Py_ssize_t _input(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                       _TensorText *t) noexcept:
    """An object of name, datatype, shape and data, each at most once and nothing else."""
    cdef _Span key
    cdef bint closed = False
    key.start = key.length = 0  # (set by _string before it is read)
    t.name.start = -1
    t.datatype.start = -1
    t.rank = -1
    t.data = -1
    pos = _expect(s, pos, end, c'{')
    while pos >= 0 and not closed:
        pos = _key(s, pos, end, &key)
        if pos < 0:
            return -1
        if _is(s, key, b"name", 4) and t.name.start < 0:
            pos = _string(s, pos, end, &t.name)
        elif _is(s, key, b"datatype", 8) and t.datatype.start < 0:
            pos = _string(s, pos, end, &t.datatype)
        elif _is(s, key, b"shape", 5) and t.rank < 0:
            pos = _shape(s, pos, end, t)
        elif _is(s, key, b"data", 4) and t.data < 0:
            pos = _data(s, pos, end, t)
        else:
            return -1  # parameters, another key, or a key twice
        pos = _next(s, pos, end, c'}', &closed)
    return pos


cdef Py_ssize_t _inputs(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                        _BodyText *b) noexcept:
    """A non-empty array of inputs (``_input``)."""
    cdef bint closed = False
    b.n_inputs = 0
    pos = _expect(s, pos, end, c'[')
    while pos >= 0 and not closed:
        if b.n_inputs == _MAX_INPUTS:
            return -1
        pos = _input(s, pos, end, &b.inputs[b.n_inputs])
        b.n_inputs += 1
        pos = _next(s, pos, end, c']', &closed)
    return pos


cdef Py_ssize_t _outputs(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end,
                         _BodyText *b) noexcept:
    """An array of ``{"name": <string>}`` objects (possibly empty)."""
    cdef _Span key
    cdef bint closed
    key.start = key.length = 0  # (set by _string before it is read)
    b.n_outputs = 0
    pos = _open(s, pos, end, c'[', c']', &closed)
    while pos >= 0 and not closed:
        if b.n_outputs == _MAX_OUTPUTS:
            return -1
        pos = _key(s, _expect(s, pos, end, c'{'), end, &key)
        if pos < 0 or not _is(s, key, b"name", 4):
            return -1
        pos = _string(s, pos, end, &b.outputs[b.n_outputs])
        b.n_outputs += 1
        pos = _next(s, _expect(s, _space(s, pos, end), end, c'}'), end, c']', &closed)
    return pos


cdef bint _read_body(const unsigned char *s, Py_ssize_t end, _BodyText *b) noexcept:
    """The whole body: one object of inputs, outputs and id, each at most once, nothing else,
    and nothing after it but whitespace."""
    cdef _Span key
    cdef bint closed = False
    key.start = key.length = 0  # (set by _string before it is read)
    cdef Py_ssize_t pos
    b.n_inputs = -1
    b.n_outputs = -1
    b.id.start = -1
    pos = _expect(s, _space(s, 0, end), end, c'{')
    while pos >= 0 and not closed:
        pos = _key(s, pos, end, &key)
        if pos < 0:
            return False
        if _is(s, key, b"inputs", 6) and b.n_inputs < 0:
            pos = _inputs(s, pos, end, b)
        elif _is(s, key, b"outputs", 7) and b.n_outputs < 0:
            pos = _outputs(s, pos, end, b)
        elif _is(s, key, b"id", 2) and b.id.start < 0:
            pos = _string(s, pos, end, &b.id)
        else:
            return False
        pos = _next(s, pos, end, c'}', &closed)
    return pos >= 0 and _space(s, pos, end) == end


cdef int _fill(const unsigned char *s, Py_ssize_t end, const _TensorText *t, int kind,
              char *out) except -1:
    """The data's values converted into ``out`` (``t.count`` values of ``kind``): 1, or 0 when
    one is not taken: outside the dtype's range, or (integer inputs) not an integer."""
    cdef const unsigned char *p = s + t.data + 1
    cdef const unsigned char *stop = s + end
    cdef const unsigned char *q
    cdef char *parsed
    cdef int64_t k
    cdef int number
    cdef bint integer
    cdef tfs_num_value value
    cdef double d
    for k in range(t.count):
        while p[0] == c' ' or p[0] == c'\t' or p[0] == c'\n' or p[0] == c'\r' or p[0] == c',':
            p += 1
        q = <const unsigned char *>tfs_read_number(<const uint8_t *>p, <const uint8_t *>stop,
                                                   _MAX_READ_DIGITS, &number, &value)
        if q == NULL:
            # A double the codec's reader leaves to rapidjson's (an exponent above 99 ...):
            # Python's reading, which is correctly rounded too (the handler's is).
            q = s + _number(s, p - s, end, &integer)
            if integer or kind == _INT64 or kind == _INT32:
                return 0
            value.d = PyOS_string_to_double(<const char *>p, &parsed, NULL)
            if <const unsigned char *>parsed != q:
                return 0
            number = TFS_NUM_DBL
        p = q
        if kind == _INT64 or kind == _INT32:
            if number != TFS_NUM_INT:
                return 0
            if kind == _INT64:
                (<int64_t *>out)[k] = value.i
            elif -2147483648 <= value.i <= 2147483647:
                (<int *>out)[k] = <int>value.i
            else:
                return 0
            continue
        if number == TFS_NUM_INT:
            d = <double>value.i  # correctly rounded, as Python's float(int)
        elif number == TFS_NUM_UINT:
            d = <double>value.u
        else:
            d = value.d
        if kind == _FP32:
            if not -_FLOAT32_MAX <= d <= _FLOAT32_MAX:
                return 0
            (<float *>out)[k] = <float>d
        else:
            if not isfinite(d):
                return 0  # a number rapidjson calls too big
            (<double *>out)[k] = d
    return 1


# ---------------------------------------------------------------------------------------------

cdef bytes _CONTENT_LENGTH = b"Content-Length: "
cdef bytes _CLOSE = b"Connection: close\r\n"
cdef bytes _CRLF = b"\r\n"
cdef bytes _MODEL_NAME = b'{"model_name": '
cdef bytes _MODEL_VERSION = b', "model_version": "'
cdef bytes _ID = b'", "id": "'
cdef bytes _OUTPUTS = b'", "outputs": ['
cdef bytes _DATA = b'], "data": '
cdef bytes _SEPARATOR = b", "
cdef bytes _END = b"]}"


cdef inline char *_put(char *o, bytes text) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    memcpy(o, PyBytes_AS_STRING(text), n)
    return o + n


cdef inline char *_puts(char *o, const char *text, Py_ssize_t n) noexcept:
    memcpy(o, text, n)
    return o + n


@cython.final
cdef class RestInferFastPath:
    """The V2 infer fast path behind ``RestFastPath``; see ``_rest_infer_fast_path_py``.

    ``find`` is the manager's handle-table lookup; ``options`` must be the handler's.
    """

    cdef object _find
    cdef object _timeout_in_ms
    cdef object _cors
    cdef object _format_error
    cdef bytes _ok_head
    cdef SignatureCache _signatures
    cdef RequestCounts _counts
    # The limits, as C integers.
    cdef int64_t _max_rank, _max_tensor, _max_request, _max_int_digits
    # The last URL's route and its model's texts and counts (made with its first answer).
    cdef bytes _last_path
    cdef tuple _last_route
    cdef bytes _last_name_text
    cdef OkCounts _last_ok
    cdef OkCounts _last_runtime
    # The last version answered and its text.
    cdef object _last_id
    cdef bytes _last_version_text
    # _Plan by id(signature); the last one used.
    cdef dict _plans
    cdef _Plan _last_plan
    # The buffer the JSON answer is written into.
    cdef char *_scratch
    cdef size_t _scratch_size

    def __cinit__(self):
        self._scratch = NULL
        self._scratch_size = 0

    def __dealloc__(self):
        free(self._scratch)

    def __init__(self, find, options=None):
        if options is None:
            options = RestApiOptions()
        self._find = find
        limits = options.codec_limits
        self._max_rank = min(limits.max_tensor_rank, _MAX_RANK)
        self._max_tensor = min(limits.max_tensor_elements, 1 << 62)
        self._max_request = min(limits.max_request_elements, 1 << 62)
        self._max_int_digits = min(limits.max_int_digits, _MAX_READ_DIGITS)
        self._timeout_in_ms = options.timeout_in_ms
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        self._format_error = json_codec.JsonCodec(limits).format_error
        # encode_response's bytes up to Content-Length, for a 200 with these headers.
        full = encode_response(HttpResponse(200, b"", headers=self._cors), True)
        self._ok_head = full[:full.index(_CONTENT_LENGTH)]
        self._signatures = SignatureCache(options.enforce_signature_method_name)
        self._counts = RequestCounts("REST")
        self._last_path = None
        self._last_route = None
        self._last_name_text = b""
        self._last_ok = None
        self._last_runtime = None
        self._last_id = None
        self._last_version_text = b""
        self._plans = {}
        self._last_plan = None

    cpdef object answer(self, bytes path, bytes body, bint keep_alive):
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``) to a plain
        JSON POST of ``path`` (a request target) and ``body``, or None: hand it to the
        handler."""
        cdef long long start = monotonic_ns()
        cdef long long run_start
        cdef BundleSignatures servable
        cdef PredictSignature signature
        cdef _Plan plan
        cdef _BodyText text
        cdef list answered
        if path is None or body is None:
            return None
        if self._last_path is None or path != self._last_path:
            self._last_route = route(path)
            self._last_path = path
            self._last_ok = None
            self._last_runtime = None
        cdef tuple spec = self._last_route
        if spec is None or PyBytes_GET_SIZE(body) > MAX_BODY_BYTES:
            return None
        cdef str name = <str>spec[0]
        entry = self._find(name, spec[1], LATEST)
        if entry is None:
            return None
        try:
            servable = self._signatures.of(entry.servable, entry.id)
            if servable.run_inline is None or servable.batching is not None:
                return None
            signature = servable.get("")
            plan = self._plan(signature.signature)
            if not _read_body(<const unsigned char *>PyBytes_AS_STRING(body),
                              PyBytes_GET_SIZE(body), &text):
                return None
            tensors = self._tensors(body, &text, plan)
            if tensors is None:
                return None
            answered = self._answered(body, &text, plan)
            if answered is None:
                return None
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        cdef OkCounts ok = self._last_ok
        cdef OkCounts runtime = self._last_runtime
        if ok is None:
            ok = self._last_ok = self._counts.ok_counts(name, INFER_API)
            runtime = self._last_runtime = self._counts.runtime_counts(name, RUNTIME_API)
            self._last_name_text = b'"' + name.encode("ascii") + b'"'
        if entry.id is not self._last_id:
            self._last_version_text = str(entry.id.version).encode("ascii")
            self._last_id = entry.id
        run_start = monotonic_ns()
        try:
            # Every output (no "outputs" asked for) is the run without a selection, which
            # costs less than the same outputs selected.
            outputs = servable.run_inline(
                signature.key, tensors,
                [(<_PlanOutput>po).alias for po in answered] if text.n_outputs >= 0 else None,
                self._timeout_in_ms, None)
        except _ServingError as e:
            return self._encode_error(e, keep_alive, name)
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        runtime.record(run_start)
        try:
            response = self._response(body, &text, answered, outputs, keep_alive)
        except _ServingError as e:
            return self._encode_error(e, keep_alive, name)
        ok.record(start)
        return response

    cdef _Plan _plan(self, object info):
        cdef _Plan plan = self._last_plan
        if plan is not None and plan.info is info:
            return plan
        found = self._plans.get(id(info))
        if found is None or (<_Plan>found).info is not info:
            if len(self._plans) >= 64:
                self._plans.clear()
            found = _make_plan(info)
            self._plans[id(info)] = found
        self._last_plan = <_Plan>found
        return <_Plan>found

    cdef dict _tensors(self, bytes body, _BodyText *text, _Plan plan):
        """``{alias: array}`` of the request's inputs, or None when the handler would read them
        otherwise, or refuse them."""
        cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(body)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(body)
        cdef int i, j
        cdef int64_t count, used = 0, size
        cdef bint empty
        cdef _TensorText *t
        cdef _PlanInput pi
        cdef cnp.ndarray array
        cdef dict tensors = {}
        if text.n_inputs != len(plan.inputs):
            return None
        for i in range(text.n_inputs):
            t = &text.inputs[i]
            if t.name.start < 0 or t.datatype.start < 0 or t.rank < 0 or t.data < 0:
                return None
            pi = None
            for candidate in plan.inputs:
                if (PyBytes_GET_SIZE((<_PlanInput>candidate).name) == t.name.length
                        and memcmp(PyBytes_AS_STRING((<_PlanInput>candidate).name),
                                   s + t.name.start, t.name.length) == 0):
                    pi = <_PlanInput>candidate
                    break
            if (pi is None or pi.alias in tensors or pi.kind == 0
                    or PyBytes_GET_SIZE(pi.datatype) != t.datatype.length
                    or memcmp(PyBytes_AS_STRING(pi.datatype), s + t.datatype.start,
                              t.datatype.length) != 0
                    or t.rank > self._max_rank):
                return None
            # The twin's element count: each dimension within the tensor limit; their product,
            # which only needs to be known up to the limit (past it, limit + 1), or 0.
            count = 1
            empty = False
            for j in range(t.rank):
                size = t.shape[j]
                if size > self._max_tensor:
                    return None
                if size == 0:
                    empty = True
                elif count <= self._max_tensor:
                    count = self._max_tensor + 1 if count > self._max_tensor // size else (
                        count * size)
            if empty:
                count = 0
            used += count
            if count > self._max_tensor or used > self._max_request or t.count != count:
                return None
            if (pi.kind == _INT32 or pi.kind == _INT64) and (
                    not t.ints or t.digits > self._max_int_digits):
                return None
            array = new_array(pi.descr, t.rank, <cnp.npy_intp *>t.shape, NULL, None)
            if not _fill(s, end, t, pi.kind, cnp.PyArray_BYTES(array)):
                return None
            tensors[pi.alias] = array
        return tensors

    cdef list _answered(self, bytes body, _BodyText *text, _Plan plan):
        """The outputs to answer, in answer order (``infer.requested_aliases``'s), or None."""
        cdef const char *s = PyBytes_AS_STRING(body)
        cdef int i
        cdef _PlanOutput po
        cdef list answered
        if text.n_outputs < 0:
            return plan.outputs if plan.all_taken and len(plan.outputs) <= _MAX_OUTPUTS else None
        if text.n_outputs == 0:
            return None  # "outputs": [] (the handler answers every output)
        answered = []
        for i in range(text.n_outputs):
            po = None
            for candidate in plan.outputs:
                if (PyBytes_GET_SIZE((<_PlanOutput>candidate).name) == text.outputs[i].length
                        and memcmp(PyBytes_AS_STRING((<_PlanOutput>candidate).name),
                                   s + text.outputs[i].start, text.outputs[i].length) == 0):
                    po = <_PlanOutput>candidate
                    break
            if po is None or not po.taken or po in answered:
                return None
            answered.append(po)
        return answered

    cdef bytes _response(self, bytes body, _BodyText *text, list answered, object outputs,
                         bint keep_alive):
        """The 200 response: the JSON answer as ``rest_codec.format_infer_response`` writes it,
        after the head ``encode_response`` writes."""
        cdef Py_ssize_t n = len(answered)
        cdef Py_ssize_t k
        cdef int j, nd
        cdef size_t bound
        cdef int64_t values
        cdef _PlanOutput po
        cdef cnp.npy_intp *dims
        cdef tfs_wsrc src
        cdef list arrays = []  # held while they are read
        cdef list texts = []  # the data of outputs the C writer does not take (else None)
        bound = (_ENVELOPE_BYTES + PyBytes_GET_SIZE(self._last_name_text)
                 + PyBytes_GET_SIZE(self._last_version_text)
                 + (text.id.length if text.id.start >= 0 else 0))
        for k in range(n):
            po = <_PlanOutput>answered[k]
            a = outputs[po.alias]
            if (po.writer != 0 and type(a) is _ndarray
                    and cnp.PyArray_CHKFLAGS(<cnp.ndarray>a, cnp.NPY_ARRAY_C_CONTIGUOUS
                                             | cnp.NPY_ARRAY_ALIGNED)
                    and (<object>cnp.PyArray_DESCR(<cnp.ndarray>a) is po.descr
                         or <object>cnp.PyArray_DESCR(<cnp.ndarray>a) == po.descr)):
                data = None
                values = cnp.PyArray_SIZE(<cnp.ndarray>a)
                bound += <size_t>values * (po.per_value + 2)
            else:
                data = tensor_json(a, po.dtype)
                a = np.asarray(a)  # its shape
                bound += PyBytes_GET_SIZE(<bytes>data)
            arrays.append(a)
            texts.append(data)
            bound += (PyBytes_GET_SIZE(po.head) + 32 + (TFS_MAX_INT_TEXT + 2)
                      * cnp.PyArray_NDIM(<cnp.ndarray>a))
        cdef char *o = self._scratch_for(bound)
        cdef char *start = o
        o = _put(o, _MODEL_NAME)
        o = _put(o, self._last_name_text)
        o = _put(o, _MODEL_VERSION)
        o = _put(o, self._last_version_text)
        if text.id.start >= 0:
            o = _put(o, _ID)
            o = _puts(o, PyBytes_AS_STRING(body) + text.id.start, text.id.length)
        o = _put(o, _OUTPUTS)
        for k in range(n):
            po = <_PlanOutput>answered[k]
            a = arrays[k]
            if k:
                o = _put(o, _SEPARATOR)
            o = _put(o, po.head)
            nd = cnp.PyArray_NDIM(<cnp.ndarray>a)
            dims = cnp.PyArray_DIMS(<cnp.ndarray>a)
            for j in range(nd):
                if j:
                    o = _put(o, _SEPARATOR)
                o += tfs_write_i64(dims[j], o)
            o = _put(o, _DATA)
            data = texts[k]
            if data is None:
                o[0] = c'['
                src.kind = po.writer
                src.data = cnp.PyArray_BYTES(<cnp.ndarray>a)
                src.tokens = NULL
                src.token_lens = NULL
                o = tfs_write_run(o + 1, &src, 0, cnp.PyArray_SIZE(<cnp.ndarray>a))
                o[0] = c']'
                o += 1
            else:
                o = _put(o, <bytes>data)
            o[0] = c'}'
            o += 1
        o = _put(o, _END)
        try:
            return self._encode_ok(start, o - start, keep_alive)
        finally:
            if self._scratch_size > _SCRATCH_KEEP:
                free(self._scratch)
                self._scratch = NULL
                self._scratch_size = 0

    cdef char *_scratch_for(self, size_t size) except NULL:
        if size > self._scratch_size:
            free(self._scratch)
            self._scratch = NULL
            self._scratch_size = 0
            self._scratch = <char *>malloc(size if size > 4096 else 4096)
            if self._scratch == NULL:
                raise MemoryError()
            self._scratch_size = size if size > 4096 else 4096
        return self._scratch

    cdef bytes _encode_ok(self, const char *answer, Py_ssize_t size, bint keep_alive):
        """The ok head + Content-Length [+ Connection: close] + blank line + ``answer``: what
        ``encode_response`` writes for a 200 (its status line and headers are the ok head)."""
        cdef char digits[24]
        cdef int nd = tfs_write_i64(size, digits)
        cdef Py_ssize_t nh = PyBytes_GET_SIZE(self._ok_head)
        cdef bytes out = PyBytes_FromStringAndSize(
            NULL, nh + 16 + nd + 2 + (0 if keep_alive else 19) + 2 + size)
        cdef char *o = PyBytes_AS_STRING(out)
        o = _put(o, self._ok_head)
        o = _put(o, _CONTENT_LENGTH)
        o = _puts(o, digits, nd)
        o = _put(o, _CRLF)
        if not keep_alive:
            o = _put(o, _CLOSE)
        o = _put(o, _CRLF)
        memcpy(o, answer, size)
        return out

    cdef bytes _encode_error(self, object error, bint keep_alive, str model_name):
        self._counts.error(model_name, error.code)
        return encode_response(HttpResponse(to_http_status(error.code),
                                            self._format_error(error.message),
                                            headers=self._cors), keep_alive)
