"""Predict's signature step: the compiled ``_predict_signatures``, else its Python twin.

``_predict_signatures_py`` is the one source (and the contract): ``_predict_signatures`` is that
file compiled. ``IMPLEMENTATION`` says which runs (``"compiled"`` or ``"python"``);
``TFSFAST_NO_EXTENSIONS=1`` selects the Python module; a compiled module that is missing or fails
to import falls back to it with a RuntimeWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions
from tfsfast.server.predict._predict_signatures_py import MAX_BUNDLES

_impl = _extensions.load("tfsfast.server.predict._predict_signatures",
                         "tfsfast.server.predict._predict_signatures_py")

IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.server.predict._predict_signatures_py import (
        BundleSignatures,
        PredictSignature,
        SignatureCache,
    )
else:
    BundleSignatures = _impl.BundleSignatures
    PredictSignature = _impl.PredictSignature
    SignatureCache = _impl.SignatureCache

__all__ = ["IMPLEMENTATION", "MAX_BUNDLES", "BundleSignatures", "PredictSignature",
           "SignatureCache"]
