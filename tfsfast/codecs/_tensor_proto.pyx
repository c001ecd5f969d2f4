# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
"""Compiled TensorProto codec: reads and writes the protobuf wire format directly.

Same contract as the Python twin ``_tensor_proto_py`` (read its docstring); differences are
only in cost:

* Decoding never builds protobuf objects. A tensor's ``tensor_content`` (and a packed
  ``float_val``/``double_val`` that needs no padding) becomes a read-only numpy array *over the
  request's bytes*, which the runtime then lends to TensorFlow as is.
* Encoding sizes the message first and allocates the result ``bytes`` once: the array's memory
  is copied exactly once, into the message.

The host must be little-endian (the wire order), as every platform TensorFlow ships for is.

A different algorithm from the twin, deliberately: this module parses and writes the wire
format itself, the twin goes through the protobuf runtime, so that the property tests comparing
them check one against an independent reference.
"""

cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import numpy as np

from tfsfast.codecs._tensor_proto_py import (
    PredictRequestView,
    check_limits,
    request_limit_error,
)
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.runtime.dtypes import DataType, from_numpy, to_numpy
from tfsfast.util.status import Code, ServingError

cnp.import_array()

__all__ = [
    "PredictRequestView",
    "TensorProtoCodec",
    "decode_predict_request",
    "decode_tensor",
    "encode_predict_response",
    "encode_tensor",
]

cdef enum:
    WT_VARINT = 0
    WT_FIXED64 = 1
    WT_LEN = 2
    WT_START_GROUP = 3
    WT_END_GROUP = 4
    WT_FIXED32 = 5
    # TensorProto field numbers.
    F_DTYPE = 1
    F_SHAPE = 2
    F_CONTENT = 4
    F_FLOAT = 5
    F_DOUBLE = 6
    F_INT = 7
    F_STRING = 8
    F_SCOMPLEX = 9
    F_INT64 = 10
    F_BOOL = 11
    F_DCOMPLEX = 12
    F_HALF = 13
    F_UINT32 = 16
    F_UINT64 = 17
    MAX_FIELD = 18
    DT_STRING_ = 7

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF

# dtype -> typed field number; -1 for dtypes tfsfast cannot hold.
cdef int _FIELD_OF[34]
for _i in range(34):
    _FIELD_OF[_i] = -1
_FIELD_OF[<int>DataType.DT_FLOAT] = F_FLOAT
_FIELD_OF[<int>DataType.DT_DOUBLE] = F_DOUBLE
_FIELD_OF[<int>DataType.DT_INT32] = F_INT
_FIELD_OF[<int>DataType.DT_UINT8] = F_INT
_FIELD_OF[<int>DataType.DT_INT16] = F_INT
_FIELD_OF[<int>DataType.DT_INT8] = F_INT
_FIELD_OF[<int>DataType.DT_UINT16] = F_INT
_FIELD_OF[<int>DataType.DT_STRING] = F_STRING
_FIELD_OF[<int>DataType.DT_COMPLEX64] = F_SCOMPLEX
_FIELD_OF[<int>DataType.DT_INT64] = F_INT64
_FIELD_OF[<int>DataType.DT_BOOL] = F_BOOL
_FIELD_OF[<int>DataType.DT_COMPLEX128] = F_DCOMPLEX
_FIELD_OF[<int>DataType.DT_HALF] = F_HALF
_FIELD_OF[<int>DataType.DT_BFLOAT16] = F_HALF
_FIELD_OF[<int>DataType.DT_UINT32] = F_UINT32
_FIELD_OF[<int>DataType.DT_UINT64] = F_UINT64

# numpy dtypes by DataType value, looked up once.
cdef list _NUMPY = [None] * 34
for _i in range(34):
    if _FIELD_OF[_i] >= 0:
        _NUMPY[_i] = to_numpy(_i)

cdef object _u64 = np.dtype(np.uint64)
cdef object _i64 = np.dtype(np.int64)
cdef object _i32 = np.dtype(np.int32)
cdef object _u16 = np.dtype(np.uint16)
cdef object _f32 = np.dtype(np.float32)
cdef object _f64 = np.dtype(np.float64)
cdef object _frombuffer = np.frombuffer
cdef object _empty = np.empty
cdef object _zeros = np.zeros
cdef object _ndarray = np.ndarray


class _WireError(Exception):
    """Malformed protobuf wire data (turned into the caller's status)."""


# ---------------------------------------------------------------------------------------------
# Wire primitives


cdef int read_varint(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                     uint64_t* out) except -1:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint8_t b
    cdef Py_ssize_t p = pos[0]
    while True:
        if p >= end or shift > 63:
            raise _WireError("bad varint")
        b = buf[p]
        p += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            break
        shift += 7
    pos[0] = p
    out[0] = result
    return 0


