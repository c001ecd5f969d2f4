"""The REST predict JSON codec: compiled, or its Python twin.

``JsonCodec(limits)`` parses predict bodies within the ``CodecLimits`` it is made with
(``parse_predict_request``) and writes responses and errors (``format_predict_response``,
``format_error``, also module functions here: no limit applies to them). See ``_json_py`` for
the contract and ``_json`` for how the compiled codec meets it (a C fast path for well-formed
bodies, the twin for everything else, so results and messages are identical).
``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a compiled codec that is missing or fails to import
falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from tfsfast import _extensions
from tfsfast.codecs.codec_limits import CodecLimits

_impl = _extensions.load("tfsfast.codecs._json", "tfsfast.codecs._json_py")

IMPL = _impl
JsonCodec = _impl.JsonCodec
PredictRequest = _impl.PredictRequest
format_predict_response = _impl.format_predict_response
format_error = _impl.format_error
COMPILED: bool = _impl.__name__.endswith("._json")

__all__ = [
    "COMPILED",
    "IMPL",
    "CodecLimits",
    "JsonCodec",
    "PredictRequest",
    "format_error",
    "format_predict_response",
]
