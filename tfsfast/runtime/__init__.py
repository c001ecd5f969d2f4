"""The TensorFlow runtime: load a SavedModel and run its signatures.

``load_saved_model(export_dir, tags, session_config) -> SavedModelSession`` with
``.signatures`` (``Signature`` by key), ``.meta_graph_def``, ``.run(signature_key, inputs,
output_aliases=None, timeout_in_ms=0) -> {alias: ndarray}`` and ``.close()``. Failures raise
``ServingError`` with TF's canonical code and message.

The implementation (the compiled ``_session``, else the Python twin ``_session_py``) is chosen
on first use of these names, not on import of the package: the compiled module links
TensorFlow's C++ library, and modules that only need ``dtypes``, ``signature`` or ``arrays``
should not pay for loading it. ``IMPLEMENTATION`` says which runs (``"compiled"`` or
``"python"``); to a type checker these names are the twin's.

Related entry points: :func:`tfsfast.runtime.session_options.server_session_config` (the
session ``ConfigProto`` from the server's flags) and
:func:`tfsfast.runtime.tflite.load_tflite_model` (``--prefer_tflite_model``).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from tfsfast import _extensions

if TYPE_CHECKING:  # the façade's names, resolved lazily below
    from tfsfast.runtime._session_py import IMPLEMENTATION, SavedModelSession, load_saved_model

__all__ = ["IMPLEMENTATION", "SavedModelSession", "load_saved_model"]

_impl: ModuleType | None = None


def _implementation() -> ModuleType:
    global _impl
    if _impl is None:
        _impl = _extensions.load("tfsfast.runtime._session", "tfsfast.runtime._session_py")
    return _impl


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_implementation(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
