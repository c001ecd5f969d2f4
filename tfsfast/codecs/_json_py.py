"""Pure-Python JSON tensor codec for REST predict: the reference twin of the compiled codec.

A separate algorithm from the compiled ``_json``, not the same source compiled: the compiled codec
is a C parser and writer for the well-formed bodies that make up the traffic, and hands anything
else to this module; this one reads bodies with Python's ``json`` and reconciles it with
rapidjson, which C would not need and Python could not do fast byte by byte. What the two
share (messages, the fallback) is this module, so results are identical.

Behaviour follows TF Serving's ``util/json_tensor.cc`` (parsed with rapidjson 1.1.0, flags
``kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag``); the messages are TF
Serving's, byte for byte, including rapidjson's English parse errors and their byte offsets. The
compiled codec is tested against this module, so behaviour here is the contract.

Request side (``JsonCodec(limits).parse_predict_request``):

* The body is parsed by ``json`` with hooks, and whatever Python's parser and rapidjson disagree
  on is reconciled so that the outcome is rapidjson's: a NUL byte ends the input, a UTF-8 BOM is
  skipped, bytes after the top-level value are ignored, ``NaN``/``Inf``/``Infinity`` (optionally
  signed, even rapidjson 1.1.0's odd ``Inf.5`` == 0.5) are numbers, integers outside the 64-bit
  range are doubles, a number rapidjson calls too big fails, an unpaired high-surrogate escape
  fails. On a syntax error a small rapidjson emulator re-reads the bytes from the start of the
  offending token to produce rapidjson's message and offset; it never re-reads the whole body.
* Hardening beyond TF Serving, by the codec's ``CodecLimits`` (given to ``JsonCodec`` when it is
  made): the nesting depth of the whole body is checked *before* parsing by a linear scan
  (``max_json_depth``); tensor rank (``max_tensor_rank``), elements per tensor and per request
  (``max_tensor_elements``, ``max_request_elements``); integer literals longer than
  ``max_int_digits`` digits are never turned into Python ints (they read as doubles, as rapidjson
  reads anything outside 64 bits, so an integer dtype rejects them). ``max_int_digits`` above 20
  has no effect: no longer literal fits 64 bits. Limit errors are INVALID_ARGUMENT and name the
  limit. The depth scan covers the whole body, bytes after the top-level value included.
  The module-level ``parse_predict_request`` is the codec with ``DEFAULT_CODEC_LIMITS``.
* Speed: Python's C parser does the work. Number hooks (a Python call per number) are only
  installed when a byte scan finds a digit run or exponent long enough to need them.
* String tensors are numpy object arrays of ``bytes``: a JSON string's UTF-8 bytes as sent. Like
  TF Serving, invalid UTF-8 inside a string is not rejected: the bytes pass through unchanged.

Response side (``format_predict_response``): TF Serving's value text (float ``%g`` with six
digits, widened to ``%.9g``/``%.17g`` when that does not read back to the same value, ``.0``
appended to whole numbers, bare ``NaN``/``Infinity``/``-Infinity``), ``{"b64": ...}`` for
``*_bytes`` aliases, and its error messages.

Deliberate differences from TF Serving, each for a reason:

* Layout is compact with one space after ``:`` and ``,`` (``{"predictions": [2.5, 3.0]}``), which
  is what our README shows curl users; TF Serving pretty-prints (rapidjson PrettyWriter, items on
  one line, closing bracket on its own line). Clients parse JSON, so values are what matters.
  Error bodies *are* byte-identical to TF Serving's (``{\\n    "error": "..."\\n}``).
* Invalid UTF-8 in an output string tensor is written with U+FFFD replacement characters (TF
  Serving writes the raw bytes and so emits invalid JSON). Clients that need exact bytes should
  use an alias ending in ``_bytes``, which is written as base64.
* Several outputs are written in sorted alias order, and several inputs are checked in sorted
  alias order (TF Serving uses protobuf map order, which is unspecified).
* A duplicate key in a JSON object: the first occurrence wins (rapidjson's ``FindMember``).
* Values echoed in messages (``JSON Value: ...``) are compact JSON truncated to 256 bytes, with
  ``NaN``/``Infinity`` spelled out and invalid UTF-8 shown as U+FFFD.
* Numbers are read correctly rounded (rapidjson's default mode can be off by an ulp in the 16th
  digit). A body that is not UTF-8 *and* has a lone low-surrogate escape (``\\udc80``) is refused
  with ``Invalid encoding in string.`` at the first invalid byte: the two cannot be told apart
  after decoding, and such a body is certainly not from a well-behaved client.

The parts, one concept each: ``_json_document`` parses the body (with ``_json_errors``,
``_json_scan`` and ``_json_emulator`` for rapidjson's errors), ``_json_to_tensor`` and
``_tensor_to_json`` convert, ``_json_text`` and ``_float_text`` write text, and
``predict_format`` holds what the JSON and msgpack codecs share (the request shape, the
columnar reading, the row-format response checks, ``PredictRequest``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfsfast.codecs._json_document import parse_document
from tfsfast.codecs._json_text import MAX_DEBUG_STRING_BYTES, debug_string
from tfsfast.codecs._json_to_tensor import Budget, Strings, from_instances, is_b64, to_tensor
from tfsfast.codecs._tensor_to_json import format_error, format_predict_response
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.codecs.predict_format import (
    DEFAULT_SIGNATURE,
    PredictCodec,
    PredictRequest,
    columnar_inputs,
    predict_request,
)
from tfsfast.runtime.dtypes import DataType
from tfsfast.util.status import invalid_argument

__all__ = [
    "DEFAULT_SIGNATURE",
    "MAX_DEBUG_STRING_BYTES",
    "JsonCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
    "parse_predict_request",
]

_PLAIN_INPUTS = ("inputs is a plain value/list, but expecting an object as multiple input tensors "
                 "required as per tensorinfo_map")


def _parse_predict_request(body: bytes, input_dtypes: Callable[[str], Mapping[str, DataType]],
                           limits: CodecLimits) -> PredictRequest:
    """``JsonCodec(limits).parse_predict_request``."""
    doc = parse_document(bytes(body), limits)
    top = doc.value
    raw_name = top.get("signature_name", "")
    if type(raw_name) is not str:
        raise invalid_argument(f"JSON Value: {debug_string(top)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    strings = Strings(doc.raw)
    budget = Budget(limits)

    def read_instances(instances: Any, dtypes: dict[str, int]) -> dict[str, np.ndarray]:
        if type(instances) is not list:
            raise invalid_argument(f"JSON Value: {debug_string(top)} Expecting 'instances' to be "
                                   "an list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {debug_string(top)} No values in 'instances' "
                                   "array")
        return from_instances(instances, dtypes, strings, budget)

    def tensor(value: Any, name: str, dtype: int) -> np.ndarray:
        return to_tensor(value, name, dtype, strings, budget)

    def read_inputs(value: Any, dtypes: dict[str, int]) -> dict[str, np.ndarray]:
        named = type(value) is dict and not is_b64(value)
        return columnar_inputs(value, dtypes, named, tensor, "object", _PLAIN_INPUTS)

    def both_keys() -> str:
        return (f"JSON Value: {debug_string(top)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist ")

    return predict_request(top, raw_name, input_dtypes, read_instances, read_inputs, both_keys)


class JsonCodec(PredictCodec):
    """The REST predict JSON codec under ``limits`` (a ``CodecLimits``, kept for its life).

    ``parse_predict_request(body, input_dtypes)`` parses a REST predict body (row ``instances``
    or columnar ``inputs``) into tensors: ``input_dtypes(signature_name)`` returns the
    signature's ``{alias: DataType}`` and raises ServingError itself for an unknown signature;
    it is called once, with the signature name after defaulting. Every failure is a ServingError
    carrying TF Serving's code and message (INVALID_ARGUMENT, or UNIMPLEMENTED for a columnar
    input of a dtype JSON cannot express; a limit's error names the limit).
    ``format_predict_response`` and ``format_error`` are the module's (no limit applies to
    them). Thread-safe: it holds nothing but its limits.
    """

    __slots__ = ()

    parse = staticmethod(_parse_predict_request)
    format_predict_response = staticmethod(format_predict_response)
    format_error = staticmethod(format_error)


# ``JsonCodec(DEFAULT_CODEC_LIMITS).parse_predict_request``, for callers without a codec of their
# own (a server hands its own ``CodecLimits`` to the codecs it makes).
parse_predict_request = JsonCodec(DEFAULT_CODEC_LIMITS).parse_predict_request
