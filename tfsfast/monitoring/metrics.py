"""The metric types: TensorFlow's monitoring library (``tsl/lib/monitoring``) in Python.

A metric has a name (``/tensorflow/serving/request_count``), a description and label names; a
*cell* holds the value of one combination of label values (``metric.get_cell("m", "OK")``) and
lives as long as the metric, so a caller on a hot path looks its cell up once and keeps it.

- ``Counter``: a cumulative int64 (``increment_by``, never down).
- ``Gauge``: an int64 or double that is set (``set``); or computed when collected
  (``CollectionRegistry.register_collector``).
- ``Sampler``: a histogram over fixed bucket limits (``buckets``; ``add``).

Why cells are sharded by thread: requests are counted from event loops, gRPC's threads and the
run pool at once, and a Python ``+=`` on a shared int is a read, an add and a write that two
threads can interleave, losing one. A lock per increment would serialize every request on the
event loop behind whatever thread holds it. So each thread that writes a cell gets a shard of
its own (found through a ``threading.local``), only that thread writes it, and a collection adds
the shards up; a read races a write only by the increment in flight, which the next collection
sees. Shards of threads that ended are kept (their counts must not vanish): their number is
bounded by the threads the process ever wrote a cell from, a few dozen.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from tfsfast.monitoring import buckets as _buckets

__all__ = [
    "Counter",
    "CounterCell",
    "Gauge",
    "GaugeCell",
    "HistogramValue",
    "MetricDescriptor",
    "Sampler",
    "SamplerCell",
]

MetricKind = Literal["cumulative", "gauge"]
ValueType = Literal["int64", "double", "histogram"]


@dataclass(frozen=True)
class MetricDescriptor:
    """What a collection says of a metric (tsl ``MetricDescriptor``)."""

    name: str
    description: str
    label_names: tuple[str, ...]
    metric_kind: MetricKind
    value_type: ValueType


@dataclass(frozen=True)
class HistogramValue:
    """A ``Sampler`` cell's collected value: ``bucket_counts[i]`` values fell below
    ``bucket_limits[i]`` (and at or above the limit before); ``total`` is their sum."""

    bucket_limits: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.bucket_counts)


class _Sharded:
    """One cell's per-thread shards (see the module docstring)."""

    __slots__ = ("_local", "_lock", "_shards")

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._shards: list[list[float]] = []

    def _new_shard(self, size: int) -> list[float]:
        shard = [0] * size
        with self._lock:
            self._shards.append(shard)  # type: ignore[arg-type]
        self._local.shard = shard
        return shard  # type: ignore[return-value]

    def _all(self) -> list[list[float]]:
        with self._lock:
            return list(self._shards)


class CounterCell(_Sharded):
    """One label combination of a ``Counter``."""

    __slots__ = ()

    def increment_by(self, step: int = 1) -> None:
        """Adds ``step`` (>= 0: a counter never goes down; ValueError otherwise)."""
        if step < 0:
            raise ValueError(f"a counter cannot be decremented (step {step})")
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard(1)
        shard[0] += step

    def value(self) -> int:
        return int(sum(shard[0] for shard in self._all()))


class SamplerCell(_Sharded):
    """One label combination of a ``Sampler``: a histogram."""

    __slots__ = ("_limits",)

    def __init__(self, limits: tuple[float, ...]) -> None:
        super().__init__()
        self._limits = limits

    def add(self, value: float) -> None:
        """Counts ``value`` in the first bucket whose limit is above it (the last, ``DBL_MAX``,
        takes every value at or above the others', and NaN)."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard(len(self._limits) + 1)
        index = bisect.bisect_right(self._limits, value)
        shard[index if index < len(self._limits) else -2] += 1
        shard[-1] += value

    @property
    def bucket_limits(self) -> tuple[float, ...]:
        return self._limits

    def add_counts(self, counts: Sequence[int], total: float) -> None:
        """Counts many values at once: ``counts[i]`` of them in bucket ``i`` (as ``add`` would
        place them; ``len(counts)`` is the number of buckets), ``total`` their sum. For a
        caller that adds a batch's worth of values, so it pays one call, not one per value."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._new_shard(len(self._limits) + 1)
        for index, count in enumerate(counts):
            if count:
                shard[index] += count
        shard[-1] += total

    def value(self) -> HistogramValue:
        size = len(self._limits)
        counts = [0] * size
        total = 0.0
        for shard in self._all():
            for i in range(size):
                counts[i] += int(shard[i])
            total += shard[-1]
        return HistogramValue(self._limits, tuple(counts), total)


class GaugeCell:
    """One label combination of a ``Gauge``: the last value set (a single write, which the
    interpreter makes atomic)."""

    __slots__ = ("_value",)

    def __init__(self, initial: float) -> None:
        self._value = initial

    def set(self, value: float) -> None:
        self._value = value

    def value(self) -> float:
        return self._value


CellT = TypeVar("CellT", CounterCell, SamplerCell, GaugeCell)


class _Metric(Generic[CellT]):
    """A metric's descriptor and its cells by label values."""

    def __init__(self, descriptor: MetricDescriptor) -> None:
        self.descriptor = descriptor
        self._cells: dict[tuple[str, ...], CellT] = {}
        self._lock = threading.Lock()

    def _new_cell(self) -> CellT:
        raise NotImplementedError

    def get_cell(self, *labels: str) -> CellT:
        """The cell of these label values (one per label name), made on first use."""
        cell = self._cells.get(labels)
        if cell is None:
            if len(labels) != len(self.descriptor.label_names):
                raise ValueError(f"{self.descriptor.name} has labels "
                                 f"{self.descriptor.label_names}, got values {labels}")
            with self._lock:
                cell = self._cells.setdefault(labels, self._new_cell())
        return cell

    def cells(self) -> list[tuple[tuple[str, ...], CellT]]:
        """Every cell made so far, by label values, sorted (as TensorFlow's map orders them)."""
        with self._lock:
            return sorted(self._cells.items(), key=lambda item: item[0])


class Counter(_Metric[CounterCell]):
    def __init__(self, name: str, description: str, *label_names: str) -> None:
        super().__init__(MetricDescriptor(name, description, label_names, "cumulative",
                                          "int64"))

    def _new_cell(self) -> CounterCell:
        return CounterCell()


class Sampler(_Metric[SamplerCell]):
    def __init__(self, name: str, bucket_limits: Sequence[float], description: str,
                 *label_names: str) -> None:
        super().__init__(MetricDescriptor(name, description, label_names, "cumulative",
                                          "histogram"))
        self.bucket_limits = _buckets.explicit(bucket_limits)

    def _new_cell(self) -> SamplerCell:
        return SamplerCell(self.bucket_limits)


class Gauge(_Metric[GaugeCell]):
    def __init__(self, name: str, description: str, *label_names: str,
                 value_type: Literal["int64", "double"] = "int64") -> None:
        super().__init__(MetricDescriptor(name, description, label_names, "gauge", value_type))

    def _new_cell(self) -> GaugeCell:
        return GaugeCell(0 if self.descriptor.value_type == "int64" else 0.0)
