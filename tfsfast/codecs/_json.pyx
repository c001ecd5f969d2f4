# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled JSON tensor codec for REST predict; the same contract as its twin ``_json_py``.

``JsonCodec(limits)`` with ``parse_predict_request(body, input_dtypes) -> PredictRequest``,
``format_predict_response(outputs, columnar, output_dtypes=None) -> bytes`` and
``format_error(message) -> bytes`` behaves exactly as :mod:`tfsfast.codecs._json_py`'s, the
reference: same tensors, same dtypes and shapes, same ServingError codes and messages, byte for
byte, under the same ``CodecLimits``. The module-level functions are the codec with
``DEFAULT_CODEC_LIMITS``.

Design: a fast path for well-formed bodies, the twin for everything else. A separate algorithm
from the twin, not the twin compiled: a C parser and writer for the bodies that make up the
traffic, where the twin reconciles Python's ``json`` with rapidjson (work C has no need of, and
that Python could not do byte by byte at C's speed).

* Request. One pass in C (``csrc/tfsfast_json_scan.h``, without the GIL for large bodies) reads
  the body, checks the nesting depth and the element limits as it goes (before anything grows),
  applies TF's dense-shape rules while streaming, and keeps each leaf as an exact integer, a
  correctly rounded double (Clinger's exact path, else ``strtod_l`` in the "C" locale) or a
  string offset. No Python object is made per number, and the parser and its tapes are kept
  across requests. Once the signature's dtypes are known, each tensor is allocated once (64-byte
  aligned when large, so TensorFlow can borrow it; through numpy's C API when small) and filled
  from the tape in one typed loop. What a signature's ``{alias: DataType}`` dict implies (sorted
  aliases, their UTF-8 keys, dtypes) is derived once per dict and reused while the dict holds
  the same items; the limits are C fields of the codec, set when it is made. The request is
  this module's ``PredictRequest``, a compiled type filled by C attribute assignment (the twin's
  is a dataclass with the same fields, constructor and equality). Whenever the C pass meets
  anything unusual (a syntax error, an odd number spelling, invalid UTF-8, a ragged or mistyped
  tensor, a limit, escaped keys, duplicate keys ...), or a conversion does not fit the dtype, the
  body is handed to the twin codec the compiled one made with the same ``CodecLimits``, which
  produces TF Serving's exact result or message (its request is returned as this module's
  type). Errors are rare, so messages stay identical by construction at no cost to the common
  case.
* Response. Numeric tensors are written straight from their buffers by C loops into a scratch
  buffer kept across responses (its pages stay mapped), then copied once into an exactly sized
  ``bytes``: integers with register-built digit words, float32 with TF Serving's rule (``%.6g``
  if it reads back, else ``%.9g``) from one 64x128-bit integer multiply per value, float64 from
  exact 128-bit arithmetic; no printf, except for values outside those exact paths. A response
  of a few model outputs (exact ndarrays, C-contiguous, of the native dtype their DataType
  names) is assembled from what numpy's C API reads off the arrays (data, shape, flags), with
  no Python object but the body; other outputs take the general writer, which converts dtypes
  and renders strings (escaped in C).
  Anything the twin would reject, and dtypes written rarely, go to the twin.

