# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled msgpack tensor codec for REST predict; the same contract as its twin ``_msgpack_py``.

``MsgpackCodec(limits)`` with ``parse_predict_request(body, input_dtypes) -> PredictRequest``,
``format_predict_response(outputs, columnar, output_dtypes=None) -> bytes`` and
``format_error(message) -> bytes`` behaves exactly as :mod:`tfsfast.codecs._msgpack_py`'s, the
reference (same tensors, same bytes, same errors under the same ``CodecLimits``); see it for the
wire format. The module-level functions are the codec with ``DEFAULT_CODEC_LIMITS``.

Design, as for the JSON codec: a fast path for the bodies tfsfast's own clients send, the twin
for everything else. A separate algorithm from the twin, not the twin compiled: this walks the
bytes in C, the twin reads them with the ``msgpack`` package.

* Request. Bodies made of tensor maps (``{"signature_name"?, "instances"|"inputs": <tensor map>
  or {alias: <tensor map>, ...}}``, numeric dtypes) are walked here header by header, straight
  over the body's bytes: no copy of the body (the twin copies it into a ``msgpack.Unpacker``),
  no Python object per map entry, and each tensor is an ``np.frombuffer`` view over the body.
  Anything else (plain values, string tensors, unknown keys, any error) goes to the twin codec
  made with the same ``CodecLimits``, which produces the exact result or message. The limits
  are C fields of the codec, set when it is made.
* Response. Numeric outputs are written into one exactly sized ``bytes``: the headers, then one
  ``memcpy`` of each tensor's buffer. (The twin's ``msgpack.Packer`` copies each buffer into
  its own growing buffer and then once more into the result.) String outputs go to the twin.

Measured with ``python -m bench codecs``: the fast path's cost is a few microseconds per
request plus one copy of the output data, against memcpy of the same bytes.

