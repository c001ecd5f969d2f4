"""Pure-Python msgpack tensor codec for REST predict: the reference twin of ``_msgpack``.

A separate algorithm from the compiled ``_msgpack``, not the same source compiled: the compiled
codec walks the bytes in C for the common bodies (tensor maps, plain numeric lists) and hands
anything else to this module, which reads the body with the ``msgpack`` package; what the two
share (messages, the fallback) is this module, so results are identical. The request shape
and the row-format checks are JSON's too (``predict_format``).

The format (``Content-Type: application/msgpack``; README "msgpack") mirrors the JSON body:

Request: a map with optional ``signature_name`` (str) and exactly one of ``instances`` (row) or
``inputs`` (columnar). A tensor is either

* a **tensor map** ``{"dtype": <name>, "shape": [d0, ...], "data": <bin>}``: the raw
  little-endian bytes in C order; ``<name>`` is numpy's (float16, bfloat16, float32, float64,
  int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool, complex64, complex128) or
  ``string``, whose ``data`` is an array of bin (or str) values, flattened. A map is a tensor map
  when its keys are exactly these three. The dtype must be the signature's; the shape must fit
  the limits and match the data. Numeric tensors are decoded without a copy: the array is a
  read-only ``np.frombuffer`` view over the request body (so it keeps the body alive, and may be
  unaligned; TensorFlow copies an unaligned input itself); bool bytes must be 0 or 1;
* or a **plain value**: nested arrays of numbers / bools / str / bin, read with the JSON rules
  (the dtype comes from the signature, the shape from the nesting, ragged input is refused).
  Floats accept ints and floats; integers must be ints within the dtype's range; bool only bools;
  strings str (UTF-8) or bin. Complex tensors need a tensor map.

``inputs``: a tensor (single-input signatures), or a map alias -> tensor (every signature input
present; other keys ignored). ``instances``: an array of per-instance values (value mode,
single input) or of maps alias -> per-instance tensor (every element with exactly the
signature's inputs), stacked along a new batch dimension as in JSON; or, as a shortcut for whole
batches, a tensor map (single input) or a map alias -> tensor whose tensors share their first
dimension. ``instances`` must hold at least one instance. Map keys are strings, as in JSON,
wherever the map is; a key of another type, duplicate keys and bytes after the map are errors.
msgpack ext values have no place in the format: they are refused where a value is read.

Response: ``{"predictions"|"outputs": <tensor map>}`` for one output, or a map alias -> tensor
map (sorted) for several, in both formats (a row response carries the whole batch tensor per
alias, not one map per instance). Row responses keep TF Serving's checks (every output has a
batch dimension, all the same). Errors: ``{"error": "<message>"}``.

Hardening, by the codec's ``CodecLimits`` (given to ``MsgpackCodec`` when it is made):
``max_msgpack_depth`` (nesting of maps and arrays), ``max_tensor_rank``, ``max_tensor_elements``,
``max_request_elements``; every length a body claims is checked against the bytes present before
anything is allocated for it (an array header claiming 10^9 elements in a small body fails at
once). All failures are ServingError INVALID_ARGUMENT (UNIMPLEMENTED for a plain value of a dtype
msgpack has no value for), with a message that names what was wrong. The module-level
``parse_predict_request`` is the codec with ``DEFAULT_CODEC_LIMITS``.

Thread-safety: reentrant; no shared mutable state. The twin copies the body once into its
``msgpack.Unpacker`` (to walk the structure); tensor data still comes from the body itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.codecs.predict_format import (
    DEFAULT_SIGNATURE,
    PredictCodec,
    PredictRequest,
    columnar_inputs,
    dense_shape,
    predict_request,
    response_outputs,
    shape_text,
    string_bytes,
)
from tfsfast.runtime.dtypes import DataType, from_numpy, short_name, to_numpy
from tfsfast.util.status import Code, ServingError
from tfsfast.util.status import invalid_argument as _invalid

__all__ = [
    "DEFAULT_SIGNATURE",
    "DTYPE_NAMES",
    "MsgpackCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
    "parse_predict_request",
]

if sys.byteorder != "little":  # the wire order; numpy's native order is used as is
    raise ImportError("tfsfast's msgpack codec assumes a little-endian host")

# Wire dtype names (numpy's) <-> TF DataType.
DTYPE_NAMES: dict[str, DataType] = {
    "float16": DataType.DT_HALF, "bfloat16": DataType.DT_BFLOAT16,
    "float32": DataType.DT_FLOAT, "float64": DataType.DT_DOUBLE,
    "int8": DataType.DT_INT8, "int16": DataType.DT_INT16, "int32": DataType.DT_INT32,
    "int64": DataType.DT_INT64, "uint8": DataType.DT_UINT8, "uint16": DataType.DT_UINT16,
    "uint32": DataType.DT_UINT32, "uint64": DataType.DT_UINT64, "bool": DataType.DT_BOOL,
    "complex64": DataType.DT_COMPLEX64, "complex128": DataType.DT_COMPLEX128,
    "string": DataType.DT_STRING,
}
_NAME_OF: dict[int, str] = {int(v): k for k, v in DTYPE_NAMES.items()}
TENSOR_KEYS = frozenset({"dtype", "shape", "data"})
_FLOATS = frozenset({DataType.DT_HALF, DataType.DT_BFLOAT16, DataType.DT_FLOAT,
                     DataType.DT_DOUBLE})
_INTS = frozenset({DataType.DT_INT8, DataType.DT_INT16, DataType.DT_INT32, DataType.DT_INT64,
                   DataType.DT_UINT8, DataType.DT_UINT16, DataType.DT_UINT32,
                   DataType.DT_UINT64})
# Our messages for the request shape (the JSON codec's are TF Serving's).
_SINGLE_INPUTS = ("inputs is a single tensor, but expecting a map as multiple input tensors "
                  "required as per the signature")
_BOTH_KEYS = "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"


def _dtype_name(dtype: int) -> str:
    return _NAME_OF.get(dtype) or short_name(dtype)


# ---------------------------------------------------------------------------------------------
# Reading the body

def _kind(b: int) -> str:
    """The msgpack type of a value from its first byte."""
    if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
        return "int"
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        return "map"
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        return "array"
    if 0xA0 <= b <= 0xBF or 0xD9 <= b <= 0xDB:
        return "str"
    if 0xC4 <= b <= 0xC6:
        return "bin"
    if b == 0xC0:
        return "nil"
    if b in (0xC2, 0xC3):
        return "bool"
    if b in (0xCA, 0xCB):
        return "float"
    if 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8:
        return "ext"
    return "invalid"  # 0xC1


def _kind_of(v: Any) -> str:
    """The msgpack type a decoded value came from, for messages."""
    if v is None:
        return "nil"
    return {bool: "bool", int: "int", float: "float", str: "str", bytes: "bin", list: "array",
            dict: "map", _Bin: "bin", _TensorMap: "tensor map", msgpack.ExtType: "ext",
            msgpack.Timestamp: "ext"}.get(type(v), type(v).__name__)


def _map_of(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """A map msgpack decoded (its ``object_pairs_hook``): a dict, once its keys are checked
    as the reader checks the maps it walks (msgpack itself would take any hashable key, fail
    on a list or map key with a bare TypeError, and keep the last of duplicate keys)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise _invalid(f"msgpack map keys must be strings, found {_kind_of(key)}")
        if key in out:
            raise _invalid(f"Duplicate key in msgpack map: {key!r}")
        out[key] = value
    return out