Ownership: the request body is borrowed for the call only; returned arrays own their memory.
Response arrays are only read. Thread-safety: reentrant; all per-call state is local, and a codec
holds nothing that changes after it is made.
"""

import binascii

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_Size
from cpython.list cimport PyList_GET_ITEM
from cpython.long cimport PyLong_AsLongAndOverflow
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, strlen

# (all of the C side's declarations: this module is its only user)
from tfsfast.codecs._json_c cimport *
from tfsfast._cdefs.numpy_array cimport new_array

from tfsfast.codecs import _json_py as _twin
from tfsfast.codecs._json_text import json_string as _json_string
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.codecs.predict_format import string_bytes as _string_bytes
from tfsfast.codecs.twin_fallback import SignatureLookup as _SignatureLookup
from tfsfast.runtime.arrays import aligned_empty
from tfsfast.runtime.dtypes import from_numpy

__all__ = [
    "MAX_DEBUG_STRING_BYTES",
    "JsonCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
    "parse_predict_request",
]

cdef extern from "tfsfast_json_scan.h" nogil:
    const signed char *tfs_b64_table()
cnp.import_array()
if sizeof(cnp.npy_intp) != sizeof(int64_t):
    # shapes are handed between numpy (npy_intp) and the C side (int64_t) as they are
    raise ImportError("tfsfast.codecs._json: needs a 64-bit npy_intp")

MAX_DEBUG_STRING_BYTES = _twin.MAX_DEBUG_STRING_BYTES
format_error = _twin.format_error  # not on a hot path; one implementation keeps it identical

DEFAULT_SIGNATURE = _twin.DEFAULT_SIGNATURE

if tfs_number_init() != 0:
    raise ImportError("tfsfast.codecs._json: cannot create the C locale")
tfs_b64_table()

# TF DataType -> numpy dtype, for the dtypes the C conversion fills.
cdef dict _NUMERIC = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32),
    4: np.dtype(np.uint8), 5: np.dtype(np.int16), 6: np.dtype(np.int8), 9: np.dtype(np.int64),
    10: np.dtype(np.bool_), 22: np.dtype(np.uint32), 23: np.dtype(np.uint64),
}
cdef int DT_FLOAT = 1, DT_DOUBLE = 2, DT_STRING = 7, DT_BOOL = 10
# The integer dtypes the reference writes (its _RANGES), and how.
cdef dict _INT_WRITERS = {
    3: (np.dtype(np.int32), TFS_W_I32), 4: (np.dtype(np.uint8), TFS_W_U8),
    5: (np.dtype(np.int16), TFS_W_I16), 6: (np.dtype(np.int8), TFS_W_I8),
    9: (np.dtype(np.int64), TFS_W_I64), 22: (np.dtype(np.uint32), TFS_W_U32),
    23: (np.dtype(np.uint64), TFS_W_U64),
}
cdef Py_ssize_t _ALIGN_FROM = 4096  # bytes; smaller tensors gain nothing from 64-byte alignment
cdef Py_ssize_t _NOGIL_FROM = 1 << 16


# ---------------------------------------------------------------------------------------------
# The parsed request.

@cython.freelist(8)  # one per request: skips the allocator on the request path
cdef class PredictRequest:
    """A parsed REST predict body: the twin's ``PredictRequest`` (read its contract), compiled.

    Same fields, constructor, ``repr`` and equality as the twin's dataclass; equal to a twin's
    request with equal fields. Compiled callers read the fields as C struct members
    (``from tfsfast.codecs._json cimport PredictRequest``), and the codec fills them by C
    assignment, without a Python frame.
    """

    __match_args__ = ("signature_name", "inputs", "columnar")

    def __init__(self, str signature_name, dict inputs, bint columnar):
        self.signature_name = signature_name
        self.inputs = inputs
        self.columnar = columnar

    def __repr__(self):
        return (f"PredictRequest(signature_name={self.signature_name!r}, "
                f"inputs={self.inputs!r}, columnar={self.columnar!r})")

    def __eq__(self, other):
        if type(other) is not PredictRequest and type(other) is not _twin.PredictRequest:
            return NotImplemented
        return ((self.signature_name, self.inputs, self.columnar)
                == (other.signature_name, other.inputs, other.columnar))


cdef PredictRequest new_request(str signature_name, dict inputs, bint columnar):
    cdef PredictRequest request = PredictRequest.__new__(PredictRequest)
    request.signature_name = signature_name
    request.inputs = inputs
    request.columnar = columnar
    return request


cdef PredictRequest as_request(object twin_request):
    return new_request(twin_request.signature_name, twin_request.inputs,
                       twin_request.columnar)


# ---------------------------------------------------------------------------------------------
# The codec: its limits as C integers, set once.

cdef int64_t _clip(object value, int64_t lo, int64_t hi) except? -2:
    if value < lo:
        return lo
    if value > hi:
        return hi
    return <int64_t>value


cdef class JsonCodec:
    """The compiled JSON codec under ``limits`` (a ``CodecLimits``); the contract is the twin's
    ``JsonCodec``. Bodies the C pass does not take go to the twin's codec made with the same
    ``limits``, which decides the answer or the error."""

    def __init__(self, limits):
        cdef int64_t big = (<int64_t>1) << 62
        self.limits = limits
        self._twin = _twin.JsonCodec(limits)
        # For the C pass: clamped to what it can use.
        self._depth = <int>_clip(limits.max_json_depth, 0, 1 << 30)
        self._digits = <int>_clip(limits.max_int_digits, 0, 20)
        self._tensor = _clip(limits.max_tensor_elements, 0, big)
        self._request = _clip(limits.max_request_elements, 0, big)
        # For the checks after it (`count > limit`, ...): clamped so those comparisons keep
        # their outcome for every count the C pass can produce (0 .. 2^62).
        self._rank = _clip(limits.max_tensor_rank, -1, 1 << 30)
        self._tensor_cmp = _clip(limits.max_tensor_elements, -1, big)
        self._request_cmp = _clip(limits.max_request_elements, -1, big)

    def parse_predict_request(self, body, input_dtypes):
        """Parses a REST predict body (row ``instances`` or columnar ``inputs``) into tensors.

        ``input_dtypes(signature_name)`` returns the signature's ``{alias: DataType}`` and
        raises ServingError itself for an unknown signature; it is called once. Every failure is
        a ServingError with TF Serving's code and message (see ``_json_py``).
        """
        return _parse(self, body, input_dtypes, True)

    cdef object parse_request(self, object body, object input_dtypes):
        """``parse_predict_request`` for compiled callers (declared in ``_json.pxd``)."""
        return _parse(self, body, input_dtypes, True)

    def _parse_fast(self, body, input_dtypes):
        """The fast path alone: the request, or None where ``parse_predict_request`` would hand
        the body to the twin. For tests and benchmarks, to see which bodies the C pass takes."""
        return _parse(self, body, input_dtypes, False)

    def format_predict_response(self, outputs, columnar, output_dtypes=None):
        """The module's ``format_predict_response`` (no limit applies to it)."""
        return format_response(outputs, columnar, output_dtypes)

    def format_error(self, message):
        """The module's ``format_error``."""
        return _twin.format_error(message)

    def __repr__(self):
        return f"JsonCodec({self.limits!r})"


