"""Tensors to JSON: predict response bodies and error bodies, as TF Serving writes them.

Values: TF Serving's float text (``_float_text``), integers and bools as JSON, strings as JSON
strings (invalid UTF-8 replaced by U+FFFD) or, for an alias ending in ``_bytes``,
``{"b64": ...}``. Layout is compact, one space after ``:`` and ``,``; outputs in sorted alias
order. Error bodies are byte-identical to TF Serving's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import numpy as np

from tfsfast.codecs._float_text import float_tokens
from tfsfast.codecs._json_text import clean, json_string
from tfsfast.codecs._json_to_tensor import INT_RANGES
from tfsfast.codecs.predict_format import response_outputs, string_bytes
from tfsfast.runtime.dtypes import DataType, from_numpy, short_name, to_numpy
from tfsfast.util.status import invalid_argument


def _output_dtype(a: np.ndarray, declared: DataType | None) -> int:
    if declared is not None:
        return int(declared)
    try:
        return from_numpy(a.dtype)
    except KeyError:
        return -1  # a numpy dtype TF has no name for


def _value_tokens(name: str, a: np.ndarray, dtype: int) -> list[str]:
    """The JSON text of each value of ``a`` (flattened); raises for dtypes JSON cannot carry."""
    if dtype == DataType.DT_FLOAT:
        with np.errstate(over="ignore"):  # a declared float holding big doubles: +-inf, as TF
            return float_tokens(a.astype(np.float32, copy=False), True)
    if dtype == DataType.DT_DOUBLE:
        return float_tokens(a.astype(np.float64, copy=False), False)
    if dtype in INT_RANGES:
        return list(map(str, a.astype(to_numpy(dtype), copy=False).ravel().tolist()))
    if dtype == DataType.DT_BOOL:
        return ["true" if x else "false" for x in a.ravel().tolist()]
    if dtype == DataType.DT_STRING:
        values = [string_bytes(x) for x in a.ravel().tolist()]
        if name.endswith("_bytes"):
            return ['{"b64": "' + base64.b64encode(x).decode("ascii") + '"}' for x in values]
        return [json_string(x.decode("utf-8", "replace")) for x in values]
    if a.size == 0:  # nothing is written, so nothing fails (as in TF Serving)
        return []
    type_name = short_name(dtype) if dtype >= 0 else a.dtype.name
    raise invalid_argument(f"Failed to write JSON value for tensor type: {type_name}")


def _nest(tokens: list[str], dims: tuple[int, ...], count: int) -> list[str]:
    """Groups flat value texts into ``count`` nested-list texts, each of shape ``dims``."""
    if 0 in dims:
        def empty(d: tuple[int, ...]) -> str:
            return "[]" if d[0] == 0 else "[" + ", ".join([empty(d[1:])] * d[0]) + "]"
        return [empty(dims)] * count
    items = tokens
    for dim in reversed(dims):
        items = ["[" + ", ".join(items[i:i + dim]) + "]" for i in range(0, len(items), dim)]
    return items


def format_predict_response(outputs: Mapping[str, np.ndarray], columnar: bool,
                            output_dtypes: Mapping[str, DataType] | None = None) -> bytes:
    """The JSON body of a predict response: ``{"predictions": ...}`` (row) or
    ``{"outputs": ...}`` (columnar), with TF Serving's value text and errors.

    Row: every output needs rank >= 1 and the same first dimension; one output gives a list of
    its rows, several give a list of ``{alias: row}`` objects. Columnar: one output is written
    whole (a scalar as a bare value), several as ``{alias: tensor}``. ``output_dtypes`` gives
    each alias's DataType; without it the numpy dtype decides. Outputs are written in sorted
    alias order.
    """
    names, arrays, batch = response_outputs(outputs, columnar, "JSON")
    rows: dict[str, list[str]] = {}
    for name in names:
        a = arrays[name]
        declared = None if output_dtypes is None else output_dtypes.get(name)
        tokens = _value_tokens(name, a, _output_dtype(a, declared))
        if a.ndim == 0:
            rows[name] = tokens
        else:
            rows[name] = _nest(tokens, a.shape[1:], a.shape[0])
    if columnar:
        whole = {name: rows[name][0] if arrays[name].ndim == 0
                 else "[" + ", ".join(rows[name]) + "]" for name in names}
        if len(names) == 1:
            body = '{"outputs": ' + whole[names[0]] + "}"
        else:
            body = ('{"outputs": {' + ", ".join(json_string(n) + ": " + whole[n] for n in names)
                    + "}}")
    elif len(names) == 1:
        body = '{"predictions": [' + ", ".join(rows[names[0]]) + "]}"
    else:
        keys = [json_string(n) + ": " for n in names]
        items = ["{" + ", ".join(k + rows[n][i] for k, n in zip(keys, names, strict=True)) + "}"
                 for i in range(batch)]
        body = '{"predictions": [' + ", ".join(items) + "]}"
    return body.encode("utf-8")


def format_error(message: str) -> bytes:
    """TF Serving's error body, byte for byte: rapidjson PrettyWriter's
    ``{\\n    "error": "<escaped message>"\\n}``."""
    return ('{\n    "error": ' + json_string(clean(message)) + "\n}").encode("utf-8")
