"""JSON values to tensors, with TF Serving's rules and messages (``util/json_tensor.cc``).

A tensor's shape is read off the first element at each level (TF's dense-shape rule), then the
values are checked in document order (TF's ``FillTensorProto``), so the first error is TF
Serving's. Numbers go to numpy in one conversion when the value is dense and every leaf fits;
only a failing value is walked leaf by leaf for its message. Strings are the UTF-8 bytes as sent
(``{"b64": ...}`` objects decoded as absl does). Our limits (rank, elements per tensor and per
request) are checked before a tensor is built and name the limit.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np

from tfsfast.codecs._json_text import clean, debug_string
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.codecs.predict_format import dense_shape, shape_text
from tfsfast.runtime.dtypes import DataType, short_name, to_numpy
from tfsfast.util.status import Code, ServingError, invalid_argument

INT_RANGES: dict[int, tuple[int, int]] = {
    DataType.DT_INT32: (-(1 << 31), (1 << 31) - 1), DataType.DT_INT16: (-(1 << 31), (1 << 31) - 1),
    DataType.DT_INT8: (-(1 << 31), (1 << 31) - 1), DataType.DT_UINT8: (-(1 << 31), (1 << 31) - 1),
    DataType.DT_INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.DT_UINT32: (0, (1 << 32) - 1), DataType.DT_UINT64: (0, (1 << 64) - 1),
}
_FLOATS = frozenset({DataType.DT_FLOAT, DataType.DT_DOUBLE})
_NUMBER_TYPES = frozenset({int, float})


def json_type(v: Any) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    t = type(v)
    if t is dict:
        return "Object"
    if t is list:
        return "Array"
    if t is str:
        return "String"
    return "Number"


def _type_error(v: Any, dtype: int) -> ServingError:
    return invalid_argument(f"JSON Value: {debug_string(v)} Type: {json_type(v)} is not of "
                            f"expected type: {short_name(dtype)}")


def is_b64(v: Any) -> bool:
    """A ``{"b64": "<string>"}`` object: exactly one member, named b64, holding a string."""
    return type(v) is dict and len(v) == 1 and type(v.get("b64")) is str


_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/]*\Z")
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]")


def b64decode(s: str) -> bytes | None:
    """absl::Base64Unescape: standard alphabet; ASCII whitespace skipped anywhere; padding with
    ``=`` or ``.`` optional, but if present exactly right; None when it refuses."""
    if _B64_SPACE.search(s):
        s = _B64_SPACE.sub("", s)
    data = s.rstrip("=.")
    pad = len(s) - len(data)
    if not _B64_ALPHABET.match(data):
        return None
    state = len(data) % 4
    if state == 1 or (pad and pad != (0, 0, 2, 1)[state]):
        return None
    try:
        return binascii.a2b_base64(data + "=" * ((4 - state) % 4))
    except binascii.Error:  # not expected after the checks above
        return None


class Strings:
    """JSON strings to the bytes rapidjson would hold."""

    def __init__(self, raw: bool) -> None:
        # Valid UTF-8 body: surrogates came from escapes, and a lone low surrogate escape is
        # stored by rapidjson as its 3-byte encoding. Invalid UTF-8 body: they are raw bytes.
        self.errors = "surrogateescape" if raw else "surrogatepass"

    def encode(self, s: str) -> bytes:
        try:
            return s.encode("utf-8")
        except UnicodeEncodeError:
            return s.encode("utf-8", self.errors)


def _leaf_error(v: Any, dtype: int) -> ServingError | None:
    """TF Serving's error for a non-list JSON value in a tensor of ``dtype``, or None."""
    t = type(v)
    if t is dict:
        if dtype != DataType.DT_STRING:
            return _type_error(v, dtype)
        if not is_b64(v):
            return invalid_argument(f"JSON Value: {debug_string(v)} not formatted correctly for "
                                    "base64 data")
        if b64decode(v["b64"]) is None:
            return invalid_argument("Unable to base64 decode")
        return None
    if dtype in _FLOATS:
        ok = t in _NUMBER_TYPES
    elif dtype in INT_RANGES:
        lo, hi = INT_RANGES[dtype]
        ok = t is int and lo <= v <= hi
    elif dtype == DataType.DT_BOOL:
        ok = t is bool
    elif dtype == DataType.DT_STRING:
        ok = t is str
    else:
        return ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(v)} "
                                                f"to type: {short_name(dtype)}")
    return None if ok else _type_error(v, dtype)


