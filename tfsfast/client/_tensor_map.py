"""numpy arrays in REST bodies: msgpack tensor maps, and JSON values.

msgpack (README "msgpack", ``tfsfast.codecs._msgpack_py``): a tensor travels as the map
``{"dtype": <numpy name or "string">, "shape": [...], "data": <bin: little-endian bytes, C
order>}``, strings as an array of bin values. The server reads it without a copy and answers
in the same form.

JSON (TF Serving's REST format): nested lists; bytes go as ``{"b64": "..."}``. JSON carries no
dtype: answers come back as numpy infers them from the values (float64, int64, bool), strings
as bytes (``{"b64": ...}`` decoded, text encoded as UTF-8), in object arrays.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

__all__ = ["from_json_value", "from_tensor_map", "is_tensor_map", "to_json_value",
           "to_tensor_map"]

_TENSOR_KEYS = frozenset(("dtype", "shape", "data"))
# The numeric dtypes of the format, by name; bfloat16 joins on first use (it needs ml_dtypes).
_NUMERIC: dict[str, np.dtype] = {name: np.dtype(name) for name in (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool", "complex64", "complex128")}
# The same by numpy's type number: ``dtype.name`` is computed in Python on every access and
# costs more than the rest of encoding a small tensor.
_NAME_OF_NUM: dict[int, str] = {dtype.num: name for name, dtype in _NUMERIC.items()}
# Above this many bytes a tensor's data is handed to msgpack as a view, saving a copy; below,
# ``tobytes`` is cheaper than making the view.
_VIEW_BYTES = 1 << 16


def _numeric_dtype(name: str) -> np.dtype:
    dtype = _NUMERIC.get(name)
    if dtype is None:
        if name != "bfloat16":
            raise ValueError(f"unknown tensor dtype {name!r}")
        import ml_dtypes

        dtype = _NUMERIC["bfloat16"] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def to_tensor_map(value: Any) -> dict[str, Any]:
    """The tensor map of ``np.asarray(value)`` (str, bytes and object arrays are strings)."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    kind = array.dtype.kind
    if kind in "OSU":
        items = array.ravel().tolist()
        return {"dtype": "string", "shape": list(array.shape), "data": items}
    name = _NAME_OF_NUM.get(array.dtype.num)
    if name is None:
        # bfloat16 has no fixed number (ml_dtypes registers it at import); int64 and longlong
        # are two numbers for one type.
        name = array.dtype.name
        if name not in _NUMERIC and name != "bfloat16":
            raise ValueError(f"cannot send an array of dtype {array.dtype} as a tensor")
    if not array.flags.c_contiguous or array.dtype.byteorder == ">":
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    data = array.data.cast("B") if array.nbytes >= _VIEW_BYTES else array.tobytes()
    return {"dtype": name, "shape": list(array.shape), "data": data}


def is_tensor_map(value: Any) -> bool:
    return type(value) is dict and value.keys() == _TENSOR_KEYS


def from_tensor_map(tensor: dict[str, Any]) -> np.ndarray:
    """The array of a tensor map the server sent (a read-only view of its data when numeric)."""
    shape = tensor["shape"]
    if tensor["dtype"] == "string":
        items = [v.encode() if type(v) is str else v for v in tensor["data"]]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    return np.frombuffer(tensor["data"], dtype=_numeric_dtype(tensor["dtype"])).reshape(shape)


def _json_item(value: Any) -> Any:
    if type(value) is bytes:
        return {"b64": base64.b64encode(value).decode("ascii")}
    if type(value) is list:
        return [_json_item(v) for v in value]
    return value


def to_json_value(value: Any) -> Any:
    """``np.asarray(value)`` as TF Serving's JSON tensor value (nested lists)."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype.kind in "OS":
        return _json_item(array.tolist())
    if array.dtype.kind == "c":
        raise ValueError("complex tensors have no JSON form; use msgpack")
    return array.tolist()


def _strings(value: Any) -> Any:
    t = type(value)
    if t is str:
        return value.encode()
    if t is list:
        return [_strings(v) for v in value]
    if t is dict and value.keys() == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def _has_strings(value: Any) -> bool:
    while type(value) is list and value:
        value = value[0]
    return type(value) is str or type(value) is dict


def from_json_value(value: Any) -> np.ndarray:
    """A JSON tensor value the server sent, as an array (see the module docstring)."""
    if not _has_strings(value):
        return np.asarray(value)
    converted = _strings(value)
    if type(converted) is not list:
        scalar = np.empty((), dtype=object)
        scalar[()] = converted
        return scalar
    # np.array would read equal-length bytes as a fixed-width 'S' array: build objects.
    shape: list[int] = []
    probe: Any = converted
    while type(probe) is list:
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat: list[Any] = []

    def collect(v: Any, depth: int) -> None:
        if depth == len(shape):
            flat.append(v)
            return
        if type(v) is not list or len(v) != shape[depth]:
            raise ValueError("a ragged JSON tensor")
        for item in v:
            collect(item, depth + 1)

    collect(converted, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)
