"""The handle table the request path reads without locking: compiled, or its Python twin.

``_handle_table_py`` is the one source (and the contract): ``_handle_table`` is that file
compiled. ``IMPLEMENTATION`` says which runs (``"compiled"`` or ``"python"``);
``TFSFAST_NO_EXTENSIONS=1`` selects the Python module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions

_impl = _extensions.load("tfsfast.core._handle_table", "tfsfast.core._handle_table_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.core._handle_table_py import EARLIEST, LATEST, HandleTable
else:
    HandleTable = _impl.HandleTable
    EARLIEST = _impl.EARLIEST
    LATEST = _impl.LATEST

__all__ = ["EARLIEST", "IMPLEMENTATION", "LATEST", "HandleTable"]
