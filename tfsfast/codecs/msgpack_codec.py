"""The REST predict msgpack codec (``Content-Type: application/msgpack``): compiled, or its twin.

``MsgpackCodec(limits)`` parses predict bodies within the ``CodecLimits`` it is made with
(``parse_predict_request``; ``read_value`` for classify and regress bodies) and writes responses
and errors (``format_predict_response``, ``format_error``, also module functions here: no limit
applies to them; ``PredictRequest`` is the JSON codec's). See ``_msgpack_py`` for the wire format
and the contract and ``_msgpack`` for the compiled fast path. ``IMPLEMENTATION`` says which runs
(``"compiled"`` or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a compiled codec
that is missing or fails to import falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions
from tfsfast.codecs.codec_limits import CodecLimits

_impl = _extensions.load("tfsfast.codecs._msgpack", "tfsfast.codecs._msgpack_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)
CONTENT_TYPE = "application/msgpack"

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.codecs._msgpack_py import (
        MsgpackCodec,
        PredictRequest,
        format_error,
        format_predict_response,
    )
else:
    MsgpackCodec = _impl.MsgpackCodec
    PredictRequest = _impl.PredictRequest
    format_predict_response = _impl.format_predict_response
    format_error = _impl.format_error

__all__ = [
    "CONTENT_TYPE",
    "IMPLEMENTATION",
    "CodecLimits",
    "MsgpackCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
]
