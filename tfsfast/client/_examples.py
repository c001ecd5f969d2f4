"""tf.Example features for classify and regress: the caller's values, checked once for both APIs.

An example is a mapping feature name -> value, where a value is one scalar or a flat sequence
(a list, a tuple or a 1-d numpy array) of one kind: ``bytes``/``str`` (a ``bytes_list``; str is
written as UTF-8), ``float`` (a ``float_list``) or ``int``/``bool`` (an ``int64_list``; a bool
is 0 or 1). These are TF Serving's rules for the REST API's JSON examples, applied by the client
so that a value means the same feature over REST and gRPC; a value outside them is a
``ValueError`` before anything is sent. numpy scalars count as the Python value they hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["BYTES", "FLOAT", "INT64", "Example", "Feature", "normalize_examples"]

BYTES, FLOAT, INT64 = "bytes_list", "float_list", "int64_list"
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

Example = Mapping[str, Any]
# (kind, values); kind is "" for an empty feature (no values, no kind, as TF Serving makes
# from an empty JSON list).
Feature = tuple[str, list[Any]]


def _kind(name: str, value: Any) -> str:
    t = type(value)
    if t is bytes or t is str:
        return BYTES
    if t is float:
        return FLOAT
    if t is int or t is bool:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"feature {name!r}: {value} does not fit int64")
        return INT64
    raise ValueError(f"feature {name!r}: a value of type {t.__name__} is not bytes, str, "
                     "float, int or bool")


def _feature(name: str, value: Any) -> Feature:
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"feature {name!r}: an array of rank {value.ndim} (a feature is "
                             "a flat list)")
        values = value.tolist() if value.ndim else [value.item()]
    elif isinstance(value, (list, tuple)):
        values = [v.item() if isinstance(v, np.generic) else v for v in value]
    else:
        values = [value.item() if isinstance(value, np.generic) else value]
    if not values:
        return "", values
    kind = _kind(name, values[0])
    for v in values:
        k = _kind(name, v)
        if k != kind:
            raise ValueError(f"feature {name!r} mixes {kind} and {k} values")
    return kind, values


def normalize_examples(examples: Sequence[Example]) -> list[dict[str, Feature]]:
    """Every example as name -> (kind, values); ValueError for a value outside the rules."""
    if isinstance(examples, Mapping):
        raise ValueError("examples must be a sequence of examples (mappings), not one mapping")
    out = []
    for example in examples:
        if not isinstance(example, Mapping):
            raise ValueError(f"an example must be a mapping feature name -> value, got "
                             f"{type(example).__name__}")
        out.append({str(name): _feature(str(name), value) for name, value in example.items()})
    return out