cdef int skip_field(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end, uint64_t tag) except -1:
    """Skips the value of a field whose tag was just read (groups included, as upb does)."""
    cdef uint64_t value = 0
    cdef int wt = <int>(tag & 7)
    cdef uint64_t inner = 0
    cdef Py_ssize_t start
    if wt == WT_VARINT:
        read_varint(buf, pos, end, &value)
    elif wt == WT_FIXED64:
        if end - pos[0] < 8:
            raise _WireError("truncated")
        pos[0] += 8
    elif wt == WT_FIXED32:
        if end - pos[0] < 4:
            raise _WireError("truncated")
        pos[0] += 4
    elif wt == WT_LEN:
        read_varint(buf, pos, end, &value)
        if value > <uint64_t>(end - pos[0]):
            raise _WireError("truncated")
        pos[0] += <Py_ssize_t>value
    elif wt == WT_START_GROUP:
        while True:
            start = pos[0]
            read_varint(buf, pos, end, &inner)
            if pos[0] - start > 5:  # a tag, as in read_tag
                raise _WireError("tag too long")
            if (inner & 7) == WT_END_GROUP:
                if (inner >> 3) != (tag >> 3):
                    raise _WireError("mismatched group")
                break
            if (inner >> 3) == 0:
                raise _WireError("field 0")
            skip_field(buf, pos, end, inner)
    else:
        raise _WireError("bad wire type")
    return 0


cdef inline int read_tag(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                         uint64_t* tag) except -1:
    cdef Py_ssize_t start = pos[0]
    read_varint(buf, pos, end, tag)
    if pos[0] - start > 5:  # upb reads a tag as a 32-bit varint: at most five bytes
        raise _WireError("tag too long")
    if (tag[0] >> 3) == 0 or (tag[0] >> 3) > 0x1FFFFFFF:
        raise _WireError("bad field number")
    if (tag[0] & 7) == WT_END_GROUP:
        raise _WireError("unexpected end group")
    return 0


cdef inline int read_len(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                         Py_ssize_t* start, Py_ssize_t* stop) except -1:
    cdef uint64_t n = 0
    read_varint(buf, pos, end, &n)
    if n > <uint64_t>(end - pos[0]):
        raise _WireError("truncated")
    start[0] = pos[0]
    stop[0] = pos[0] + <Py_ssize_t>n
    pos[0] = stop[0]
    return 0


# ---------------------------------------------------------------------------------------------
# What protobuf checks when it parses a TensorProto, without building one
#
# upb (the parser behind the twin and TF Serving's clients) rejects a message whose known
# fields are malformed wherever they are: a packed fixed-width field of a length no multiple of
# its width, a bad varint, a proto3 string that is not UTF-8, and the same inside submessages
# (the shape, resource handles, variants and the tensors they hold), nested at most 100 deep.
# A known field sent with a wire type it cannot have is an unknown field, only skipped.

cdef enum:
    # Field kinds.
    K_UNKNOWN = 0
    K_VARINT = 1          # int32/int64/uint64/bool/enum, one value
    K_PACKED_VARINT = 2   # repeated varint numbers: packed, or one value per occurrence
    K_PACKED_FIXED32 = 3  # repeated float
    K_PACKED_FIXED64 = 4  # repeated double
    K_BYTES = 5
    K_STRING = 6          # proto3 string: UTF-8
    # Message kinds (a field of one of these kinds is that submessage).
    M_TENSOR = 10
    M_SHAPE = 11
    M_DIM = 12
    M_RESOURCE = 13
    M_DTYPE_SHAPE = 14
    M_VARIANT = 15
    M_FIELDS_ONLY = 16  # no known field: every field is only skipped (protobuf's Empty)
    MAX_MESSAGE_DEPTH = 100  # upb's default recursion limit


cdef int _field_kind(int message, uint64_t field) noexcept:
    if message == M_TENSOR:
        if field == 1 or field == 3:
            return K_VARINT
        if field == 2:
            return M_SHAPE
        if field == 4 or field == 8 or field == 18:
            return K_BYTES
        if field == 5 or field == 9:
            return K_PACKED_FIXED32
        if field == 6 or field == 12:
            return K_PACKED_FIXED64
        if field == 7 or field == 10 or field == 11 or field == 13 or field == 16 or field == 17:
            return K_PACKED_VARINT
        if field == 14:
            return M_RESOURCE
        if field == 15:
            return M_VARIANT
    elif message == M_SHAPE:
        if field == 2:
            return M_DIM
        if field == 3:
            return K_VARINT
    elif message == M_DIM:
        if field == 1:
            return K_VARINT
        if field == 2:
            return K_STRING
    elif message == M_RESOURCE:
        if field == 1 or field == 2 or field == 3 or field == 5:
            return K_STRING
        if field == 4:
            return K_VARINT
        if field == 6:
            return M_DTYPE_SHAPE
    elif message == M_DTYPE_SHAPE:
        if field == 1:
            return K_VARINT
        if field == 2:
            return M_SHAPE
    elif message == M_VARIANT:
        if field == 1:
            return K_STRING
        if field == 2:
            return K_BYTES
        if field == 3:
            return M_TENSOR
    return K_UNKNOWN


