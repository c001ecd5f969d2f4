"""The REST V2 infer fast path: compiled, or its Python twin.

See ``_rest_infer_fast_path_py`` for the contract. ``IMPLEMENTATION`` says which runs
(``"compiled"`` or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a compiled module
that is missing or fails to import falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions

_impl = _extensions.load("tfsfast.server.v2._rest_infer_fast_path",
                         "tfsfast.server.v2._rest_infer_fast_path_py")

IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.server.v2._rest_infer_fast_path_py import RestInferFastPath
else:
    RestInferFastPath = _impl.RestInferFastPath

__all__ = ["IMPLEMENTATION", "RestInferFastPath"]
