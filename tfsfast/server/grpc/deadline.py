"""The run timeout a gRPC call's deadline leaves, as every gRPC handler of the server reads it.

A handler's context reports ``time_remaining()``: seconds, or None without a deadline on the
completion-queue loop (``fast_unary``). grpcio's own server, which serves the methods when the
loop is off, reports a call without a deadline as one in gRPC's infinite future instead (some
1e18 seconds away, more milliseconds than a run timeout can hold), so a time remaining of
``NO_DEADLINE_SECONDS`` or more is no deadline either.
"""

from __future__ import annotations

import math

__all__ = ["DEADLINE_PASSED", "NO_DEADLINE_SECONDS", "run_timeout_ms"]

NO_DEADLINE_SECONDS = 1e15
# run_timeout_ms's answer for a deadline that has passed.
DEADLINE_PASSED = -1


def run_timeout_ms(remaining: float | None) -> int:
    """The run timeout (``timeout_in_ms``) of a call with ``remaining`` seconds left: whole
    milliseconds rounded up, at least 1; 0 without a deadline; ``DEADLINE_PASSED`` once none is
    left."""
    if remaining is None or remaining >= NO_DEADLINE_SECONDS:
        return 0
    if remaining <= 0:
        return DEADLINE_PASSED
    return max(1, math.ceil(remaining * 1000.0))
