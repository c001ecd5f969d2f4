"""The protobuf wire format, for the messages tfsfast reads or writes by hand (no protobuf runtime):
the client's requests and responses, a SavedModel's nodes, a checkpoint index's entries, session
overrides.

Writing: ``varint``, and ``field_*`` helpers that return one encoded field (tag and value);
a message is the concatenation of its fields. Proto3 leaves a field at its default value out,
and the helpers follow suit where the caller asks (``skip_default``).

Reading: ``read_varint(data, pos, end)`` reads one varint (also for formats that borrow it,
such as LevelDB's tables); ``fields(data)`` yields ``(number, wire_type, value)`` for each field
of a message: an ``int`` for varint and fixed-width fields (fixed32/fixed64 as their unsigned bit
pattern), a ``memoryview`` of the payload for length-delimited ones (no copy). Malformed data (a
truncated field, a varint over ten bytes, a group, an unknown wire type) raises ``WireError``;
unknown field numbers are the caller's to skip, as protobuf skips them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

__all__ = [
    "FIXED32",
    "FIXED64",
    "LEN",
    "VARINT",
    "WireError",
    "as_float32",
    "as_int64",
    "field_bytes",
    "field_string",
    "field_varint",
    "fields",
    "read_varint",
    "varint",
]

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_UINT64 = (1 << 64) - 1
_float32 = struct.Struct("<f")


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint; a negative int64 as its 64-bit two's complement (ten
    bytes), as protobuf writes ``int64``/``int32`` fields."""
    if 0 <= value < 0x80:
        return bytes((value,))
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_varint(number: int, value: int, skip_default: bool = True) -> bytes:
    if skip_default and not value:
        return b""
    return varint(number << 3 | VARINT) + varint(value)


def field_bytes(number: int, payload: bytes, skip_default: bool = False) -> bytes:
    """A length-delimited field: bytes, a string's UTF-8, or a serialized message."""
    if skip_default and not payload:
        return b""
    return varint(number << 3 | LEN) + varint(len(payload)) + payload


def field_string(number: int, value: str, skip_default: bool = True) -> bytes:
    return field_bytes(number, value.encode(), skip_default)


def read_varint(data: bytes | bytearray | memoryview, pos: int,
                end: int | None = None) -> tuple[int, int]:
    """The varint at ``pos`` (before ``end``, the data's end by default) and the position after
    it, as an unsigned 64-bit value; WireError if it is truncated or longer than ten bytes."""
    if end is None:
        end = len(data)
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _UINT64, pos
        shift += 7


def fields(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Every field of the message in ``data``, in wire order (see the module docstring): the
    value is an ``int``, or a ``memoryview`` for ``wire_type == LEN``."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        tag, pos = read_varint(view, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | memoryview
        if wire_type == VARINT:
            value, pos = read_varint(view, pos, end)
        elif wire_type == LEN:
            size, pos = read_varint(view, pos, end)
            if size > end - pos:
                raise WireError("truncated length-delimited field")
            value = view[pos:pos + size]
            pos += size
        elif wire_type == FIXED32 or wire_type == FIXED64:
            width = 4 if wire_type == FIXED32 else 8
            if width > end - pos:
                raise WireError("truncated fixed-width field")
            value = int.from_bytes(view[pos:pos + width], "little")
            pos += width
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value


def as_int64(value: int) -> int:
    """A varint read as protobuf's ``int64`` (two's complement)."""
    return value - (1 << 64) if value >> 63 else value


def as_float32(value: int) -> float:
    """A fixed32 field's bits as the ``float`` it carries."""
    return _float32.unpack(value.to_bytes(4, "little"))[0]