Ownership: request tensors borrow the body (they keep it alive; read-only when it is bytes).
Thread-safety: reentrant; no shared mutable state.
"""

import numpy as np

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from tfsfast.codecs._json cimport as_request, new_request

from tfsfast.codecs import _msgpack_py as _twin
from tfsfast.codecs._json import PredictRequest
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.codecs.twin_fallback import SignatureLookup as _SignatureLookup
from tfsfast.runtime.dtypes import DataType, to_numpy

__all__ = [
    "MsgpackCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
    "parse_predict_request",
]

format_error = _twin.format_error  # not on a hot path; one implementation keeps it identical
DTYPE_NAMES = _twin.DTYPE_NAMES

_DEFAULT_SIGNATURE = _twin.DEFAULT_SIGNATURE

# wire name (bytes) -> (DataType, numpy dtype) for the dtypes the fast path carries
cdef dict _FAST_DTYPES = {
    name.encode(): (int(dt), np.dtype(to_numpy(dt)))
    for name, dt in DTYPE_NAMES.items() if dt != DataType.DT_STRING
}
cdef dict _WIRE_NAME = {int(dt): name.encode() for name, dt in DTYPE_NAMES.items()}
# numpy dtype -> (DataType, wire name) for the numeric dtypes the writer carries
cdef dict _BY_NUMPY = {
    np.dtype(to_numpy(dt)): (int(dt), name.encode())
    for name, dt in DTYPE_NAMES.items() if dt != DataType.DT_STRING
}
cdef int _DT_BOOL = int(DataType.DT_BOOL)
cdef int _DT_STRING = int(DataType.DT_STRING)


# ---------------------------------------------------------------------------------------------
# Reading headers straight off the body. Each returns -1 (give up) on anything unexpected,
# including a length that runs past the end.

cdef inline Py_ssize_t _left(_Cursor *c):
    return c.end - c.p


cdef inline uint64_t _be(const uint8_t *p, int width):
    cdef uint64_t v = 0
    cdef int i
    for i in range(width):
        v = (v << 8) | p[i]
    return v


cdef int _container_header(_Cursor *c, Py_ssize_t *n, uint8_t fix, uint8_t wide16):
    """A map or array header: ``fix`` is its fix-size family (0x80 map, 0x90 array, size in the
    low nibble), ``wide16`` its 16-bit form (0xDE, 0xDC); the 32-bit form is the next code."""
    if _left(c) < 1:
        return -1
    cdef uint8_t b = c.p[0]
    if fix <= b <= fix + 0x0F:
        n[0] = b & 0x0F
        c.p += 1
    elif b == wide16 and _left(c) >= 3:
        n[0] = <Py_ssize_t>_be(c.p + 1, 2)
        c.p += 3
    elif b == wide16 + 1 and _left(c) >= 5:
        n[0] = <Py_ssize_t>_be(c.p + 1, 4)
        c.p += 5
    else:
        return -1
    return 0


cdef inline int _map_header(_Cursor *c, Py_ssize_t *n):
    return _container_header(c, n, 0x80, 0xDE)


cdef inline int _array_header(_Cursor *c, Py_ssize_t *n):
    return _container_header(c, n, 0x90, 0xDC)


cdef int _str(_Cursor *c, const uint8_t **s, Py_ssize_t *n):
    if _left(c) < 1:
        return -1
    cdef uint8_t b = c.p[0]
    cdef int width
    if 0xA0 <= b <= 0xBF:
        n[0] = b & 0x1F
        width = 0
    elif 0xD9 <= b <= 0xDB:
        width = 1 << (b - 0xD9)
        if _left(c) < 1 + width:
            return -1
        n[0] = <Py_ssize_t>_be(c.p + 1, width)
    else:
        return -1
    if _left(c) - 1 - width < n[0]:
        return -1
    s[0] = c.p + 1 + width
    c.p += 1 + width + n[0]
    return 0


cdef int _bin(_Cursor *c, Py_ssize_t *offset, Py_ssize_t *n):
    if _left(c) < 1:
        return -1
    cdef uint8_t b = c.p[0]
    if not 0xC4 <= b <= 0xC6:
        return -1
    cdef int width = 1 << (b - 0xC4)
    if _left(c) < 1 + width:
        return -1
    n[0] = <Py_ssize_t>_be(c.p + 1, width)
    if _left(c) - 1 - width < n[0]:
        return -1
    offset[0] = (c.p + 1 + width) - c.base
    c.p += 1 + width + n[0]
    return 0


cdef int _uint(_Cursor *c, uint64_t *v):
    if _left(c) < 1:
        return -1
    cdef uint8_t b = c.p[0]
    cdef int width
    if b <= 0x7F:
        v[0] = b
        c.p += 1
        return 0
    if 0xCC <= b <= 0xCF:
        width = 1 << (b - 0xCC)
        if _left(c) < 1 + width:
            return -1
        v[0] = _be(c.p + 1, width)
        c.p += 1 + width
        return 0
    return -1  # negative dimensions are the twin's to report


cdef inline bint _is(const uint8_t *s, Py_ssize_t n, const char *word, Py_ssize_t m):
    return n == m and memcmp(s, word, m) == 0


cdef int _tensor_map(_Cursor *c, _RawTensor *t):
    """A map with exactly the keys dtype, shape, data (numeric data in a bin)."""
    cdef Py_ssize_t n, k, klen, dim_count
    cdef const uint8_t *key
    cdef int seen = 0, j
    if _map_header(c, &n) < 0 or n != 3:
        return -1
    for k in range(3):
        if _str(c, &key, &klen) < 0:
            return -1
        if _is(key, klen, "dtype", 5) and not seen & 1:
            seen |= 1
            if _str(c, &t.dtype, &t.dtype_len) < 0:
                return -1
        elif _is(key, klen, "shape", 5) and not seen & 2:
            seen |= 2
            if _array_header(c, &dim_count) < 0 or dim_count > 32:
                return -1
            t.rank = <int>dim_count
            for j in range(t.rank):
                if _uint(c, &t.shape[j]) < 0:
                    return -1
        elif _is(key, klen, "data", 4) and not seen & 4:
            seen |= 4
            if _bin(c, &t.data_offset, &t.data_len) < 0:
                return -1
        else:
            return -1
    return 0


cdef int _tensors(_Cursor *c, _RawTensor *out, int *count, bint *named):
    """A tensor map, or a map of alias -> tensor map (at most 64)."""
    cdef _Cursor save = c[0]
    cdef Py_ssize_t n, k, j
    out[0].key = NULL
    if _tensor_map(c, &out[0]) == 0:
        count[0] = 1
        named[0] = False
        return 0
    c[0] = save
    if _map_header(c, &n) < 0 or n > 64 or n == 0:
        return -1
    for k in range(n):
        if _str(c, &out[k].key, &out[k].key_len) < 0:
            return -1
        for j in range(k):
            if _is(out[k].key, out[k].key_len, <const char *>out[j].key, out[j].key_len):
                return -1  # duplicate: the twin's error
        if _tensor_map(c, &out[k]) < 0:
            return -1
    count[0] = <int>n
    named[0] = True
    return 0


# ---------------------------------------------------------------------------------------------
# Request

cdef class MsgpackCodec:
    """The compiled msgpack codec under ``limits`` (a ``CodecLimits``); the contract is the
    twin's ``MsgpackCodec``. Bodies the fast path does not take go to the twin's codec made with
    the same ``limits``."""

    cdef readonly object limits
    cdef object _twin  # _msgpack_py.MsgpackCodec(limits)
    cdef bint _depth_ok  # the depth limit lets named tensor maps (depth 4) through
    cdef uint64_t _max_tensor, _max_request
    cdef int _max_rank  # at most 32, the ranks _RawTensor holds

    def __init__(self, limits):
        cdef uint64_t rank = _limit(limits.max_tensor_rank)
        self.limits = limits
        self._twin = _twin.MsgpackCodec(limits)
        self._depth_ok = limits.max_msgpack_depth >= 4
        self._max_tensor = _limit(limits.max_tensor_elements)
        self._max_request = _limit(limits.max_request_elements)
        self._max_rank = 32 if rank > 32 else <int>rank

    def parse_predict_request(self, body, input_dtypes):
        """Parses a msgpack predict body into tensors (see ``_msgpack_py`` for the format).

        ``input_dtypes(signature_name)`` is called once. Numeric tensor maps come back as
        read-only views over ``body``. Every failure is a ServingError with the twin's code and
        message.
        """
        cdef bytes data = body if type(body) is bytes else bytes(body)
        result = _fast_parse(self, data, input_dtypes)
        # The twin's requests are the twin's type; the compiled codecs' are the compiled JSON
        # codec's PredictRequest.
        if result is None:
            return as_request(self._twin.parse_predict_request(data, input_dtypes))
        if type(result) is _SignatureLookup:
            return as_request(self._twin.parse_predict_request(data, result))
        return result

    def _parse_fast(self, body, input_dtypes):
        """The fast path alone: the request, or None where the twin would take over (for
        tests)."""
        cdef bytes data = body if type(body) is bytes else bytes(body)
        result = _fast_parse(self, data, input_dtypes)
        return None if result is None or type(result) is _SignatureLookup else result

    def read_value(self, body):
        """The twin's ``read_value`` under this codec's limits (classify and regress bodies)."""
        return self._twin.read_value(body)

    def format_predict_response(self, outputs, columnar, output_dtypes=None):
        """The module's ``format_predict_response`` (no limit applies to it)."""
        return format_predict_response(outputs, columnar, output_dtypes)

    def format_error(self, message):
        """The module's ``format_error``."""
        return _twin.format_error(message)

    def __repr__(self):
        return f"MsgpackCodec({self.limits!r})"