# ---------------------------------------------------------------------------------------------
# What parsing needs to know about a signature's inputs, derived once per ``{alias: DataType}``
# dict that ``input_dtypes`` returns (callers such as the REST fast path return the same dict
# for the same signature each time).

cdef class _Inputs:
    """A signature's inputs in sorted alias order, derived from ``answer``.

    ``items`` holds ``answer``'s keys and values as they were at derivation (alternating, in
    dict order): the entry is valid for ``answer`` while it is that same dict holding those
    same objects in that same order (``_unchanged``), so a dict changed in place is derived
    again. Holding ``answer`` also keeps its id from being reused while it is cached.
    """

    cdef object answer
    cdef tuple items
    cdef Py_ssize_t count
    cdef list names   # the aliases, sorted
    cdef list keys    # each alias as UTF-8 bytes, or None where no body key can spell it
    cdef list codes   # each alias's DataType as an int
    cdef list descrs  # each alias's numpy dtype where the C conversion fills it, else None


cdef _Inputs _derive_inputs(object answer):
    """The ``_Inputs`` of ``answer``; raises as the reference's ``int(dt)`` and ``sorted``."""
    cdef _Inputs s = _Inputs.__new__(_Inputs)
    dtypes = {name: int(dt) for name, dt in answer.items()}
    s.answer = answer
    if type(answer) is dict:
        s.items = tuple([x for item in (<dict>answer).items() for x in item])
    s.names = sorted(dtypes)
    s.count = len(s.names)
    s.keys = []
    s.codes = []
    s.descrs = []
    for name in s.names:
        key = None
        if type(name) is str:
            try:
                key = (<str>name).encode("utf-8")
            except UnicodeEncodeError:
                pass  # a lone surrogate: never equal to a (valid UTF-8) key in a body
        s.keys.append(key)
        s.codes.append(dtypes[name])
        s.descrs.append(_NUMERIC.get(dtypes[name]))
    return s


cdef bint _unchanged(dict answer, _Inputs s):
    """Whether ``answer`` is ``s.answer`` with the keys and values ``s`` was derived from."""
    cdef Py_ssize_t pos = 0, i = 0
    cdef PyObject *key
    cdef PyObject *value
    if answer is not s.answer or 2 * PyDict_Size(answer) != PyTuple_GET_SIZE(s.items):
        return False
    while PyDict_Next(answer, &pos, &key, &value):
        if (key != PyTuple_GET_ITEM(s.items, i)
                or value != PyTuple_GET_ITEM(s.items, i + 1)):
            return False
        i += 2
    return True


cdef _Inputs _last_inputs = None
cdef dict _inputs_cache = {}  # id(answer) -> _Inputs, for callers with several signatures
cdef Py_ssize_t _INPUTS_CACHE_MAX = 256


cdef _Inputs _inputs_for(object answer):
    global _last_inputs
    cdef _Inputs s = _last_inputs
    if type(answer) is not dict:
        return _derive_inputs(answer)  # a Mapping of unknown kind: nothing is kept
    if s is not None and _unchanged(<dict>answer, s):
        return s
    s = _inputs_cache.get(id(answer))
    if s is None or not _unchanged(<dict>answer, s):
        s = _derive_inputs(answer)
        if len(_inputs_cache) >= _INPUTS_CACHE_MAX:
            _inputs_cache.clear()
        _inputs_cache[id(answer)] = s
    _last_inputs = s
    return s


# The codec with DEFAULT_CODEC_LIMITS, for callers without a codec of their own (a server hands
# its own CodecLimits to the codecs it makes).
cdef JsonCodec _default = JsonCodec(DEFAULT_CODEC_LIMITS)
parse_predict_request = _default.parse_predict_request
_parse_fast = _default._parse_fast


class _GiveUp(Exception):
    pass


cdef object _fallback(JsonCodec codec, bint use_twin, object data, object input_dtypes):
    if use_twin:
        return as_request(codec._twin.parse_predict_request(data, input_dtypes))
    raise _GiveUp


