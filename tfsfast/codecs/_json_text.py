"""JSON text for messages: string literals as rapidjson writes them, and JSON values echoed in
TF Serving's messages (its ``JsonValueToString``: ``JSON Value: ...``), compact and truncated.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from tfsfast.codecs._float_text import decimal_text, shortest_double
from tfsfast.codecs._json_errors import as_double

# Values echoed in messages are cut to this many bytes: TF Serving's kMaxJsonDebugStringBytes
# (a constant of its own, not one of the limits a deployment sets).
MAX_DEBUG_STRING_BYTES = 256

_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r",
                 0x22: '\\"', 0x5C: "\\\\"})
_SURROGATES_RE = re.compile("[\ud800-\udfff]")


def json_string(s: str) -> str:
    """A JSON string literal as rapidjson's Writer escapes it (non-ASCII kept as UTF-8)."""
    return '"' + s.translate(_ESCAPES) + '"'


def clean(s: str) -> str:
    """``s`` without lone surrogates (raw bytes of invalid UTF-8), which cannot be encoded."""
    return _SURROGATES_RE.sub("\ufffd", s) if not s.isascii() else s


class _Full(Exception):
    pass


class _DebugWriter:
    """rapidjson's compact Writer, stopping once ``limit`` characters have been written."""

    def __init__(self, limit: int) -> None:
        self.out: list[str] = []
        self.size = 0
        self.limit = limit

    def put(self, s: str) -> None:
        self.out.append(s)
        self.size += len(s)
        if self.size > self.limit:
            raise _Full

    def write(self, v: Any) -> None:
        t = type(v)
        if v is None:
            self.put("null")
        elif t is bool:
            self.put("true" if v else "false")
        elif t is int:
            v = as_double(v)
            self.put(str(v) if type(v) is int else shortest_double(v))
        elif t is float:
            self.put(shortest_double(v))
        elif t is str:
            self.put(json_string(v[:self.limit + 1]))
        elif t is list:
            self.put("[")
            for k, x in enumerate(v):
                if k:
                    self.put(",")
                self.write(x)
            self.put("]")
        else:
            self.put("{")
            for k, (key, x) in enumerate(v.items()):
                if k:
                    self.put(",")
                self.put(json_string(key[:self.limit + 1]))
                self.put(":")
                self.write(x)
            self.put("}")


def _clip(s: str, limit: int) -> str:
    data = s.encode("utf-8")
    if len(data) <= limit:
        return s
    return data[:limit].decode("utf-8", "ignore")


def debug_string(v: Any) -> str:
    """A JSON value as TF Serving echoes it: a top-level float with the response float writer,
    anything else as compact JSON, at most MAX_DEBUG_STRING_BYTES bytes."""
    limit = MAX_DEBUG_STRING_BYTES
    if type(v) is int:
        v = as_double(v)
    if type(v) is float:
        # rapidjson IsFloat(): a double within float range is echoed as a float
        if -3.4028234e38 <= v <= 3.4028234e38:
            text = decimal_text(float(np.float32(v)), True)
        else:
            text = decimal_text(v, False)
        return _clip(text, limit)
    writer = _DebugWriter(limit)
    try:
        writer.write(v)
    except _Full:
        pass
    return _clip(clean("".join(writer.out)), limit)