cdef int _check_message(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, int message,
                        int depth) except -1:
    """Raises _WireError where upb would refuse the ``message`` in ``buf[pos:end]``."""
    cdef uint64_t tag = 0, value = 0
    cdef int kind, wt
    cdef Py_ssize_t start = 0, stop = 0
    while pos < end:
        read_tag(buf, &pos, end, &tag)
        kind = _field_kind(message, tag >> 3)
        wt = <int>(tag & 7)
        if wt == WT_LEN and kind != K_UNKNOWN and kind != K_VARINT:
            read_len(buf, &pos, end, &start, &stop)
            if kind == K_PACKED_FIXED32:
                if (stop - start) % 4:
                    raise _WireError("packed size")
            elif kind == K_PACKED_FIXED64:
                if (stop - start) % 8:
                    raise _WireError("packed size")
            elif kind == K_PACKED_VARINT:
                while start < stop:
                    read_varint(buf, &start, stop, &value)
            elif kind == K_STRING:
                if stop > start:
                    try:
                        PyUnicode_DecodeUTF8(<const char*>buf + start, stop - start, "strict")
                    except UnicodeDecodeError:
                        raise _WireError("bad UTF-8") from None
            elif kind >= M_TENSOR:
                if depth >= MAX_MESSAGE_DEPTH:
                    raise _WireError("nested too deep")
                _check_message(buf, start, stop, kind, depth + 1)
        else:
            # Scalars, and anything sent with a wire type its field cannot have (unknown).
            skip_field(buf, &pos, end, tag)
    return 0


cdef Py_ssize_t varint_size(uint64_t value) noexcept nogil:
    cdef Py_ssize_t n = 1
    while value > 0x7F:
        value >>= 7
        n += 1
    return n


cdef char* write_varint(char* p, uint64_t value) noexcept nogil:
    while value > 0x7F:
        p[0] = <char>((value & 0x7F) | 0x80)
        p += 1
        value >>= 7
    p[0] = <char>value
    return p + 1


cdef inline str _utf8(const uint8_t* buf, Py_ssize_t start, Py_ssize_t stop):
    try:
        return (<const char*>buf)[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise _WireError("invalid UTF-8") from None


# ---------------------------------------------------------------------------------------------
# Decoding a TensorProto


cdef inline object _parse_error(str name):
    return ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name}")


cdef Py_ssize_t _check_limits(TensorProtoCodec codec, str name, list dims,
                              int64_t count) except -1:
    """The twin's ``check_limits`` for a shape already checked to be >= 0 and to fit int64
    (``count`` is its element count), decided in C: only a shape over a limit calls the twin,
    which raises its error with its text."""
    if len(dims) > codec._max_rank or count > codec._max_elements:
        check_limits(name, dims, codec.limits)
    return <Py_ssize_t>count


cdef int _count_values(const uint8_t* buf, list spans, int field,
                       Py_ssize_t* count) except -1:
    """Number of scalar values the spans of a numeric repeated field hold (all validated)."""
    cdef Py_ssize_t n = 0, start, stop, p
    cdef int wt, width
    cdef uint64_t v = 0
    width = 4 if (field == F_FLOAT or field == F_SCOMPLEX) else (
        8 if (field == F_DOUBLE or field == F_DCOMPLEX) else 0)
    for wt, start, stop in spans:
        if wt == WT_LEN:
            if width:
                if (stop - start) % width:
                    raise _WireError("packed size")
                n += (stop - start) // width
            else:
                p = start
                while p < stop:
                    read_varint(buf, &p, stop, &v)
                    n += 1
        else:
            n += 1
    count[0] = n
    return 0


cdef object _fixed_values(object data, const uint8_t* buf, list spans, int field,
                          Py_ssize_t total, Py_ssize_t needed):
    """The first min(total, needed) float/double values, a view when one packed span has them."""
    cdef object np_dtype = _f32 if field in (F_FLOAT, F_SCOMPLEX) else _f64
    cdef Py_ssize_t width = np_dtype.itemsize
    cdef Py_ssize_t take = total if total < needed else needed
    cdef int wt
    cdef Py_ssize_t start, stop, n, done = 0
    if len(spans) == 1 and (<tuple>spans[0])[0] == WT_LEN:
        start = (<tuple>spans[0])[1]
        return _frombuffer(data, np_dtype, take, start)
    out = _empty(take, np_dtype)
    cdef unsigned char[::1] dst = out.view(np.uint8)
    for wt, start, stop in spans:
        if done >= take:
            break
        n = (stop - start) // width if wt == WT_LEN else 1
        if n > take - done:
            n = take - done
        memcpy(&dst[done * width], buf + start, n * width)
        done += n
    return out


cdef object _varint_values(const uint8_t* buf, list spans, Py_ssize_t total, Py_ssize_t needed):
    """The first min(total, needed) varint values, as raw uint64s."""
    cdef Py_ssize_t take = total if total < needed else needed
    out = _empty(take, _u64)
    cdef uint64_t[::1] dst = out
    cdef Py_ssize_t done = 0, p
    cdef int wt
    cdef Py_ssize_t start, stop
    cdef uint64_t v = 0
    for wt, start, stop in spans:
        p = start
        while done < take and p < stop:
            read_varint(buf, &p, stop, &v)
            dst[done] = v
            done += 1
        if done >= take:
            break
    return out