cdef object _parse(JsonCodec codec, object body, object input_dtypes, bint use_twin):
    cdef bytes data = body if type(body) is bytes else bytes(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n == 0:
        if use_twin:
            return as_request(codec._twin.parse_predict_request(data, input_dtypes))
        return None
    cdef tfs_json *P = _parser_take()
    if P == NULL:
        raise MemoryError()
    cdef const uint8_t *buf = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef int status
    tfs_json_init(P, buf, <size_t>n, codec._depth, codec._digits, codec._tensor,
                  codec._request)
    try:
        if n >= _NOGIL_FROM:
            with nogil:
                status = tfs_json_parse(P)
        else:
            status = tfs_json_parse(P)
        if status == TFS_NOMEM:
            raise MemoryError()
        if status != TFS_OK:
            return _fallback(codec, use_twin, data, input_dtypes)
        return _build(codec, P, data, input_dtypes, use_twin)
    except _GiveUp:
        return None
    finally:
        _parser_give(P)


# One parser kept across requests, so its tapes stay allocated and mapped (a fresh tape is
# page-faulted in leaf by leaf, which costs as much as a good part of the parse). Taken and given
# back with the GIL held; a call that finds it taken (another thread, or a reentrant call) uses a
# private one. After use it keeps tapes for at most _KEEP_LEAVES leaves in all (9 bytes each,
# about 19 MB) and frees the rest, so one huge request does not pin its memory.
cdef tfs_json *_parser = NULL
cdef bint _parser_busy = False
cdef int64_t _KEEP_LEAVES = 1 << 21


cdef tfs_json *_parser_take():
    global _parser, _parser_busy
    if _parser_busy:
        return tfs_json_new()
    if _parser == NULL:
        _parser = tfs_json_new()
        if _parser == NULL:
            return NULL
    _parser_busy = True
    return _parser


cdef void _parser_give(tfs_json *P):
    global _parser_busy
    if P == _parser:
        tfs_json_trim(P, _KEEP_LEAVES)
        _parser_busy = False
    else:
        tfs_json_free(P)


cdef object _hand_over(JsonCodec codec, bint use_twin, bytes data, object input_dtypes,
                       object signature_name, object answer):
    """``_fallback`` once the signature was looked up: the twin reuses the answer."""
    return _fallback(codec, use_twin, data,
                     _SignatureLookup(input_dtypes, signature_name, answer))


cdef object _build(JsonCodec codec, tfs_json *P, bytes data, object input_dtypes,
                   bint use_twin):
    """The request from a successful C pass, or the twin's answer if a tensor does not fit."""
    cdef const uint8_t *base = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef tfs_tensor *t
    cdef int j, k
    cdef int order[TFS_MAX_TENSORS]  # the tensor of each alias, in sorted alias order
    cdef int64_t count, used = 0
    cdef bint zero
    if P.sig_off >= 0:
        raw_name = _string_at(base, <uint64_t>P.sig_off).decode("utf-8")
        signature_name = raw_name or DEFAULT_SIGNATURE
    else:
        signature_name = DEFAULT_SIGNATURE
    answer = input_dtypes(signature_name)
    cdef _Inputs s = _inputs_for(answer)
    if s.count == 0:
        return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
    if P.named:
        # The C pass leaves no duplicate keys, so "the same keys" is "as many, all found".
        if s.count > P.nt or (P.mode == TFS_MODE_INSTANCES and s.count != P.nt):
            return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
        for k in range(s.count):
            key = s.keys[k]
            if key is None:
                return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
            t = tfs_find_tensor(P, <const uint8_t *>PyBytes_AS_STRING(key),
                                PyBytes_GET_SIZE(key), k)
            if t == NULL:
                return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
            order[k] = <int>(t - P.t)
    else:
        if s.count != 1:
            return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
        order[0] = 0
    inputs = {}
    for k in range(s.count):
        t = &P.t[order[k]]
        if t.broken or t.rank < 0 or t.rank > codec._rank:
            return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
        # The element count the shape says, which must be the leaves read (no overflow: a
        # product past t.n already disagrees, unless a later dimension is 0).
        zero = False
        for j in range(t.rank):
            if t.shape[j] < 0:
                return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
            zero = zero or t.shape[j] == 0
        if zero:
            count = 0
        else:
            count = 1
            for j in range(t.rank):
                if count > t.n // t.shape[j]:
                    count = -1
                    break
                count *= t.shape[j]
        if count != t.n or count > codec._tensor_cmp or used + count > codec._request_cmp:
            return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
        used += count
        a = _tensor(t, <int>s.codes[k], s.descrs[k], base)
        if a is None:
            return _hand_over(codec, use_twin, data, input_dtypes, signature_name, answer)
        inputs[s.names[k]] = a
    return new_request(signature_name, inputs, P.mode == TFS_MODE_INPUTS)


cdef bytes _string_at(const uint8_t *base, uint64_t off):
    """The bytes of the validated JSON string whose opening quote is at ``base + off``."""
    cdef int esc
    cdef size_t n = tfs_string_span(base + off, &esc)
    if not esc:
        return PyBytes_FromStringAndSize(<const char *>base + off + 1, <Py_ssize_t>n)
    cdef uint8_t *tmp = <uint8_t *>malloc(n + 1)
    if tmp == NULL:
        raise MemoryError()
    try:
        n = tfs_unescape(base + off, n, tmp)
        return PyBytes_FromStringAndSize(<const char *>tmp, <Py_ssize_t>n)
    finally:
        free(tmp)


cdef object _b64_at(const uint8_t *base, uint64_t off):
    """The decoded bytes of a canonical base64 string at ``base + off``, else None."""
    cdef int esc
    cdef size_t n = tfs_string_span(base + off, &esc)
    if esc:
        return None
    cdef uint8_t *tmp = <uint8_t *>malloc(n // 4 * 3 + 3)
    if tmp == NULL:
        raise MemoryError()
    cdef int64_t m
    try:
        m = tfs_b64_decode(base + off + 1, n, tmp)
        if m < 0:
            return None
        return PyBytes_FromStringAndSize(<const char *>tmp, <Py_ssize_t>m)
    finally:
        free(tmp)


cdef tuple _shape_of(tfs_tensor *t):
    return tuple([t.shape[j] for j in range(t.rank)])


cdef object _tensor(tfs_tensor *t, int dtype, object np_dtype, const uint8_t *base):
    """Tensor ``t`` as an array of ``dtype`` (``np_dtype`` its numpy dtype where the C
    conversion fills it, else None), or None if a leaf does not fit it."""
    cdef Py_ssize_t i
    cdef int rc
    cdef void *out
    if dtype == DT_STRING:
        values = []
        for i in range(t.n):
            if t.kind[i] == TFS_LEAF_STR:
                values.append(_string_at(base, t.val[i]))
            elif t.kind[i] == TFS_LEAF_B64:
                v = _b64_at(base, t.val[i])
                if v is None:
                    return None
                values.append(v)
            else:
                return None
        arr = np.empty(t.n, dtype=object)
        arr[:] = values
        return arr.reshape(_shape_of(t))
    if np_dtype is None:
        return None
    # (itemsizes are at most 8, so fewer leaves than _ALIGN_FROM // 8 are always small)
    if t.n >= _ALIGN_FROM // 8 and t.n * (<Py_ssize_t>np_dtype.itemsize) >= _ALIGN_FROM:
        arr = aligned_empty(_shape_of(t), np_dtype)
    else:
        # numpy's own allocation, as np.empty, without its argument parsing (t.shape holds
        # int64_t, which is Py_ssize_t here: checked at import)
        arr = new_array(<cnp.dtype>np_dtype, t.rank, <const cnp.npy_intp *>t.shape, NULL, None)
    if t.n == 0:
        return arr
    out = cnp.PyArray_DATA(<cnp.ndarray>arr)
    if t.n >= 16384:
        with nogil:
            rc = tfs_convert(t, dtype, out)
    else:
        rc = tfs_convert(t, dtype, out)
    return arr if rc == 0 else None


# ---------------------------------------------------------------------------------------------
# Tensors to JSON.

cdef class _Part:
    """One output ready to write: a C-contiguous buffer (or pre-rendered string tokens), its
    writer kind, shape, and an upper bound on its text."""

    cdef tfs_wsrc src
    cdef Py_buffer view
    cdef bint has_view
    cdef object array
    cdef list tokens
    cdef const char **token_ptrs
    cdef size_t *token_lens
    cdef int64_t *shape
    cdef int ndim
    cdef object bound

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
        free(self.token_ptrs)
        free(self.token_lens)
        free(self.shape)


cdef int _dtype_code(object a) except? -2:
    try:
        return int(from_numpy(a.dtype))
    except KeyError:
        return -1


cdef object _text_bound(tuple shape, object per_value):
    """Upper bound on the text of a tensor of ``shape`` whose values take ``per_value`` bytes
    each (an int, or the exact total for tokens if ``per_value`` is a tuple)."""
    lists = 0
    span = 1
    for d in shape:
        lists += span
        span *= d
    values = span
    if type(per_value) is tuple:
        return per_value[0] + 2 * values + 4 * lists + 2
    return values * (per_value + 2) + 4 * lists + 2


cdef bytes _escape(bytes x):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(x)
    cdef const uint8_t *s = <const uint8_t *>PyBytes_AS_STRING(x)
    if not tfs_utf8_valid(s, <size_t>n):
        # as the reference: invalid UTF-8 becomes U+FFFD (the output must be JSON)
        x = x.decode("utf-8", "replace").encode("utf-8")
        n = PyBytes_GET_SIZE(x)
        s = <const uint8_t *>PyBytes_AS_STRING(x)
    cdef char *tmp = <char *>malloc(6 * n + 2)
    if tmp == NULL:
        raise MemoryError()
    cdef size_t m
    try:
        m = tfs_write_json_string(s, <size_t>n, tmp)
        return PyBytes_FromStringAndSize(tmp, <Py_ssize_t>m)
    finally:
        free(tmp)


cdef _Part _prepare(str name, object a, int dtype):
    """``a`` ready to write as ``dtype``, or None when the twin should write (or reject) it."""
    cdef _Part part = _Part.__new__(_Part)
    cdef Py_ssize_t i, n
    cdef int kind
    per_value = None
    if dtype == DT_FLOAT:
        if a.dtype != np.float32:
            with np.errstate(over="ignore"):  # a declared float holding big doubles: +-inf
                a = a.astype(np.float32)
        kind, per_value = TFS_W_F32, TFS_MAX_F32_TEXT
    elif dtype == DT_DOUBLE:
        a = a.astype(np.float64, copy=False)
        kind, per_value = TFS_W_F64, TFS_MAX_F64_TEXT
    elif dtype in _INT_WRITERS:
        np_dtype, kind = _INT_WRITERS[dtype]
        a = a.astype(np_dtype, copy=False)
        per_value = TFS_MAX_INT_TEXT
    elif dtype == DT_BOOL:
        if a.dtype != np.bool_:
            return None
        kind, per_value = TFS_W_BOOL, TFS_MAX_BOOL_TEXT
    elif dtype == DT_STRING:
        if a.dtype != object:
            return None
        kind = TFS_W_TOKENS
        b64 = name.endswith("_bytes")
        tokens = []
        for x in a.ravel().tolist():
            if type(x) is not bytes:
                x = _string_bytes(x)
            if b64:
                tokens.append(b'{"b64": "' + binascii.b2a_base64(x, newline=False) + b'"}')
            else:
                tokens.append(_escape(x))
        part.tokens = tokens
        n = len(tokens)
        part.token_ptrs = <const char **>malloc(max(n, 1) * sizeof(char *))
        part.token_lens = <size_t *>malloc(max(n, 1) * sizeof(size_t))
        if part.token_ptrs == NULL or part.token_lens == NULL:
            raise MemoryError()
        total = 0
        for i in range(n):
            tok = <bytes>tokens[i]
            part.token_ptrs[i] = PyBytes_AS_STRING(tok)
            part.token_lens[i] = <size_t>PyBytes_GET_SIZE(tok)
            total += PyBytes_GET_SIZE(tok)
        per_value = (total,)
    elif a.size == 0:
        # nothing is written, so nothing fails (as in TF Serving): only the brackets
        kind = TFS_W_TOKENS
        part.tokens = []
        per_value = (0,)
    else:
        return None
    part.src.kind = kind
    part.src.tokens = part.token_ptrs
    part.src.token_lens = part.token_lens
    part.src.data = NULL
    if kind != TFS_W_TOKENS:
        if not a.flags.c_contiguous:
            a = a.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        PyObject_GetBuffer(a, &part.view, PyBUF_SIMPLE)
        part.has_view = True
        part.src.data = part.view.buf
    part.array = a
    shape = tuple(a.shape)
    part.ndim = len(shape)
    part.shape = <int64_t *>malloc(max(part.ndim, 1) * sizeof(int64_t))
    if part.shape == NULL:
        raise MemoryError()
    for i in range(part.ndim):
        part.shape[i] = shape[i]
    part.bound = _text_bound(shape, per_value)
    return part


def format_predict_response(outputs, columnar, output_dtypes=None):
    """The JSON body of a predict response, exactly as the twin writes it (see ``_json_py``):
    ``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar), TF Serving's value text,
    outputs in sorted alias order, TF Serving's errors."""
    return format_response(outputs, columnar, output_dtypes)


cdef object format_response(object outputs, bint columnar, object output_dtypes):
    """``format_predict_response`` for compiled callers (declared in ``_json.pxd``)."""
    try:
        body = _format(outputs, columnar, output_dtypes)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:  # noqa: BLE001 - whatever went wrong, the reference decides
        body = None
    if body is None:
        return _twin.format_predict_response(outputs, columnar, output_dtypes)
    return body


def _format_fast(outputs, columnar, output_dtypes=None):
    """The fast writer alone: the body, or None where ``format_predict_response`` would hand
    the outputs to the twin (for tests and benchmarks)."""
    return _format(outputs, columnar, output_dtypes)


cdef object _format(object outputs, bint columnar, object output_dtypes):
    """The body, or None where the twin should write (or reject) the outputs: the small-response
    writer when it applies, else the general one."""
    cdef object body
    if (type(outputs) is dict and 0 < len(<dict>outputs) <= _SMALL_OUTPUTS
            and (output_dtypes is None or type(output_dtypes) is dict)):
        body = _format_small(<dict>outputs, columnar, <dict>output_dtypes)
        if body is not _GENERAL:
            return body
    return _format_general(outputs, columnar, output_dtypes)


# ---------------------------------------------------------------------------------------------
# The small-response writer: up to _SMALL_OUTPUTS outputs, each an exact ndarray that is
# C-contiguous, aligned and of a native numeric dtype its declared DataType writes without a
# conversion (what a model run returns). Everything is read through numpy's C API; no Python
# object is made but the body (and, for several outputs, the sorted alias list).

cdef enum:
    _SMALL_OUTPUTS = 8

cdef object _GENERAL = object()  # _format_small's "the general writer decides"
cdef object _ndarray = np.ndarray


cdef class _Writer:
    """How the small-response writer writes one DataType: from arrays of dtype ``descr``, with
    writer ``kind``, at most ``per_value`` bytes a value."""

    cdef object descr
    cdef int kind
    cdef int per_value


cdef _Writer _writer(object descr, int kind, int per_value):
    cdef _Writer w = _Writer.__new__(_Writer)
    w.descr = descr
    w.kind = kind
    w.per_value = per_value
    return w


# DataType -> _Writer, for the declared DataTypes written without a conversion (a list indexed
# by the DataType's int value, None elsewhere); and numpy dtype -> _Writer for undeclared
# outputs (the DataType the reference's from_numpy gives).
cdef dict _DECLARED_WRITERS = {
    DT_FLOAT: _writer(np.dtype(np.float32), TFS_W_F32, TFS_MAX_F32_TEXT),
    DT_DOUBLE: _writer(np.dtype(np.float64), TFS_W_F64, TFS_MAX_F64_TEXT),
    DT_BOOL: _writer(np.dtype(np.bool_), TFS_W_BOOL, TFS_MAX_BOOL_TEXT),
}
for _code, (_np_dtype, _kind) in _INT_WRITERS.items():
    _DECLARED_WRITERS[_code] = _writer(_np_dtype, _kind, TFS_MAX_INT_TEXT)
cdef list _WRITER_OF_CODE = [_DECLARED_WRITERS.get(code) for code in range(32)]
cdef dict _UNDECLARED_WRITERS = {
    (<_Writer>w).descr: w for code, w in _DECLARED_WRITERS.items()
    if int(from_numpy((<_Writer>w).descr)) == code
}


cdef object _declared_writer(object declared):
    """The _Writer of a declared DataType, or None. Read as a C integer, as the reference's
    ``int(declared)`` reads an int (a DataType is one; hashing it into a dict of ints would
    compare through Python's IntEnum slots); anything else is for the general writer."""
    cdef int overflow = 0
    cdef long code
    if not isinstance(declared, int):
        return None
    code = PyLong_AsLongAndOverflow(declared, &overflow)
    if overflow or code < 0 or code >= 32:
        return None
    return <object>PyList_GET_ITEM(_WRITER_OF_CODE, code)


# Alias -> its JSON key text (as the reference's _json_string writes it, UTF-8), for responses
# with several outputs; bounded.
cdef dict _key_texts = {}
cdef Py_ssize_t _KEY_TEXTS_MAX = 4096


cdef bytes _key_text(object name):
    key = _key_texts.get(name)
    if key is None:
        key = _json_string(name).encode("utf-8")
        if len(_key_texts) >= _KEY_TEXTS_MAX:
            _key_texts.clear()
        _key_texts[name] = key
    return <bytes>key


cdef object _format_small(dict outputs, bint columnar, dict output_dtypes):
    """The body, or _GENERAL when an output is not one this writer takes (or the row format's
    rules fail: the general writer and the twin then decide what is said)."""
    cdef Py_ssize_t n = len(outputs)
    cdef tfs_wsrc src[_SMALL_OUTPUTS]
    cdef const int64_t *shapes[_SMALL_OUTPUTS]
    cdef int ndims[_SMALL_OUTPUTS]
    cdef int64_t positions[_SMALL_OUTPUTS]
    cdef Py_ssize_t k, row, batch = -1
    cdef int64_t idx, bound = 64, values, lists, span, d
    cdef int j
    cdef cnp.npy_intp *shape
    cdef int nd
    cdef _Writer w
    cdef list keys = None
    cdef list held = None  # several outputs: the arrays, kept alive while they are read
    cdef bint several = n > 1
    cdef Py_ssize_t pos = 0
    cdef PyObject *first_key
    cdef PyObject *first_value
    cdef int64_t key_text = 0
    if several:
        names = sorted(outputs)
        held = []
    else:
        PyDict_Next(outputs, &pos, &first_key, &first_value)
        name = <object>first_key
    for k in range(n):
        if several:
            name = names[k]
            a = outputs[name]
            held.append(a)
        else:
            a = <object>first_value  # (a reference held while it is read)
        if type(a) is not _ndarray:
            return _GENERAL
        # (cast, not assigned to a typed variable: ``a`` already holds the reference)
        if not cnp.PyArray_CHKFLAGS(<cnp.ndarray>a,
                                    cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
            return _GENERAL
        descr = <object>cnp.PyArray_DESCR(<cnp.ndarray>a)
        nd = cnp.PyArray_NDIM(<cnp.ndarray>a)
        shape = cnp.PyArray_DIMS(<cnp.ndarray>a)
        declared = None if output_dtypes is None else output_dtypes.get(name)
        if declared is None:
            w = _UNDECLARED_WRITERS.get(descr)
            if w is None:
                return _GENERAL
        else:
            w = _declared_writer(declared)
            if w is None or (descr is not w.descr and not (descr == w.descr)):
                return _GENERAL
        if not columnar:
            if nd == 0 or (batch >= 0 and shape[0] != batch):
                return _GENERAL
            batch = shape[0]
        # The reference's _text_bound, in C: values * (per_value + 2) + 4 * lists + 2, where
        # lists counts the brackets of every level (a huge empty shape goes to the general one).
        lists = 0
        span = 1
        for j in range(nd):
            d = shape[j]
            lists += span
            if span > (<int64_t>1 << 40) or d > (<int64_t>1 << 40):
                return _GENERAL
            span *= d
        values = span
        bound += values * (w.per_value + 2) + 4 * lists + 2
        src[k].kind = w.kind
        src[k].data = cnp.PyArray_BYTES(<cnp.ndarray>a)
        src[k].tokens = NULL
        src[k].token_lens = NULL
        shapes[k] = <const int64_t *>shape
        ndims[k] = nd
    if several:
        keys = [_key_text(name) for name in names]
        for key in keys:
            key_text += PyBytes_GET_SIZE(<bytes>key) + 4
        bound += key_text * (batch + 1 if not columnar else 1) + 4 * (batch if batch > 0 else 0)
    cdef char *start = _scratch_take(<size_t>bound)
    if start == NULL:
        raise MemoryError()
    cdef char *o = start
    try:
        if columnar:
            o = _puts(o, b'{"outputs": ')
            if several:
                o = _puts(o, b"{")
            for k in range(n):
                if several:
                    if k:
                        o = _puts(o, b", ")
                    o = _putb(o, <bytes>keys[k])
                    o = _puts(o, b": ")
                idx = 0
                o = tfs_write_nested(o, &src[k], &idx, shapes[k], ndims[k])
            o = _puts(o, b"}}") if several else _puts(o, b"}")
        elif not several:
            o = _puts(o, b'{"predictions": ')
            idx = 0
            o = tfs_write_nested(o, &src[0], &idx, shapes[0], ndims[0])
            o = _puts(o, b"}")
        else:
            o = _puts(o, b'{"predictions": [')
            for k in range(n):
                positions[k] = 0
            for row in range(batch):
                if row:
                    o = _puts(o, b", ")
                o = _puts(o, b"{")
                for k in range(n):
                    if k:
                        o = _puts(o, b", ")
                    o = _putb(o, <bytes>keys[k])
                    o = _puts(o, b": ")
                    o = tfs_write_nested(o, &src[k], &positions[k], shapes[k] + 1, ndims[k] - 1)
                o = _puts(o, b"}")
            o = _puts(o, b"]}")
        return PyBytes_FromStringAndSize(start, o - start)
    finally:
        _scratch_give(start)


# ---------------------------------------------------------------------------------------------
# The general writer: any number of outputs, any array-likes, conversions and strings.

cdef object _format_general(object outputs, bint columnar, object output_dtypes):
    if not outputs:
        return None
    names = sorted(outputs)
    cdef list parts = []
    cdef _Part part
    cdef Py_ssize_t batch = -1, k, row
    cdef int64_t idx
    for name in names:
        a = np.asarray(outputs[name])
        if not columnar:
            if a.ndim == 0 or (batch >= 0 and a.shape[0] != batch):
                return None
            batch = a.shape[0]
        declared = None if output_dtypes is None else output_dtypes.get(name)
        dtype = int(declared) if declared is not None else _dtype_code(a)
        part = _prepare(name, a, dtype)
        if part is None:
            return None
        parts.append(part)
    keys = [_json_string(name).encode("utf-8") for name in names]
    cdef bint several = len(names) > 1
    bound = 64
    for part in parts:
        bound += part.bound
    if several:
        key_text = sum([len(key) + 4 for key in keys])
        bound += key_text * (batch + 1 if not columnar else 1) + 4 * max(batch, 0)
    cdef Py_ssize_t size = bound
    cdef char *start = _scratch_take(size)
    if start == NULL:
        raise MemoryError()
    cdef char *o = start
    try:
        if columnar:
            o = _puts(o, b'{"outputs": ')
            if several:
                o = _puts(o, b"{")
            for k in range(len(parts)):
                part = parts[k]
                if several:
                    if k:
                        o = _puts(o, b", ")
                    o = _putb(o, <bytes>keys[k])
                    o = _puts(o, b": ")
                idx = 0
                o = tfs_write_nested(o, &part.src, &idx, part.shape, part.ndim)
            o = _puts(o, b"}}") if several else _puts(o, b"}")
        elif not several:
            part = parts[0]
            o = _puts(o, b'{"predictions": ')
            idx = 0
            o = tfs_write_nested(o, &part.src, &idx, part.shape, part.ndim)
            o = _puts(o, b"}")
        else:
            o = _puts(o, b'{"predictions": [')
            positions = [0] * len(parts)
            for row in range(batch):
                if row:
                    o = _puts(o, b", ")
                o = _puts(o, b"{")
                for k in range(len(parts)):
                    part = parts[k]
                    if k:
                        o = _puts(o, b", ")
                    o = _putb(o, <bytes>keys[k])
                    o = _puts(o, b": ")
                    idx = positions[k]
                    o = tfs_write_nested(o, &part.src, &idx, part.shape + 1, part.ndim - 1)
                    positions[k] = idx
                o = _puts(o, b"}")
            o = _puts(o, b"]}")
        # An exact-size copy: allocations of the same size each time let malloc recycle the
        # memory (a large over-allocation shrunk in place makes every response fault in fresh
        # pages, which costs more than this copy).
        return PyBytes_FromStringAndSize(start, o - start)
    finally:
        _scratch_give(start)


# A scratch buffer reused across responses (its pages stay mapped), up to _SCRATCH_KEEP bytes.
# Taken and given back with the GIL held; a call that finds it taken (another thread, or a
# reentrant call) uses a private allocation.
cdef char *_scratch = NULL
cdef size_t _scratch_cap = 0
cdef bint _scratch_busy = False
cdef size_t _SCRATCH_KEEP = 64 << 20


cdef char *_scratch_take(size_t size):
    global _scratch, _scratch_cap, _scratch_busy
    cdef char *buf
    if _scratch_busy or size > _SCRATCH_KEEP:
        return <char *>malloc(size)
    if size > _scratch_cap:
        free(_scratch)
        _scratch = <char *>malloc(size)
        _scratch_cap = size if _scratch != NULL else 0
        if _scratch == NULL:
            return NULL
    _scratch_busy = True
    return _scratch


cdef void _scratch_give(char *buf):
    global _scratch_busy
    if buf == _scratch:
        _scratch_busy = False
    else:
        free(buf)


cdef inline char *_puts(char *o, const char *text):
    cdef size_t n = strlen(text)
    memcpy(o, text, n)
    return o + n


cdef inline char *_putb(char *o, bytes text):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    memcpy(o, PyBytes_AS_STRING(text), n)
    return o + n