def _check_fill(v: Any, level: int, shape: list[int], dtype: int) -> None:
    """TF's FillTensorProto walk: raises the first error in document order."""
    rank = len(shape)
    if type(v) is not list:
        if level != rank:
            raise invalid_argument(f"JSON Value: {debug_string(v)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        err = _leaf_error(v, dtype)
        if err is not None:
            raise err
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                               f"expected size: {shape[level]}")
    for x in v:
        _check_fill(x, level + 1, shape, dtype)


def _flatten(v: Any, shape: list[int]) -> list[Any] | None:
    """The leaves of ``v`` in order if it is dense with ``shape``, else None."""
    items = [v]
    for dim in shape:
        if set(map(type, items)) != {list} or set(map(len, items)) != {dim}:
            return None
        items = list(chain.from_iterable(items))
    if items and list in set(map(type, items)):
        return None
    return items


def _convert(leaves: list[Any], dtype: int, strings: Strings) -> np.ndarray | None:
    """The leaves as a flat array of ``dtype``, or None if any is not acceptable."""
    types = set(map(type, leaves))
    if dtype in _FLOATS:
        if not types <= _NUMBER_TYPES:
            return None
        a = np.array(leaves, dtype=np.float64)
        if dtype == DataType.DT_FLOAT:
            with np.errstate(over="ignore"):  # rapidjson GetFloat(): out of range -> +-inf
                a = a.astype(np.float32)
        return a
    if dtype in INT_RANGES:
        if not types <= {int}:
            return None
        lo, hi = INT_RANGES[dtype]
        try:
            a = np.array(leaves, dtype=np.uint64 if dtype == DataType.DT_UINT64 else np.int64)
        except OverflowError:
            return None
        if len(a) and (int(a.min()) < lo or int(a.max()) > hi):
            return None
        # int8/int16/uint8 travel as int32 in TF and are then cast, wrapping like C.
        return a.astype(to_numpy(dtype))
    if dtype == DataType.DT_BOOL:
        return np.array(leaves, dtype=np.bool_) if types <= {bool} else None
    if dtype == DataType.DT_STRING:
        out = np.empty(len(leaves), dtype=object)
        if types <= {str}:
            out[:] = [strings.encode(s) for s in leaves]
            return out
        values = []
        for x in leaves:
            if type(x) is str:
                values.append(strings.encode(x))
            elif is_b64(x) and (decoded := b64decode(x["b64"])) is not None:
                values.append(decoded)
            else:
                return None
        out[:] = values
        return out
    if leaves:  # any value at all of an unsupported dtype is an error
        return None
    try:
        return np.empty(0, dtype=to_numpy(dtype))
    except (KeyError, ValueError):
        return None


class Budget:
    """The request's tensor limits, and the elements converted so far in it (for
    ``max_request_elements``)."""

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits
        self.used = 0


def _limit_error(name: str, shape: list[int], budget: Budget, new: int | None = None
                 ) -> ServingError | None:
    """Our own limits on a tensor of ``shape`` (``new`` elements about to be added)."""
    limits = budget.limits
    if len(shape) > limits.max_tensor_rank:
        return invalid_argument(f"Input: {name} has rank {len(shape)}, which exceeds the maximum "
                                f"tensor rank of {limits.max_tensor_rank}")
    count = math.prod(shape)
    if count > limits.max_tensor_elements:
        return invalid_argument(f"Input: {name} has {count} elements, which exceeds the maximum of "
                                f"{limits.max_tensor_elements} elements per tensor")
    if budget.used + (count if new is None else new) > limits.max_request_elements:
        return invalid_argument(f"Request has more than {limits.max_request_elements} tensor "
                                "elements, the maximum per request")
    return None


def _fast_tensor(v: Any, shape: list[int], dtype: int, strings: Strings) -> np.ndarray | None:
    """The tensor if ``v`` is dense with ``shape`` and every value fits ``dtype``, else None."""
    leaves = _flatten(v, shape)
    if leaves is None:
        return None
    a = _convert(leaves, dtype, strings)
    return None if a is None else a.reshape(shape)


def to_tensor(v: Any, name: str, dtype: int, strings: Strings, budget: Budget) -> np.ndarray:
    """One tensor from a JSON value with TF's dense-shape rules; errors as TF Serving's."""
    shape = dense_shape(v)
    err = _limit_error(name, shape, budget)
    if err is not None:
        raise err
    a = _fast_tensor(v, shape, dtype, strings)
    if a is None:
        _check_fill(v, 0, shape, dtype)  # raises TF Serving's first error
        # Dense and every value fits, yet no array: an empty tensor of a dtype numpy lacks.
        raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(v)} "
                                               f"to type: {short_name(dtype)}")
    budget.used += a.size
    return a


