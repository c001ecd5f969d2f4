"""``RunCost``: how long a signature's runs take, for deciding where the next one runs.

See ``_run_cost_py`` for the contract. ``TFSFAST_NO_EXTENSIONS=1`` selects the twin; a compiled
module that is missing or fails to import falls back to the twin with a RuntimeWarning.
"""

from __future__ import annotations

from tfsfast import _extensions
from tfsfast.util._run_cost_py import (
    PROBE_INTERVAL,
    PROBE_SHARE,
    RISE,
    SPIKE_FACTOR,
    STAY_FACTOR,
)

_impl = _extensions.load("tfsfast.util._run_cost", "tfsfast.util._run_cost_py")

RunCost = _impl.RunCost
COMPILED: bool = _impl.__name__.endswith("._run_cost")

__all__ = [
    "COMPILED",
    "PROBE_INTERVAL",
    "PROBE_SHARE",
    "RISE",
    "SPIKE_FACTOR",
    "STAY_FACTOR",
    "RunCost",
]