def _unpacker(body: bytes) -> msgpack.Unpacker:
    """An Unpacker over ``body`` that decodes maps with :func:`_map_of` (which sees every key:
    ``strict_map_key`` would refuse some first, in msgpack's words); every length a value
    claims is bounded by the body's size."""
    unpacker = msgpack.Unpacker(raw=False, object_pairs_hook=_map_of, strict_map_key=False,
                                max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    return unpacker


class _Bin:
    """A bin value left in the body: ``length`` bytes at ``offset``."""

    __slots__ = ("length", "offset")

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length


class _TensorMap:
    """A ``{"dtype", "shape", "data"}`` map, not yet checked."""

    __slots__ = ("data", "dtype", "shape")

    def __init__(self, entries: Mapping[str, Any]) -> None:
        self.dtype = entries["dtype"]
        self.shape = entries["shape"]
        self.data = entries["data"]


def _is_tensor_map(d: Mapping[Any, Any]) -> bool:
    return len(d) == 3 and all(type(k) is str for k in d) and set(d) == TENSOR_KEYS


class _Reader:
    """Walks the body: maps here (their bins stay in the body), other values by msgpack;
    nothing nested deeper than ``max_depth``."""

    def __init__(self, body: bytes, max_depth: int) -> None:
        self.body = body
        self.unpacker = _unpacker(body)
        self.max_depth = max_depth

    def at(self) -> int:
        return self.unpacker.tell()

    def peek(self) -> str:
        pos = self.at()
        if pos >= len(self.body):
            raise msgpack.OutOfData
        return _kind(self.body[pos])

    def value(self, depth: int) -> Any:
        """The next value: a dict (or _TensorMap) for a map, a _Bin for a bin, else msgpack's
        decoding (a plain value)."""
        kind = self.peek()
        if kind == "map":
            return self.map(depth)
        if kind == "bin":
            return self.bin()
        value = self.unpacker.unpack()
        if kind == "array":
            _check_depth(value, depth, self.max_depth)
        return value

    def bin(self) -> _Bin:
        body, pos = self.body, self.at()
        width = {0xC4: 1, 0xC5: 2, 0xC6: 4}[body[pos]]
        if pos + 1 + width > len(body):
            raise msgpack.OutOfData
        length = int.from_bytes(body[pos + 1:pos + 1 + width], "big")
        self.unpacker.skip()  # checks the length against the bytes present
        return _Bin(pos + 1 + width, length)

    def map(self, depth: int) -> dict[Any, Any] | _TensorMap:
        if depth > self.max_depth:  # maps and arrays count, as brackets in JSON
            raise _depth_error(self.max_depth)
        n = self.unpacker.read_map_header()
        entries: dict[Any, Any] = {}
        for _ in range(n):
            kind = self.peek()
            if kind != "str":
                raise _invalid(f"msgpack map keys must be strings, found {kind}")
            key = self.unpacker.unpack()
            if key in entries:
                raise _invalid(f"Duplicate key in msgpack map: {key!r}")
            entries[key] = self.value(depth + 1)
        return _TensorMap(entries) if _is_tensor_map(entries) else entries


def _depth_error(max_depth: int) -> ServingError:
    return _invalid(f"msgpack nesting depth exceeds the maximum of {max_depth}")


def _check_depth(value: Any, depth: int, max_depth: int) -> None:
    """Refuses plain values nested deeper than ``max_depth`` (msgpack itself stops at about a
    thousand levels), without recursion."""
    stack = [(value, depth)]
    while stack:
        v, d = stack.pop()
        if d > max_depth:
            raise _depth_error(max_depth)
        if type(v) is list:
            stack.extend((x, d + 1) for x in v if type(x) in (list, dict))
        elif type(v) is dict:
            stack.extend((x, d + 1) for x in v.values() if type(x) in (list, dict))


def _parse_error(e: Exception, body: bytes, max_depth: int) -> ServingError:
    """What msgpack's failure to decode ``body`` tells the client."""
    if isinstance(e, msgpack.OutOfData):
        return _invalid(f"msgpack parse error: the body is truncated ({len(body)} bytes)")
    if isinstance(e, msgpack.StackError):  # msgpack's own limit, about a thousand levels
        return _depth_error(max_depth)
    if isinstance(e, msgpack.FormatError):
        return _invalid("msgpack parse error: invalid type byte 0xc1")
    if isinstance(e, UnicodeDecodeError):
        return _invalid("msgpack parse error: a str is not valid UTF-8")
    # Lengths beyond the body, a malformed timestamp ext: msgpack's words, or at least its
    # exception's name when it gives none.
    return _invalid(f"msgpack parse error: {e or type(e).__name__}")


def _read_document(body: bytes, max_depth: int) -> dict[Any, Any]:
    if not body:
        raise _invalid("msgpack parse error: the body is empty")
    reader = _Reader(body, max_depth)
    try:
        if reader.peek() != "map":
            raise _invalid("msgpack body must be a map with an 'instances' or 'inputs' key, "
                           f"got {reader.peek()}")
        doc = reader.map(1)
        end = reader.at()
    except (ValueError, msgpack.OutOfData) as e:  # msgpack's (OutOfData is no ValueError)
        raise _parse_error(e, body, max_depth) from None
    if end != len(body):
        raise _invalid(f"msgpack parse error: {len(body) - end} bytes after the top-level map")
    if isinstance(doc, _TensorMap):
        raise _invalid("msgpack body must be a map with an 'instances' or 'inputs' key, "
                       "got a tensor map")
    return doc


def read_value(body: bytes, limits: CodecLimits) -> Any:
    """The whole body as one plain msgpack value, read by the rules and with the messages of
    a predict body: maps are dicts with str keys (see :func:`_map_of`), bins bytes, ext values
    ``msgpack.ExtType`` (or ``msgpack.Timestamp``) for the caller to refuse where it meets them;
    nesting beyond ``limits.max_msgpack_depth``, truncation and bytes after the value are
    errors. For bodies that are not predict requests (classify and regress). Every failure is a
    ServingError INVALID_ARGUMENT."""
    max_depth = limits.max_msgpack_depth
    body = bytes(body) if type(body) is not bytes else body
    if not body:
        raise _invalid("msgpack parse error: the body is empty")
    unpacker = _unpacker(body)
    try:
        value = unpacker.unpack()
    except (ValueError, msgpack.OutOfData) as e:
        raise _parse_error(e, body, max_depth) from None
    end = unpacker.tell()
    if end != len(body):
        raise _invalid(f"msgpack parse error: {len(body) - end} bytes after the top-level value")
    _check_depth(value, 1, max_depth)
    return value


# ---------------------------------------------------------------------------------------------
# Values to tensors

class _Budget:
    """The request's tensor limits, and the elements taken so far in it."""

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits
        self.used = 0

    def take(self, name: str, shape: Sequence[int]) -> int:
        """Checks the limits for a tensor of ``shape`` before anything is allocated for it."""
        limits = self.limits
        if len(shape) > limits.max_tensor_rank:
            raise _invalid(f"Input: {name} has rank {len(shape)}, which exceeds the maximum "
                           f"tensor rank of {limits.max_tensor_rank}")
        most = limits.max_tensor_elements
        count = 1
        for d in shape:
            count *= d
            if count > most:  # stops before a hostile product grows huge
                break
        if count > most:
            raise _invalid(f"Input: {name} has shape {shape_text(shape)}, more than "
                           f"{most} elements, the maximum per tensor")
        if self.used + count > limits.max_request_elements:
            raise _invalid(f"Request has more than {limits.max_request_elements} tensor "
                           "elements, the maximum per request")
        self.used += count
        return count


def _wire_dtype(dtype: int) -> np.dtype:
    return np.dtype(to_numpy(dtype))


def _from_tensor_map(t: _TensorMap, name: str, dtype: int, body: bytes,
                     budget: _Budget) -> np.ndarray:
    if type(t.dtype) is not str:
        raise _invalid(f"Input: {name}: tensor dtype must be a string, found "
                       f"{_kind_of(t.dtype)}")
    if t.dtype not in DTYPE_NAMES:
        raise _invalid(f"Input: {name} has unknown tensor dtype {t.dtype[:64]!r}; expected one "
                       "of " + ", ".join(DTYPE_NAMES))
    if int(DTYPE_NAMES[t.dtype]) != dtype:
        raise _invalid(f"Input: {name} has dtype {t.dtype} but the signature expects "
                       f"{_dtype_name(dtype)}")
    if type(t.shape) is not list or any(type(d) is not int for d in t.shape):
        raise _invalid(f"Input: {name}: tensor shape must be an array of integers")
    shape = tuple(t.shape)
    if any(d < 0 for d in shape):
        raise _invalid(f"Input: {name} has a negative dimension in shape {shape_text(shape)}")
    count = budget.take(name, shape)
    if dtype == DataType.DT_STRING:
        data = t.data
        if type(data) is not list:
            raise _invalid(f"Input: {name}: string tensor data must be an array of bin or str")
        if len(data) != count:
            raise _invalid(f"Input: {name}: string tensor data has {len(data)} values, shape "
                           f"{shape_text(shape)} needs {count}")
        values = []
        for x in data:
            if type(x) is bytes:
                values.append(x)
            elif type(x) is str:
                values.append(x.encode("utf-8"))
            elif type(x) is _Bin:
                values.append(body[x.offset:x.offset + x.length])
            else:
                raise _invalid(f"Input: {name}: string tensor data must be an array of bin or "
                               f"str, found {_kind_of(x)}")
        out = np.empty(count, dtype=object)
        out[:] = values
        return out.reshape(shape)
    np_dtype = _wire_dtype(dtype)
    data = t.data
    if type(data) not in (_Bin, bytes):
        raise _invalid(f"Input: {name}: tensor data must be bin, found {_kind_of(data)}")
    nbytes = data.length if type(data) is _Bin else len(data)
    if nbytes != count * np_dtype.itemsize:
        raise _invalid(f"Input: {name}: tensor data has {nbytes} bytes, shape "
                       f"{shape_text(shape)} of {t.dtype} needs {count * np_dtype.itemsize}")
    if type(data) is _Bin:  # zero copy: a view over the request body
        a = np.frombuffer(body, dtype=np_dtype, count=count, offset=data.offset)
    else:
        a = np.frombuffer(data, dtype=np_dtype, count=count)
    if dtype == DataType.DT_BOOL and count and a.view(np.uint8).max() > 1:
        raise _invalid(f"Input: {name}: bool tensor data must hold bytes 0 or 1")
    return a.reshape(shape)


def _flatten(v: Any, shape: Sequence[int], name: str) -> list[Any]:
    items = [v]
    for level, dim in enumerate(shape):
        nxt: list[Any] = []
        for x in items:
            if type(x) is not list:
                raise _invalid(f"Input: {name} is ragged: found {_kind_of(x)} at level {level} "
                               f"where a list of {dim} was expected")
            if len(x) != dim:
                raise _invalid(f"Input: {name} is ragged: found a list of {len(x)} at level "
                               f"{level} where {dim} were expected")
            nxt.extend(x)
        items = nxt
    for x in items:
        if type(x) is list:
            raise _invalid(f"Input: {name} is ragged: found a list at level {len(shape)} where "
                           "values were expected")
    return items


def _from_plain(v: Any, name: str, dtype: int, budget: _Budget) -> np.ndarray:
    if type(v) in (dict, _TensorMap, _Bin):  # callers pass tensor maps and bins elsewhere
        raise _invalid(f"Input: {name}: a {_kind_of(v)} is not a tensor")
    shape = dense_shape(v)
    budget.take(name, shape)
    leaves = _flatten(v, shape, name)
    kinds = set(map(type, leaves))

    def refuse(allowed: tuple[type, ...]) -> ServingError:
        bad = next(x for x in leaves if type(x) not in allowed)
        return _invalid(f"Input: {name}: msgpack {_kind_of(bad)} is not of expected type: "
                        f"{_dtype_name(dtype)}")

    if dtype in _FLOATS:
        if not kinds <= {int, float}:
            raise refuse((int, float))
        with np.errstate(over="ignore"):
            return np.array(leaves, dtype=np.float64).astype(_wire_dtype(dtype)).reshape(shape)
    if dtype in _INTS:
        if not kinds <= {int}:
            raise refuse((int,))
        np_dtype = _wire_dtype(dtype)
        info = np.iinfo(np_dtype)
        for x in leaves:
            if not info.min <= x <= info.max:
                raise _invalid(f"Input: {name}: value {x} is out of range for "
                               f"{_dtype_name(dtype)}")
        return np.array(leaves, dtype=np_dtype).reshape(shape)
    if dtype == DataType.DT_BOOL:
        if not kinds <= {bool}:
            raise refuse((bool,))
        return np.array(leaves, dtype=np.bool_).reshape(shape)
    if dtype == DataType.DT_STRING:
        if not kinds <= {str, bytes}:
            raise refuse((str, bytes))
        out = np.empty(len(leaves), dtype=object)
        out[:] = [x.encode("utf-8") if type(x) is str else x for x in leaves]
        return out.reshape(shape)
    if dtype in (DataType.DT_COMPLEX64, DataType.DT_COMPLEX128):
        raise _invalid(f"Input: {name}: {_dtype_name(dtype)} tensors must be sent as tensor "
                       "maps")
    raise ServingError(Code.UNIMPLEMENTED, f"Input: {name}: conversion of a msgpack value to "
                                           f"type: {_dtype_name(dtype)} is not supported")


def _normalize(v: Any) -> Any:
    """A tensor map decoded by msgpack (inside an array) as a _TensorMap; bins as bytes."""
    if type(v) is dict and _is_tensor_map(v):
        return _TensorMap(v)
    return v


def _tensor(v: Any, name: str, dtype: int, body: bytes, budget: _Budget) -> np.ndarray:
    v = _normalize(v)
    if type(v) is _TensorMap:
        return _from_tensor_map(v, name, dtype, body, budget)
    if type(v) is _Bin:
        v = body[v.offset:v.offset + v.length]  # a bare bin: a string scalar
    return _from_plain(v, name, dtype, budget)


def _batch_of(a: np.ndarray, name: str) -> int:
    if a.ndim == 0:
        raise _invalid(f"Input: {name} has no batch dimension (instances need one)")
    return a.shape[0]


def _from_instances(value: Any, dtypes: Mapping[str, int], body: bytes,
                    budget: _Budget) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    if type(value) is _TensorMap:
        if len(names) != 1:
            raise _invalid("instances is a single tensor, but the signature has several inputs: "
                           + ",".join(names))
        a = _from_tensor_map(value, names[0], dtypes[names[0]], body, budget)
        if _batch_of(a, names[0]) == 0:
            raise _invalid("No values in 'instances'")
        return {names[0]: a}
    if type(value) is dict:  # alias -> whole-batch tensor
        if set(value) != set(names):
            raise _invalid("instances map keys must be equal to: " + ",".join(names))
        out = {name: _tensor(value[name], name, dtypes[name], body, budget) for name in names}
        batches = {name: _batch_of(a, name) for name, a in out.items()}
        first = batches[names[0]]
        for name in names:
            if batches[name] != first:
                raise _invalid(f"Input: {name} has batch size {batches[name]}, expecting: "
                               f"{first} (instances share their first dimension)")
        if first == 0:
            raise _invalid("No values in 'instances'")
        return out
    if type(value) is not list:
        raise _invalid("Expecting 'instances' to be an array, a tensor map or a map of named "
                       f"tensors, got {_kind_of(value)}")
    if not value:
        raise _invalid("No values in 'instances' array")
    first = _normalize(value[0])
    if type(first) is not dict:  # value mode: the list is the batch
        if len(names) > 1:
            raise _invalid("instances is a plain list, but expecting list of maps as multiple "
                           "input tensors required as per the signature")
        for i, x in enumerate(value):
            if type(x) is dict:
                raise _invalid(f"Expecting value/list but got map at item {i} of input list")
        return {names[0]: _from_plain(value, names[0], dtypes[names[0]], budget)}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i, element in enumerate(value):
        element = _normalize(element)
        if type(element) is not dict:
            raise _invalid(f"Expecting map but got {_kind_of(element)} at item {i} of input "
                           "list")
        if set(element) != set(names):
            raise _invalid(f"Failed to process element: {i} of 'instances' list. Keys must be "
                           "equal to: " + ",".join(names))
        for name in names:
            try:
                a = _tensor(element[name], name, dtypes[name], body, budget)
            except ServingError as e:
                raise _invalid(f"Failed to process element: {i} key: {name} of 'instances' "
                               f"list. Error: {e}") from None
            if parts[name] and parts[name][0].shape != a.shape:
                raise _invalid(f"Failed to process element: {i} key: {name} of 'instances' "
                               f"list. Error: INVALID_ARGUMENT: Expecting shape "
                               f"{shape_text(parts[name][0].shape)} but got: "
                               f"{shape_text(a.shape)}")
            parts[name].append(a)
    return {name: np.stack(parts[name]) for name in names}


def _parse_predict_request(body: bytes, input_dtypes: Callable[[str], Mapping[str, DataType]],
                           limits: CodecLimits) -> PredictRequest:
    """``MsgpackCodec(limits).parse_predict_request``."""
    body = bytes(body) if type(body) is not bytes else body
    doc = _read_document(body, limits.max_msgpack_depth)
    raw_name = doc.get("signature_name", "")
    if type(raw_name) is not str:
        raise _invalid("'signature_name' must be a string")
    budget = _Budget(limits)

    def read_instances(value: Any, dtypes: dict[str, int]) -> dict[str, np.ndarray]:
        return _from_instances(value, dtypes, body, budget)

    def tensor(value: Any, name: str, dtype: int) -> np.ndarray:
        return _tensor(value, name, dtype, body, budget)

    def read_inputs(value: Any, dtypes: dict[str, int]) -> dict[str, np.ndarray]:
        return columnar_inputs(value, dtypes, type(value) is dict, tensor, "map", _SINGLE_INPUTS)

    return predict_request(doc, raw_name, input_dtypes, read_instances, read_inputs,
                           lambda: _BOTH_KEYS)


# ---------------------------------------------------------------------------------------------
# Tensors to msgpack

def _tensor_map(name: str, a: np.ndarray, declared: DataType | None) -> dict[str, Any]:
    try:
        dtype = int(declared) if declared is not None else int(from_numpy(a.dtype))
    except KeyError:
        dtype = -1
    wire = _NAME_OF.get(dtype)
    if wire is None:
        type_name = short_name(dtype) if dtype >= 0 else a.dtype.name
        raise _invalid(f"Failed to write msgpack value for tensor type: {type_name}")
    shape = list(a.shape)
    if dtype == DataType.DT_STRING:
        return {"dtype": wire, "shape": shape,
                "data": [string_bytes(x) for x in a.ravel().tolist()]}
    np_dtype = _wire_dtype(dtype)
    if a.dtype != np_dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            a = a.astype(np_dtype)
    a = np.ascontiguousarray(a).reshape(-1)
    return {"dtype": wire, "shape": shape, "data": a.view(np.uint8).data}


def format_predict_response(outputs: Mapping[str, np.ndarray], columnar: bool,
                            output_dtypes: Mapping[str, DataType] | None = None) -> bytes:
    """The msgpack body of a predict response: ``{"predictions"|"outputs": <tensor map>}`` for
    one output, a map alias -> tensor map (sorted) for several. ``output_dtypes`` gives each
    alias's DataType (the array is cast to it); without it the numpy dtype decides."""
    names, arrays, _ = response_outputs(outputs, columnar, "msgpack")
    maps = {name: _tensor_map(name, arrays[name],
                              None if output_dtypes is None else output_dtypes.get(name))
            for name in names}
    value = maps[names[0]] if len(names) == 1 else maps
    packer = msgpack.Packer(use_bin_type=True)
    return packer.pack({"outputs" if columnar else "predictions": value})


def format_error(message: str) -> bytes:
    """``{"error": message}`` as msgpack."""
    return msgpack.packb({"error": message}, use_bin_type=True,
                         unicode_errors="surrogatepass")


# ---------------------------------------------------------------------------------------------
# The codec

class MsgpackCodec(PredictCodec):
    """The REST predict msgpack codec under ``limits`` (a ``CodecLimits``, kept for its life).

    ``parse_predict_request(body, input_dtypes)`` parses a msgpack predict body into tensors
    (see the module docstring for the format): ``input_dtypes(signature_name)`` returns the
    signature's ``{alias: DataType}`` and raises ServingError itself for an unknown signature;
    it is called once. Numeric tensor maps come back as read-only views over ``body`` (which
    they keep alive). Every failure is a ServingError (INVALID_ARGUMENT, or UNIMPLEMENTED for a
    plain value of a dtype msgpack cannot carry). ``read_value(body)`` is :func:`read_value`
    under the same limits; ``format_predict_response`` and ``format_error`` are the module's.
    Thread-safe: it holds nothing but its limits.
    """

    __slots__ = ()

    parse = staticmethod(_parse_predict_request)
    format_predict_response = staticmethod(format_predict_response)
    format_error = staticmethod(format_error)

    def read_value(self, body: bytes) -> Any:
        return read_value(body, self.limits)


# ``MsgpackCodec(DEFAULT_CODEC_LIMITS).parse_predict_request``, for callers without a codec of
# their own (a server hands its own ``CodecLimits`` to the codecs it makes).
parse_predict_request = MsgpackCodec(DEFAULT_CODEC_LIMITS).parse_predict_request