# The codec with DEFAULT_CODEC_LIMITS, for callers without a codec of their own (a server hands
# its own CodecLimits to the codecs it makes).
cdef MsgpackCodec _default = MsgpackCodec(DEFAULT_CODEC_LIMITS)
parse_predict_request = _default.parse_predict_request
_parse_fast = _default._parse_fast


cdef object _fast_parse(MsgpackCodec codec, bytes data, object input_dtypes):
    """The request, or None (hand over before any lookup), or a _SignatureLookup (hand over
    after the lookup, which the twin must then reuse)."""
    # Per call, not global: input_dtypes runs Python code, where another thread may parse.
    cdef _RawTensor *raw = <_RawTensor *>malloc(64 * sizeof(_RawTensor))
    if raw == NULL:
        raise MemoryError()
    try:
        return _fast_parse_into(codec, data, input_dtypes, raw)
    finally:
        free(raw)


cdef object _fast_parse_into(MsgpackCodec codec, bytes data, object input_dtypes,
                             _RawTensor *_raw):
    cdef _Cursor c
    cdef Py_ssize_t n, k, slen, klen
    cdef const uint8_t *key
    cdef const uint8_t *sig = NULL
    cdef int mode = 0, count = 0, i, j
    cdef bint named = False, have_sig = False
    c.base = <const uint8_t *>PyBytes_AS_STRING(data)
    c.p = c.base
    c.end = c.base + PyBytes_GET_SIZE(data)
    if _map_header(&c, &n) < 0 or not codec._depth_ok:
        return None
    for k in range(n):
        if _str(&c, &key, &klen) < 0:
            return None
        if _is(key, klen, "signature_name", 14) and not have_sig:
            have_sig = True
            if _str(&c, &sig, &slen) < 0:
                return None
        elif (_is(key, klen, "instances", 9) or _is(key, klen, "inputs", 6)) and mode == 0:
            mode = 1 if klen == 9 else 2
            if _tensors(&c, _raw, &count, &named) < 0:
                return None
        else:
            return None
    if c.p != c.end or mode == 0:
        return None
    # Everything the twin checks before it looks the signature up is settled here first (a
    # lookup error must not win over a malformed body): UTF-8 of the strings, dtype names.
    wires = []
    index = {}
    try:
        raw_name = (<bytes>PyBytes_FromStringAndSize(<const char *>sig, slen)).decode(
            "utf-8") if have_sig else ""
        for i in range(count):
            wire = _FAST_DTYPES.get(PyBytes_FromStringAndSize(<const char *>_raw[i].dtype,
                                                              _raw[i].dtype_len))
            if wire is None:
                return None
            wires.append(wire)
            if named:
                index[(<bytes>PyBytes_FromStringAndSize(<const char *>_raw[i].key,
                                                        _raw[i].key_len)).decode("utf-8")] = i
    except UnicodeDecodeError:
        return None
    signature_name = raw_name or _DEFAULT_SIGNATURE
    answer = input_dtypes(signature_name)
    lookup = _SignatureLookup(input_dtypes, signature_name, answer)
    dtypes = {name: int(dt) for name, dt in answer.items()}
    names = sorted(dtypes)
    if not names:
        return lookup
    if named:
        if mode == 1 and len(index) != len(names):
            return lookup
        if any(name not in index for name in names):
            return lookup
    elif len(names) != 1:
        return lookup
    else:
        index[names[0]] = 0
    cdef uint64_t max_tensor = codec._max_tensor
    cdef uint64_t max_request = codec._max_request
    cdef int max_rank = codec._max_rank
    cdef uint64_t used = 0, elements
    cdef _RawTensor *t
    cdef int64_t batch = -1
    inputs = {}
    for name in names:
        i = <int>index[name]
        t = &_raw[i]
        wire = wires[i]
        if wire[0] != dtypes[name] or t.rank > max_rank:
            return lookup
        elements = 1
        for j in range(t.rank):
            if t.shape[j] and elements > max_tensor // t.shape[j]:
                return lookup  # beyond the limit (and never overflowing)
            elements *= t.shape[j]
        if elements > max_tensor or used + elements > max_request:
            return lookup
        used += elements
        np_dtype = wire[1]
        if <uint64_t>t.data_len != elements * <uint64_t>np_dtype.itemsize:
            return lookup
        if wire[0] == _DT_BOOL and not _bools_ok(c.base + t.data_offset, t.data_len):
            return lookup
        if mode == 1:  # instances: a shared batch dimension of at least one
            if t.rank == 0 or t.shape[0] == 0 or (batch >= 0 and <int64_t>t.shape[0] != batch):
                return lookup
            batch = <int64_t>t.shape[0]
        shape = tuple([t.shape[j] for j in range(t.rank)])
        inputs[name] = np.frombuffer(data, dtype=np_dtype, count=<Py_ssize_t>elements,
                                     offset=t.data_offset).reshape(shape)
    return new_request(signature_name, inputs, mode == 2)


