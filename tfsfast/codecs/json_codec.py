"""The REST predict JSON codec: compiled, or its Python twin.

``JsonCodec(limits)`` parses predict bodies within the ``CodecLimits`` it is made with
(``parse_predict_request``) and writes responses and errors (``format_predict_response``,
``format_error``, also module functions here: no limit applies to them). See ``_json_py`` for
the contract and ``_json`` for how the compiled codec meets it (a C fast path for well-formed
bodies, the twin for everything else, so results and messages are identical).
``IMPLEMENTATION`` says which runs (``"compiled"`` or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1``
selects the twin; a compiled codec that is missing or fails to import falls back to the twin
with a RuntimeWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions
from tfsfast.codecs.codec_limits import CodecLimits

_impl = _extensions.load("tfsfast.codecs._json", "tfsfast.codecs._json_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.codecs._json_py import (
        JsonCodec,
        PredictRequest,
        format_error,
        format_predict_response,
    )
else:
    JsonCodec = _impl.JsonCodec
    PredictRequest = _impl.PredictRequest
    format_predict_response = _impl.format_predict_response
    format_error = _impl.format_error

__all__ = [
    "IMPLEMENTATION",
    "CodecLimits",
    "JsonCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
]
