"""The REST predict fast path: compiled, or its Python twin.

See ``_rest_fast_path_py`` for the contract. ``IMPLEMENTATION`` says which runs (``"compiled"``
or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a compiled module that is missing
or fails to import falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tfsfast import _extensions
from tfsfast.server.http.http_rest_api_handler import RestApiOptions

_impl = _extensions.load("tfsfast.server.http._rest_fast_path",
                         "tfsfast.server.http._rest_fast_path_py")

IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.server.http._rest_fast_path_py import RestFastPath
else:
    RestFastPath = _impl.RestFastPath


def for_core(core: Any, options: RestApiOptions, impl: Any = None) -> Any:
    """A ``RestFastPath`` on ``core``'s handle table, with the handler's ``options``.

    It reads the table the manager's ``get_servable_handle`` reads (``find`` with the same
    arguments), without building a ServableRequest and a ServableHandle per request. ``impl``
    picks a module (tests run both); the default is the one this façade loaded.
    """
    table = core.manager.handle_table
    return (impl or _impl).RestFastPath(table.find, options)


__all__ = ["IMPLEMENTATION", "RestFastPath", "for_core"]
