"""The request paths' own ``request_count`` and ``request_latency`` accumulators: compiled, or
their Python twin.

See ``_request_counts_py`` for the contract. ``IMPLEMENTATION`` says which runs (``"compiled"``
or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1`` selects the twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfsfast import _extensions

_impl = _extensions.load("tfsfast.monitoring._request_counts",
                         "tfsfast.monitoring._request_counts_py")

IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.monitoring._request_counts_py import OkCounts, RequestCounts, now_ns
else:
    OkCounts = _impl.OkCounts
    RequestCounts = _impl.RequestCounts
    now_ns = _impl.now_ns

__all__ = ["IMPLEMENTATION", "OkCounts", "RequestCounts", "now_ns"]