cdef object _decode_string_list(const uint8_t* buf, Py_ssize_t start, Py_ssize_t stop,
                                Py_ssize_t count):
    cdef Py_ssize_t p = start, i, total = 0
    cdef uint64_t n = 0
    lengths = []
    for i in range(count):
        read_varint(buf, &p, stop, &n)
        if n > <uint64_t>(stop - start):
            raise _WireError("string list size")
        lengths.append(<Py_ssize_t>n)
        total += <Py_ssize_t>n
    if p + total != stop:
        raise _WireError("string list size")
    out = _empty(count, object)
    for i in range(count):
        n = lengths[i]
        out[i] = PyBytes_FromStringAndSize(<const char*>buf + p, <Py_ssize_t>n)
        p += <Py_ssize_t>n
    return out


cdef inline int _scalar_wire_type(int field) noexcept:
    if field == F_FLOAT or field == F_SCOMPLEX:
        return WT_FIXED32
    if field == F_DOUBLE or field == F_DCOMPLEX:
        return WT_FIXED64
    if field == F_STRING:
        return -1  # bytes: length-delimited only
    return WT_VARINT


cdef int _read_shape(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, list dims) except -1:
    """Appends the dims of one TensorShapeProto occurrence (occurrences merge by appending)."""
    cdef uint64_t tag = 0, dim_tag = 0, size = 0
    cdef Py_ssize_t dstart, dstop
    while pos < end:
        read_tag(buf, &pos, end, &tag)
        if tag == ((2 << 3) | WT_LEN):
            read_len(buf, &pos, end, &dstart, &dstop)
            size = 0
            while dstart < dstop:
                read_tag(buf, &dstart, dstop, &dim_tag)
                if dim_tag == ((1 << 3) | WT_VARINT):
                    read_varint(buf, &dstart, dstop, &size)
                else:
                    skip_field(buf, &dstart, dstop, dim_tag)
            dims.append(<int64_t>size)
        else:
            skip_field(buf, &pos, end, tag)
    return 0


cdef object _decode(TensorProtoCodec codec, object data, const uint8_t* buf, Py_ssize_t end,
                    str name, list budget):
    cdef Py_ssize_t pos = 0, start = 0, stop = 0, content_start = 0, content_stop = 0
    cdef Py_ssize_t count, total, i
    cdef uint64_t tag = 0, v = 0
    cdef int64_t dtype = 0, product = 1, d
    cdef int field, wt
    cdef bint has_content = False
    dims = []
    typed = {}
    while pos < end:
        read_tag(buf, &pos, end, &tag)
        field = <int>(tag >> 3) if (tag >> 3) < MAX_FIELD else MAX_FIELD
        wt = <int>(tag & 7)
        if field == F_DTYPE and wt == WT_VARINT:
            read_varint(buf, &pos, end, &v)
            dtype = <int64_t>(<int>v)  # an enum is an int32 on the wire
        elif field == F_SHAPE and wt == WT_LEN:
            read_len(buf, &pos, end, &start, &stop)
            _read_shape(buf, start, stop, dims)
        elif field == F_CONTENT and wt == WT_LEN:
            read_len(buf, &pos, end, &content_start, &content_stop)
            has_content = content_stop > content_start
        elif F_FLOAT <= field <= F_UINT64 and field != 14 and field != 15:
            if wt == WT_LEN:
                read_len(buf, &pos, end, &start, &stop)
            elif wt == _scalar_wire_type(field):
                start = pos
                skip_field(buf, &pos, end, tag)
                stop = pos
            else:  # a wire type the field cannot have: an unknown field, as for any parser
                skip_field(buf, &pos, end, tag)
                continue
            spans = typed.get(field)
            if spans is None:
                spans = typed[field] = []
            (<list>spans).append((wt, start, stop))
        else:
            skip_field(buf, &pos, end, tag)

    if dtype <= 0 or dtype >= 34 or _FIELD_OF[dtype] < 0:
        raise _parse_error(name)
    for d in dims:
        if d < 0:
            raise _parse_error(name)
        if d and product > _INT64_MAX // d:
            raise _parse_error(name)
        product *= d
    count = _check_limits(codec, name, dims, product)
    if budget is not None:
        if budget[0] + count > codec._max_request:
            raise request_limit_error(codec.limits)
        budget[0] += count
    np_dtype = _NUMPY[dtype]
    shape = tuple(dims)
    if count == 0:
        return _empty(shape, np_dtype)
    if has_content:
        if dtype == DT_STRING_:
            return _decode_string_list(buf, content_start, content_stop, count).reshape(shape)
        if content_stop - content_start != count * np_dtype.itemsize:
            raise _parse_error(name)
        return _frombuffer(data, np_dtype, count, content_start).reshape(shape)

    field = _FIELD_OF[dtype]
    spans = typed.get(field, [])
    if dtype == DT_STRING_:
        total = len(spans)
        out = _empty(count, object)
        if total == 0:
            out[:] = [b""] * count
            return out.reshape(shape)
        for i in range(min(total, count)):
            wt, start, stop = spans[i]
            out[i] = PyBytes_FromStringAndSize(<const char*>buf + start, stop - start)
        if total < count:
            out[total:] = [out[total - 1]] * (count - total)
        return out.reshape(shape)

    _count_values(buf, spans, field, &total)
    if field == F_SCOMPLEX or field == F_DCOMPLEX:
        total //= 2  # (real, imaginary) pairs; an odd trailing part is ignored, as TF does
        values = _fixed_values(data, buf, spans, field, 2 * total, 2 * count).view(np_dtype)
    elif field == F_FLOAT or field == F_DOUBLE:
        values = _fixed_values(data, buf, spans, field, total, count)
    else:
        raw = _varint_values(buf, spans, total, count)
        if field == F_HALF:
            values = raw.astype(_u16).view(np_dtype)
        elif field == F_BOOL:
            values = raw != 0
        elif field == F_INT:
            values = raw.view(_i64).astype(_i32).astype(np_dtype, copy=False)
        elif field == F_INT64:
            values = raw.view(_i64)
        else:  # uint32 (truncated, as a C++ parser does) and uint64
            values = raw.astype(np_dtype, copy=False)
    if total == 0:
        return _zeros(shape, np_dtype)
    if total >= count:
        return values.reshape(shape)
    out = _empty(count, np_dtype)
    out[:total] = values
    out[total:] = values[total - 1]
    return out.reshape(shape)


