"""A ``Sampler``'s bucket limits: TensorFlow's ``monitoring::Buckets`` (tsl ``sampler.cc``).

A histogram of limits ``l0 < l1 < ... < ln`` counts a value ``v`` in the first bucket whose limit
is greater than ``v`` (``upper_bound``), so bucket ``i`` holds ``[l(i-1), l(i))``; the last limit
is always ``DBL_MAX`` (appended when the given limits do not end with it), so every value has a
bucket. The Prometheus exposition writes each limit but the last as ``le`` and the last as
``+Inf``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence

DBL_MAX = sys.float_info.max

__all__ = ["DBL_MAX", "explicit", "exponential"]


def explicit(limits: Sequence[float]) -> tuple[float, ...]:
    """``Buckets::Explicit``: ``limits`` (strictly increasing, at least one) and ``DBL_MAX``."""
    bounds = [float(limit) for limit in limits]
    if not bounds:
        raise ValueError("a histogram needs at least one bucket limit")
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"bucket limits must increase strictly, got {bounds}")
    if bounds[-1] != DBL_MAX:
        bounds.append(DBL_MAX)
    return tuple(bounds)


def exponential(scale: float, growth_factor: float, bucket_count: int) -> tuple[float, ...]:
    """``Buckets::Exponential``: ``scale * growth_factor**i`` for ``i < bucket_count``, each
    the previous times the factor (as TensorFlow multiplies, so the limits are bit-identical to
    TF Serving's), then ``DBL_MAX``."""
    if bucket_count < 1 or scale <= 0 or growth_factor <= 1:
        raise ValueError(f"exponential buckets need bucket_count >= 1, scale > 0 and "
                         f"growth_factor > 1, got {bucket_count}, {scale}, {growth_factor}")
    bounds = []
    bound = float(scale)
    for _ in range(bucket_count):
        bounds.append(bound)
        bound *= growth_factor
    return explicit(bounds)
