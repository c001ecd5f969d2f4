"""The handle table the request path reads without locking: compiled, or its Python twin.

``_handle_table_py`` is the one source (and the contract): ``_handle_table`` is that file
compiled. ``TFSFAST_NO_EXTENSIONS=1`` selects the Python module.
"""

from __future__ import annotations

from tfsfast import _extensions

_impl = _extensions.load("tfsfast.core._handle_table", "tfsfast.core._handle_table_py")

HandleTable = _impl.HandleTable
EARLIEST: int = _impl.EARLIEST
LATEST: int = _impl.LATEST
COMPILED: bool = _impl.__name__.endswith("._handle_table")

__all__ = ["COMPILED", "EARLIEST", "LATEST", "HandleTable"]