cdef class TensorProtoCodec:
    """The TensorProto decoding that ``limits`` bound (contract: the twin's
    ``TensorProtoCodec``). The per-tensor limits are C integers, set here once."""

    cdef readonly object limits
    # Clamped to what they are compared with (a rank, an element count that fits int64), so
    # every comparison keeps its outcome.
    cdef Py_ssize_t _max_rank
    cdef int64_t _max_elements
    cdef object _max_request  # compared with the request's running count, a Python int

    def __init__(self, limits):
        self.limits = limits
        self._max_rank = min(limits.max_tensor_rank, 1 << 30)
        self._max_elements = min(limits.max_tensor_elements, 0x7FFFFFFFFFFFFFFF)
        self._max_request = limits.max_request_elements

    def decode_tensor(self, data, str name="", list budget=None):
        """The array a serialized TensorProto holds (contract: the twin's)."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            _check_message(<const uint8_t*>view.buf, 0, view.len, M_TENSOR, 0)
            return _decode(self, data, <const uint8_t*>view.buf, view.len, name, budget)
        except _WireError:
            raise _parse_error(name) from None
        finally:
            PyBuffer_Release(&view)

    def __repr__(self):
        return f"TensorProtoCodec({self.limits!r})"


# ``TensorProtoCodec(DEFAULT_CODEC_LIMITS).decode_tensor``, for callers without a codec of their
# own (a server hands its own ``CodecLimits`` to the codecs it makes).
decode_tensor = TensorProtoCodec(DEFAULT_CODEC_LIMITS).decode_tensor


# ---------------------------------------------------------------------------------------------
# Encoding a TensorProto: plan (sizes), then write into one bytes object.


cdef enum:
    # How a varint-field element is read from the array's memory (see _element).
    EK_NONE = 0
    EK_SIGNED = 1     # sign-extended to 64 bits, as protobuf writes an int32
    EK_UNSIGNED = 2
    EK_BOOL = 3       # 0 or 1, as numpy's bool -> uint64 cast gives
    MAX_DIMS = 64     # numpy's own limit (NPY_MAXDIMS)

# numpy dtype object -> DataType, for the dtypes ``from_numpy`` maps to one value each: numpy's
# builtin dtypes are singletons, so the lookup compares pointers; any other dtype object goes
# through ``from_numpy`` itself (same result, same errors).
cdef PyObject* _DESCR_PTR[34]
cdef int _DESCR_DT[34]
cdef int _DESCR_COUNT = 0
for _i in range(34):
    if _NUMPY[_i] is not None:
        _DESCR_PTR[_DESCR_COUNT] = <PyObject*>_NUMPY[_i]
        _DESCR_DT[_DESCR_COUNT] = <int>from_numpy(_NUMPY[_i])
        _DESCR_COUNT += 1

# Per DataType: how its varint-field elements are read, and their width in bytes.
cdef int _ELEM_KIND[34]
cdef int _ELEM_WIDTH[34]
for _i in range(34):
    _ELEM_KIND[_i] = EK_NONE
    _ELEM_WIDTH[_i] = 0
    if _NUMPY[_i] is not None and _i != DT_STRING_:
        _ELEM_WIDTH[_i] = _NUMPY[_i].itemsize
        if _FIELD_OF[_i] == F_HALF:
            _ELEM_KIND[_i] = EK_UNSIGNED  # the 16-bit pattern
        elif _NUMPY[_i].kind == "b":
            _ELEM_KIND[_i] = EK_BOOL
        elif _NUMPY[_i].kind == "u":
            _ELEM_KIND[_i] = EK_UNSIGNED
        elif _NUMPY[_i].kind == "i":
            _ELEM_KIND[_i] = EK_SIGNED


cdef inline int _data_type_of(object descr) except -1:
    cdef int i
    cdef PyObject* ptr = <PyObject*>descr
    for i in range(_DESCR_COUNT):
        if _DESCR_PTR[i] == ptr:
            return _DESCR_DT[i]
    return <int>from_numpy(descr)


cdef inline uint64_t _element(const char* p, int kind, int width) noexcept nogil:
    """One element of a varint field as the uint64 protobuf writes (an unaligned read of a
    little-endian value; a signed one is sign-extended, as protobuf writes an int32)."""
    cdef uint64_t value = 0
    cdef int shift
    if kind == EK_BOOL:
        return 1 if p[0] else 0
    memcpy(&value, p, width)
    if kind == EK_SIGNED and width < 8:
        shift = 64 - 8 * width
        return <uint64_t>((<int64_t>(value << shift)) >> shift)
    return value


cdef class _TensorPlan:
    """One tensor to write: its header and payload, with the sizes computed up front."""
    cdef int dtype
    cdef int field
    cdef int nd
    cdef Py_ssize_t dims[MAX_DIMS]
    cdef Py_ssize_t count           # number of elements
    cdef Py_ssize_t shape_size      # size of the TensorShapeProto body
    cdef object owner               # keeps `data` alive: a C-contiguous array, or None
    cdef const char* data           # the elements (fixed payload or varint source), or NULL
    cdef int elem_kind              # EK_* when the payload is varints, else EK_NONE
    cdef int elem_width
    cdef list strings               # bytes items for string_val, or None
    cdef bytes content              # string-list tensor_content, or None
    cdef Py_ssize_t payload_size    # size of the packed payload / content
    cdef Py_ssize_t size            # size of the whole TensorProto body


cdef Py_ssize_t _packed_varint_size(const char* data, Py_ssize_t count, int kind,
                                    int width) noexcept nogil:
    cdef Py_ssize_t i, n = 0
    for i in range(count):
        n += varint_size(_element(data + i * width, kind, width))
    return n


cdef inline Py_ssize_t _len_field_size(Py_ssize_t field, Py_ssize_t length) noexcept nogil:
    return varint_size(<uint64_t>(field << 3)) + varint_size(<uint64_t>length) + length


cdef bytes _string_list(list items):
    cdef Py_ssize_t total = 0, n = 0
    for b in items:
        total += varint_size(<uint64_t>PyBytes_GET_SIZE(b)) + PyBytes_GET_SIZE(b)
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* p = PyBytes_AS_STRING(out)
    for b in items:
        p = write_varint(p, <uint64_t>PyBytes_GET_SIZE(b))
    for b in items:
        n = PyBytes_GET_SIZE(b)
        memcpy(p, PyBytes_AS_STRING(b), n)
        p += n
    return out


cdef list _string_items(object array):
    items = []
    for v in array.ravel().tolist():
        if type(v) is bytes:
            items.append(v)
        elif isinstance(v, str):
            items.append((<str>v).encode("utf-8"))
        else:
            items.append(bytes(v))
    return items


cdef _TensorPlan _plan(object array, object dtype, bint tensor_content):
    """Sizes one tensor. An ndarray that already is C-contiguous in the dtype it is written as
    is read in place (no numpy call); anything else is converted as the twin converts it."""
    cdef _TensorPlan plan = _TensorPlan.__new__(_TensorPlan)
    cdef Py_ssize_t d, body = 0
    cdef int i, nd
    cdef cnp.ndarray arr
    cdef cnp.npy_intp* shape
    if type(array) is not _ndarray:
        array = np.asarray(array)
    arr = <cnp.ndarray>array
    descr = <object>cnp.PyArray_DESCR(arr)
    nd = cnp.PyArray_NDIM(arr)
    shape = cnp.PyArray_DIMS(arr)
    plan.dtype = _data_type_of(descr) if dtype is None else <int>int(dtype)
    if plan.dtype <= 0 or plan.dtype >= 34 or _FIELD_OF[plan.dtype] < 0:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Cannot return a tensor of type {DataType(plan.dtype).name}")
    plan.field = _FIELD_OF[plan.dtype]
    if nd > MAX_DIMS:
        raise ValueError(f"an array of rank {nd}")
    plan.nd = nd
    plan.count = 1
    plan.shape_size = 0
    for i in range(nd):
        d = shape[i]
        plan.dims[i] = d
        plan.count *= d
        # A Dim with size 0 is an empty message (proto3 omits the default).
        plan.shape_size += _len_field_size(
            2, (1 + varint_size(<uint64_t>d)) if d else 0)
    body = 1 + varint_size(<uint64_t>plan.dtype) + _len_field_size(2, plan.shape_size)
    plan.owner = plan.strings = plan.content = None
    plan.data = NULL
    plan.elem_kind = EK_NONE
    plan.payload_size = 0
    if plan.count:
        if plan.dtype == DT_STRING_:
            items = _string_items(array)
            if tensor_content:
                plan.content = _string_list(items)
                plan.payload_size = len(plan.content)
                body += _len_field_size(F_CONTENT, plan.payload_size)
            else:
                plan.strings = items
                for b in items:
                    body += _len_field_size(F_STRING, PyBytes_GET_SIZE(b))
        else:
            np_dtype = _NUMPY[plan.dtype]
            if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and descr is np_dtype):
                array = np.ascontiguousarray(array, dtype=np_dtype)
                arr = <cnp.ndarray>array
            plan.owner = array
            plan.data = cnp.PyArray_BYTES(arr)
            plan.elem_width = _ELEM_WIDTH[plan.dtype]
            if tensor_content or plan.field in (F_FLOAT, F_DOUBLE, F_SCOMPLEX, F_DCOMPLEX):
                plan.payload_size = plan.count * plan.elem_width
                if tensor_content:
                    plan.field = F_CONTENT
            else:
                plan.elem_kind = _ELEM_KIND[plan.dtype]
                plan.payload_size = _packed_varint_size(plan.data, plan.count, plan.elem_kind,
                                                        plan.elem_width)
            body += _len_field_size(plan.field, plan.payload_size)
    plan.size = body
    return plan


cdef char* _write_tag_len(char* p, int field, Py_ssize_t length) noexcept nogil:
    p = write_varint(p, <uint64_t>((field << 3) | WT_LEN))
    return write_varint(p, <uint64_t>length)


cdef char* _write_plan(char* p, _TensorPlan plan) except NULL:
    cdef Py_ssize_t d, i, n
    p = write_varint(p, <uint64_t>(F_DTYPE << 3))
    p = write_varint(p, <uint64_t>plan.dtype)
    p = _write_tag_len(p, F_SHAPE, plan.shape_size)
    for i in range(plan.nd):
        d = plan.dims[i]
        if d:
            p = _write_tag_len(p, 2, 1 + varint_size(<uint64_t>d))
            p[0] = 8  # Dim.size: field 1, varint
            p = write_varint(p + 1, <uint64_t>d)
        else:
            p = _write_tag_len(p, 2, 0)
    if plan.strings is not None:
        for b in plan.strings:
            n = PyBytes_GET_SIZE(b)
            p = _write_tag_len(p, F_STRING, n)
            memcpy(p, PyBytes_AS_STRING(b), n)
            p += n
    elif plan.content is not None:
        p = _write_tag_len(p, F_CONTENT, plan.payload_size)
        memcpy(p, PyBytes_AS_STRING(plan.content), plan.payload_size)
        p += plan.payload_size
    elif plan.data != NULL:
        p = _write_tag_len(p, plan.field, plan.payload_size)
        if plan.elem_kind == EK_NONE:
            memcpy(p, plan.data, plan.payload_size)
            p += plan.payload_size
        else:
            with nogil:
                for i in range(plan.count):
                    p = write_varint(p, _element(plan.data + i * plan.elem_width,
                                                 plan.elem_kind, plan.elem_width))
    return p


def encode_tensor(array, dtype=None, bint tensor_content=False):
    """The serialized TensorProto for ``array`` (contract: ``_tensor_proto_py.encode_tensor``)."""
    cdef _TensorPlan plan = _plan(array, dtype, tensor_content)
    out = PyBytes_FromStringAndSize(NULL, plan.size)
    _write_plan(PyBytes_AS_STRING(out), plan)
    return out


# ---------------------------------------------------------------------------------------------
# PredictRequest / PredictResponse


cdef int _read_model_spec(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                          object view) except -1:
    cdef uint64_t tag = 0, v = 0
    cdef Py_ssize_t start, stop, vpos
    while pos < end:
        read_tag(buf, &pos, end, &tag)
        if tag == ((1 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            view.model_name = _utf8(buf, start, stop)
        elif tag == ((2 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            # Int64Value: occurrences merge, so the value is kept unless this one sets it.
            if view.version is None:
                view.version = 0
            view.version_label = None
            vpos = start
            while vpos < stop:
                read_tag(buf, &vpos, stop, &tag)
                if tag == ((1 << 3) | WT_VARINT):
                    read_varint(buf, &vpos, stop, &v)
                    view.version = <int64_t>v
                else:
                    skip_field(buf, &vpos, stop, tag)
        elif tag == ((3 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            view.signature_name = _utf8(buf, start, stop)
        elif tag == ((4 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            view.version_label = _utf8(buf, start, stop)
            view.version = None
        else:
            skip_field(buf, &pos, end, tag)
    return 0


cdef int _read_input_entry(object data, const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                           dict inputs) except -1:
    cdef uint64_t tag
    cdef Py_ssize_t start, stop
    key = ""
    parts = []
    while pos < end:
        read_tag(buf, &pos, end, &tag)
        if tag == ((1 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            key = _utf8(buf, start, stop)
        elif tag == ((2 << 3) | WT_LEN):
            read_len(buf, &pos, end, &start, &stop)
            parts.append((start, stop))
        else:
            skip_field(buf, &pos, end, tag)
    if not parts:
        inputs[key] = b""
    elif len(parts) == 1:
        start, stop = parts[0]
        inputs[key] = memoryview(data)[start:stop]
    else:
        # Occurrences of a message field merge, as concatenated serializations do; but no part
        # may be completed by the next: one that is malformed on its own is the value instead
        # (the twin's ``_merged_value``).
        for start, stop in parts:
            if not _well_formed(buf, start, stop):
                inputs[key] = memoryview(data)[start:stop]
                return 0
        inputs[key] = b"".join(bytes(memoryview(data)[a:b]) for a, b in parts)
    return 0


cdef bint _well_formed(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end):
    """Whether buf[pos:end] is a sequence of complete fields (their contents unchecked)."""
    try:
        _check_message(buf, pos, end, M_FIELDS_ONLY, 0)
    except _WireError:
        return False
    return True


def decode_predict_request(data):
    """Reads a serialized PredictRequest (contract: ``_tensor_proto_py``); tensors stay views."""
    cdef Py_buffer pybuf
    cdef const uint8_t* buf
    cdef Py_ssize_t pos = 0, end, start, stop
    cdef uint64_t tag
    view = PredictRequestView()
    inputs = view.inputs
    PyObject_GetBuffer(data, &pybuf, PyBUF_SIMPLE)
    buf = <const uint8_t*>pybuf.buf
    end = pybuf.len
    try:
        while pos < end:
            read_tag(buf, &pos, end, &tag)
            if tag == ((1 << 3) | WT_LEN):
                read_len(buf, &pos, end, &start, &stop)
                view.has_model_spec = True
                _read_model_spec(buf, start, stop, view)
            elif tag == ((2 << 3) | WT_LEN):
                read_len(buf, &pos, end, &start, &stop)
                _read_input_entry(data, buf, start, stop, inputs)
            elif tag == ((3 << 3) | WT_LEN):
                read_len(buf, &pos, end, &start, &stop)
                view.output_filter.append(_utf8(buf, start, stop))
            else:
                skip_field(buf, &pos, end, tag)
    except _WireError:
        raise ServingError(Code.INVALID_ARGUMENT,
                           "Could not parse the request as a tensorflow.serving.PredictRequest"
                           ) from None
    finally:
        PyBuffer_Release(&pybuf)
    return view


def encode_predict_response(str model_name, str signature_name, version, outputs,
                            bint tensor_content=False):
    """A serialized PredictResponse (contract: ``_tensor_proto_py.encode_predict_response``)."""
    cdef Py_ssize_t spec_size = 0, total = 0, entry_size
    cdef bytes name_b = model_name.encode("utf-8")
    cdef bytes sig_b = signature_name.encode("utf-8")
    cdef Py_ssize_t version_size = 0
    cdef list plans = []
    cdef list keys = []
    cdef _TensorPlan plan
    cdef char* p
    if name_b:
        spec_size += _len_field_size(1, len(name_b))
    if version is not None:
        version_size = (1 + varint_size(<uint64_t><int64_t>version)) if version else 0
        spec_size += _len_field_size(2, version_size)
    if sig_b:
        spec_size += _len_field_size(3, len(sig_b))
    items = outputs.items() if hasattr(outputs, "items") else outputs
    for alias, array in items:
        key = (<str>alias).encode("utf-8")
        plan = _plan(array, None, tensor_content)
        keys.append(key)
        plans.append(plan)
        entry_size = _len_field_size(1, len(key)) + _len_field_size(2, plan.size)
        total += _len_field_size(1, entry_size)
    total += _len_field_size(2, spec_size)
    out = PyBytes_FromStringAndSize(NULL, total)
    p = PyBytes_AS_STRING(out)
    for i in range(len(plans)):
        key = keys[i]
        plan = plans[i]
        entry_size = _len_field_size(1, len(key)) + _len_field_size(2, plan.size)
        p = _write_tag_len(p, 1, entry_size)
        p = _write_tag_len(p, 1, len(key))
        memcpy(p, PyBytes_AS_STRING(key), len(key))
        p += len(key)
        p = _write_tag_len(p, 2, plan.size)
        p = _write_plan(p, plan)
    p = _write_tag_len(p, 2, spec_size)
    if name_b:
        p = _write_tag_len(p, 1, len(name_b))
        memcpy(p, PyBytes_AS_STRING(name_b), len(name_b))
        p += len(name_b)
    if version is not None:
        p = _write_tag_len(p, 2, version_size)
        if version:
            p[0] = 8
            p = write_varint(p + 1, <uint64_t><int64_t>version)
    if sig_b:
        p = _write_tag_len(p, 3, len(sig_b))
        memcpy(p, PyBytes_AS_STRING(sig_b), len(sig_b))
        p += len(sig_b)
    return out