cdef uint64_t _limit(object value):
    v = int(value)
    return 0 if v < 0 else (<uint64_t>v if v < (1 << 62) else (<uint64_t>1) << 62)


cdef bint _bools_ok(const uint8_t *p, Py_ssize_t n):
    cdef Py_ssize_t i
    cdef uint8_t acc = 0
    for i in range(n):
        acc |= p[i]
    return acc <= 1


# ---------------------------------------------------------------------------------------------
# Response

cdef Py_ssize_t _uint_size(uint64_t v):
    if v < 128:
        return 1
    if v < 256:
        return 2
    if v < 65536:
        return 3
    if v < 4294967296:
        return 5
    return 9


cdef char *_put_uint(char *o, uint64_t v):
    """v as msgpack's smallest unsigned encoding, as msgpack.Packer writes it."""
    cdef int width, i
    if v < 128:
        o[0] = <char>v
        return o + 1
    if v < 256:
        o[0] = <char>0xCC
        width = 1
    elif v < 65536:
        o[0] = <char>0xCD
        width = 2
    elif v < 4294967296:
        o[0] = <char>0xCE
        width = 4
    else:
        o[0] = <char>0xCF
        width = 8
    for i in range(width):
        o[1 + i] = <char>((v >> (8 * (width - 1 - i))) & 0xFF)
    return o + 1 + width


cdef inline Py_ssize_t _header_size(Py_ssize_t n, Py_ssize_t fix_max, int small):
    """Bytes of a str/bin/array/map header for length n."""
    if n <= fix_max:
        return 1
    if small and n < 256:
        return 2
    if n < 65536:
        return 3
    return 5


