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


def for_core(core: Any, options: RestApiOptions, impl: Any = None, v2_impl: Any = None) -> Any:
    """A ``RestFastPath`` on ``core``'s handle table, with the handler's ``options``, and behind
    it the V2 infer fast path (``rest_infer_fast_path``) on the same table and options.

    They read the table the manager's ``get_servable_handle`` reads (``find`` with the same
    arguments), without building a ServableRequest and a ServableHandle per request. ``impl``
    and ``v2_impl`` pick modules (tests run both); the defaults are the ones the façades loaded.
    """
    from tfsfast.server.v2 import rest_infer_fast_path

    table = core.manager.handle_table
    fast_path = (impl or _impl).RestFastPath(table.find, options)
    fast_path.v2 = (v2_impl or rest_infer_fast_path._impl).RestInferFastPath(table.find, options)
    return fast_path


__all__ = ["IMPLEMENTATION", "RestFastPath", "for_core"]
