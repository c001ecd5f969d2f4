"""``CodecLimits``: what one request may make a codec build (hardening.md, "Default limits").

TF Serving bounds none of these: its JSON parser recurses once per nesting level and a typed
TensorProto field of a few bytes may ask for any number of elements. The request codecs (JSON,
msgpack, TensorProto) refuse a request over a limit with INVALID_ARGUMENT naming the limit,
before anything is allocated for it.

A codec takes its limits when it is made (``JsonCodec(limits)``, ``MsgpackCodec(limits)``,
``TensorProtoCodec(limits)``) and keeps them for its life; the server builds one ``CodecLimits``
at startup and hands it to every codec it makes. A compiled codec turns the values into C
integers once, in its constructor, and gives its twin the same object for the bodies it hands
over, so both judge a body by the same limits. Frozen, so that no one can change a limit under a
codec that has already read it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DEFAULT_CODEC_LIMITS", "CodecLimits"]


@dataclass(frozen=True)
class CodecLimits:
    """The request codecs' limits; every field is an ``int`` >= 0 (ValueError otherwise).

    - ``max_json_depth``: nesting of arrays and objects in a whole JSON body (bytes after the
      top-level value included), checked by a linear scan before any recursive parsing.
    - ``max_msgpack_depth``: nesting of maps and arrays in a msgpack body.
    - ``max_tensor_rank``, ``max_tensor_elements``: per tensor (2^28 elements of float32 are
      1 GiB).
    - ``max_request_elements``: over all the tensors of one request.
    - ``max_int_digits``: a JSON integer literal with more digits is read as a double, as
      rapidjson reads anything outside 64 bits, and never becomes a Python int (whose parse is
      quadratic in its length). Above 20 it has no effect: no longer literal fits 64 bits.
    """

    max_json_depth: int = 100  # Triton's limit; TF Serving's PR #4133 proposes the same
    max_msgpack_depth: int = 100  # as for JSON: maps and arrays count as brackets do
    max_tensor_rank: int = 32  # below TF's 254, within numpy's 64
    max_tensor_elements: int = 2**28
    max_request_elements: int = 2**29
    max_int_digits: int = 20  # 2^64 has 20 digits

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 0:
                raise ValueError(f"CodecLimits.{f.name} must be an int >= 0, got {value!r}")


DEFAULT_CODEC_LIMITS = CodecLimits()