cdef char *_put_header(char *o, Py_ssize_t n, int fix_base, Py_ssize_t fix_max, int b8,
                       int b16, int b32):
    if n <= fix_max:
        o[0] = <char>(fix_base | n)
        return o + 1
    if b8 and n < 256:
        o[0] = <char>b8
        o[1] = <char>n
        return o + 2
    if n < 65536:
        o[0] = <char>b16
        o[1] = <char>(n >> 8)
        o[2] = <char>(n & 0xFF)
        return o + 3
    o[0] = <char>b32
    o[1] = <char>(n >> 24)
    o[2] = <char>((n >> 16) & 0xFF)
    o[3] = <char>((n >> 8) & 0xFF)
    o[4] = <char>(n & 0xFF)
    return o + 5


cdef int _copy_data(char *o, object a, Py_ssize_t nbytes) except -1:
    """Copies a C-contiguous array's bytes to o (the buffer protocol; numpy does not export
    every dtype, e.g. bfloat16, so those go through a byte view)."""
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(a, &view, PyBUF_SIMPLE)
    except (ValueError, TypeError, BufferError):
        PyObject_GetBuffer(a.reshape(-1).view(np.uint8), &view, PyBUF_SIMPLE)
    try:
        if view.len != nbytes:
            raise ValueError("unexpected buffer size")
        memcpy(o, view.buf, nbytes)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef inline Py_ssize_t _str_size(Py_ssize_t n):
    return _header_size(n, 31, 1) + n


cdef inline char *_put_str(char *o, bytes s):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(s)
    o = _put_header(o, n, 0xA0, 31, 0xD9, 0xDA, 0xDB)
    memcpy(o, PyBytes_AS_STRING(s), n)
    return o + n


def format_predict_response(outputs, columnar, output_dtypes=None):
    """The msgpack body of a predict response, exactly as the twin writes it."""
    try:
        body = _format(outputs, columnar, output_dtypes)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:  # whatever went wrong, the reference decides
        body = None
    if body is None:
        return _twin.format_predict_response(outputs, columnar, output_dtypes)
    return body


def _format_fast(outputs, columnar, output_dtypes=None):
    """The fast writer alone: the body, or None where ``format_predict_response`` would hand
    the outputs to the twin (for tests and benchmarks)."""
    return _format(outputs, columnar, output_dtypes)


cdef object _format(object outputs, bint columnar, object output_dtypes):
    if not outputs:
        return None
    names = sorted(outputs)
    arrays = []
    wires = []
    cdef Py_ssize_t batch = -1
    for name in names:
        a = np.asarray(outputs[name])
        if not columnar:
            if a.ndim == 0 or (batch >= 0 and a.shape[0] != batch):
                return None
            batch = a.shape[0]
        declared = None if output_dtypes is None else output_dtypes.get(name)
        known = _BY_NUMPY.get(a.dtype)  # (DataType, wire name) of the array's own dtype
        if known is None:
            return None
        if declared is not None and int(declared) != known[0]:
            return None  # casts are rare; the twin does them
        wire = known[1]
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        arrays.append(a)
        wires.append(wire)
    keys = [name.encode("utf-8") for name in names]
    top = b"outputs" if columnar else b"predictions"
    cdef bint several = len(names) > 1
    cdef Py_ssize_t size = 1 + _str_size(len(top)), k, j, nbytes
    cdef Py_ssize_t count = len(names)
    if several:
        size += _header_size(count, 15, 0)
    for k in range(count):
        a = arrays[k]
        if several:
            size += _str_size(len(keys[k]))
        size += 1 + 6 + _str_size(len(wires[k])) + 6 + _header_size(a.ndim, 15, 0) + 5
        for d in a.shape:
            size += _uint_size(d)
        nbytes = a.nbytes
        size += _header_size(nbytes, -1, 1) + nbytes
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char *o = PyBytes_AS_STRING(out)
    cdef char *start = o
    cdef const char *src
    o[0] = <char>0x81
    o = _put_str(o + 1, top)
    if several:
        o = _put_header(o, count, 0x80, 15, 0, 0xDE, 0xDF)
    for k in range(count):
        a = arrays[k]
        if several:
            o = _put_str(o, keys[k])
        o[0] = <char>0x83
        o = _put_str(o + 1, b"dtype")
        o = _put_str(o, wires[k])
        o = _put_str(o, b"shape")
        o = _put_header(o, a.ndim, 0x90, 15, 0, 0xDC, 0xDD)
        for d in a.shape:
            o = _put_uint(o, d)
        o = _put_str(o, b"data")
        nbytes = a.nbytes
        o = _put_header(o, nbytes, 0, -1, 0xC4, 0xC5, 0xC6)
        if nbytes:
            _copy_data(o, a, nbytes)
            o += nbytes
    if o - start != size:  # not expected: the sizes above mirror the writes
        return None
    return out
