"""The gRPC Predict fast path: compiled, or its Python twin.

See ``_predict_fast_path_py`` for the contract. ``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a
compiled module that is missing or fails to import falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from tfsfast import _extensions

_impl = _extensions.load("tfsfast.server.grpc._predict_fast_path",
                         "tfsfast.server.grpc._predict_fast_path_py")

PredictFastPath = _impl.PredictFastPath
COMPILED: bool = _impl.__name__.endswith("._predict_fast_path")

__all__ = ["COMPILED", "PredictFastPath"]
