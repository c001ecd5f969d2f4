"""``RunCost``: how long a signature's runs take, for deciding where the next one runs, and the
``RunCostPolicy`` it decides by.

``_run_cost_py`` is the one source (and the contract): ``_run_cost`` is that file compiled.
``IMPLEMENTATION`` says which runs (``"compiled"`` or ``"python"``); ``TFSFAST_NO_EXTENSIONS=1``
selects the Python module; a compiled module that is missing or fails to import falls back to it
with a RuntimeWarning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tfsfast import _extensions
from tfsfast.util._run_cost_py import (
    PROBE_INTERVAL,
    PROBE_SHARE,
    RISE,
    SPIKE_FACTOR,
    STAY_FACTOR,
)

_impl = _extensions.load("tfsfast.util._run_cost", "tfsfast.util._run_cost_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.util._run_cost_py import RunCost
else:
    RunCost = _impl.RunCost

# A signature whose runs take less than this (a RunCost estimate of its measured runs) runs on
# the event loop's own thread: handing a ~5 µs run to a pool thread and back costs ten times the
# run. Slower signatures go to a thread so the loop keeps serving meanwhile. Batched signatures
# use the same limit for their batches (BatchingSession), gRPC's Predict for its runs on the
# completion-queue loop (RunCosts).
INLINE_RUN_MAX_SECONDS = 100e-6


@dataclass(frozen=True)
class RunCostPolicy:
    """Where a signature's runs go by their measured cost: on the thread that asks (an event
    loop) while a ``RunCost`` estimates them under ``inline_run_max_seconds`` (>= 0), else to a
    thread.

    The server builds one at startup and hands it to everything that makes a ``RunCost`` (the
    bundles through ``SessionBundleConfig``, their batching sessions, gRPC's ``RunCosts``), which
    passes it on to each ``RunCost(policy)``; a ``RunCost`` reads it once. ``inf`` runs every
    measured signature inline, 0 none (both for tests).
    """

    inline_run_max_seconds: float = INLINE_RUN_MAX_SECONDS

    def __post_init__(self) -> None:
        limit = self.inline_run_max_seconds
        if type(limit) not in (int, float) or not limit >= 0:
            raise ValueError("RunCostPolicy.inline_run_max_seconds must be a number >= 0, got "
                             f"{limit!r}")


DEFAULT_RUN_COST_POLICY = RunCostPolicy()

__all__ = [
    "DEFAULT_RUN_COST_POLICY",
    "IMPLEMENTATION",
    "INLINE_RUN_MAX_SECONDS",
    "PROBE_INTERVAL",
    "PROBE_SHARE",
    "RISE",
    "SPIKE_FACTOR",
    "STAY_FACTOR",
    "RunCost",
    "RunCostPolicy",
]