def _is_element_object(v: Any) -> bool:
    return type(v) is dict and not is_b64(v)


class _Rows:
    """TF Serving's element-by-element reading of ``instances``, with its exact errors."""

    def __init__(self, dtypes: Mapping[str, int], strings: Strings, budget: Budget) -> None:
        self.dtypes = dtypes
        self.strings = strings
        self.budget = budget
        self.shapes: dict[str, list[int]] = {}
        self.sizes: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, item: Any, name: str) -> None:
        """TF's AddInstanceItem: one element's value for input ``name``."""
        if name not in self.dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {clean(name)}")
        dtype = self.dtypes[name]
        shape = dense_shape(item)
        parts = self.parts.setdefault(name, [])
        err = _limit_error(name, [len(parts) + 1, *shape], self.budget, math.prod(shape))
        if err is not None:
            raise err
        a = _fast_tensor(item, shape, dtype, self.strings)
        if a is None:
            _check_fill(item, 0, shape, dtype)
            raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: "
                                                   f"{debug_string(item)} to type: "
                                                   f"{short_name(dtype)}")
        if name not in self.sizes:
            self.sizes[name], self.shapes[name] = a.size, shape
        elif self.sizes[name] != a.size:
            raise invalid_argument(f"Expecting tensor size: {self.sizes[name]} but got: {a.size}")
        elif self.shapes[name] != shape:
            raise invalid_argument(f"Expecting shape {shape_text(self.shapes[name])} but got: "
                                   f"{shape_text(shape)}")
        parts.append(a)
        self.budget.used += a.size

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.stack(parts) for name, parts in self.parts.items()}


def _fast_rows(instances: list[Any], names: list[str], objects: bool, dtypes: Mapping[str, int],
               strings: Strings, budget: Budget) -> dict[str, np.ndarray] | None:
    """The whole batch as one dense tensor per input, when nothing is wrong with it; else None
    (and the exact element-by-element reading finds TF Serving's error)."""
    if objects:
        keys = set(names)
        if not all(_is_element_object(e) and e.keys() == keys for e in instances):
            return None
        columns = {name: [e[name] for e in instances] for name in names}
    else:
        columns = {names[0]: instances}
    trial = Budget(budget.limits)
    trial.used = budget.used
    out = {}
    for name, column in columns.items():
        shape = dense_shape(column)
        if _limit_error(name, shape, trial) is not None:
            return None
        a = _fast_tensor(column, shape, dtypes[name], strings)
        if a is None:
            return None
        trial.used += a.size
        out[name] = a
    budget.used = trial.used
    return out


def from_instances(instances: list[Any], dtypes: Mapping[str, int], strings: Strings,
                   budget: Budget) -> dict[str, np.ndarray]:
    """TF Serving's ``FillTensorMapFromInstancesList``: the row format's non-empty
    ``instances`` list as one tensor per input alias (``dtypes``), each element's value stacked
    along a new batch dimension; errors as TF Serving's, naming the element."""
    names = sorted(dtypes)
    if type(instances[0]) is not dict and len(names) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as "
                               "multiple input tensors required as per tensorinfo_map")
    # Element 0 decides; a {"b64": ...} element is a value, not an object of named inputs.
    objects = _is_element_object(instances[0])
    fast = _fast_rows(instances, names, objects, dtypes, strings, budget)
    if fast is not None:
        return fast
    rows = _Rows(dtypes, strings, budget)
    for i, elem in enumerate(instances):
        if objects:
            if not _is_element_object(elem):
                raise invalid_argument(f"Expecting object but got list at item {i} of input list")
            for key, item in elem.items():
                try:
                    rows.add(item, key)
                except ServingError as e:
                    raise invalid_argument(f"Failed to process element: {i} key: {clean(key)} of "
                                           f"'instances' list. Error: {e}") from None
            if elem.keys() != set(names):
                raise invalid_argument(f"Failed to process element: {i} of 'instances' list. JSON "
                                       f"object: {debug_string(elem)} keys must be equal to: "
                                       f"{','.join(names)}")
        else:
            if _is_element_object(elem):
                raise invalid_argument(f"Expecting value/list but got object at item {i} of input "
                                       "list")
            try:
                rows.add(elem, names[0])
            except ServingError as e:
                raise invalid_argument(f"Failed to process element: {i} of 'instances' list. "
                                       f"Error: {e}") from None
    return rows.tensors()
