"""``CollectionRegistry``: where metrics are registered and collected from (tsl
``collection_registry``).

A metric is registered once by name (a second metric of the same name is a ValueError: two
definitions would export one series twice). A *collector* is a function called at each
collection that returns points computed then (a gauge per model state, the process's memory):
values that nobody writes on a request path. ``collect`` returns every metric's points, sorted
by metric name, as TensorFlow's collection does.

A *partial collector* adds points to a registered metric: the compiled request paths count in
accumulators of their own (C counters, one set per event loop or completion-queue thread,
written without a lock or a Python call) and hand them over at collection, where they are
summed with the metric's cells of the same labels (``register_partial``).

``DEFAULT`` is the process's registry, which TF Serving's metrics (``serving_metrics``) and
tfsfast's own register in and the Prometheus endpoint exports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tfsfast.monitoring.metrics import (
    Counter,
    Gauge,
    HistogramValue,
    MetricDescriptor,
    Sampler,
)

__all__ = ["DEFAULT", "CollectedMetric", "CollectionRegistry", "Point", "sum_values"]


@dataclass(frozen=True)
class Point:
    """One label combination's value at collection."""

    labels: tuple[str, ...]
    value: int | float | HistogramValue


@dataclass(frozen=True)
class CollectedMetric:
    descriptor: MetricDescriptor
    points: tuple[Point, ...]


Collector = Callable[[], Sequence[Point]]


class CollectionRegistry:
    """Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Counter | Gauge | Sampler] = {}
        self._collectors: dict[str, tuple[MetricDescriptor, Collector]] = {}
        self._partials: dict[str, list[Collector]] = {}

    def register(self, metric: Any) -> Any:
        """Registers ``metric`` (a ``Counter``, ``Gauge`` or ``Sampler``) and returns it."""
        with self._lock:
            self._check_free(metric.descriptor.name)
            self._metrics[metric.descriptor.name] = metric
        return metric

    def register_collector(self, descriptor: MetricDescriptor, collector: Collector) -> None:
        """Registers a metric whose points ``collector`` computes at each collection."""
        with self._lock:
            self._check_free(descriptor.name)
            self._collectors[descriptor.name] = (descriptor, collector)

    def register_partial(self, name: str, collector: Collector) -> None:
        """Adds ``collector``'s points to the metric registered as ``name`` at each collection,
        summed with its cells' points of the same labels (counters' values, histograms' bucket
        counts and totals). ValueError when no such metric is registered."""
        with self._lock:
            if name not in self._metrics:
                raise ValueError(f"no metric named {name} is registered")
            self._partials.setdefault(name, []).append(collector)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._metrics.pop(name, None)
            self._collectors.pop(name, None)
            self._partials.pop(name, None)

    def _check_free(self, name: str) -> None:
        if name in self._metrics or name in self._collectors:
            raise ValueError(f"a metric named {name} is already registered")

    def collect(self) -> list[CollectedMetric]:
        with self._lock:
            metrics = dict(self._metrics)
            collectors = dict(self._collectors)
            partials = {name: list(found) for name, found in self._partials.items()}
        collected = []
        for name in sorted({*metrics, *collectors}):
            if name in metrics:
                metric = metrics[name]
                values = {labels: cell.value() for labels, cell in metric.cells()}
                for collector in partials.get(name, ()):
                    for point in collector():
                        values[point.labels] = sum_values(values.get(point.labels), point.value)
                points = tuple(Point(labels, values[labels]) for labels in sorted(values))
                collected.append(CollectedMetric(metric.descriptor, points))
            else:
                descriptor, collector = collectors[name]
                points = tuple(sorted(collector(), key=lambda point: point.labels))
                collected.append(CollectedMetric(descriptor, points))
        return collected


def sum_values(a: int | float | HistogramValue | None,
         b: int | float | HistogramValue) -> int | float | HistogramValue:
    """Two values of one series added up (a None ``a``: no cell of those labels yet)."""
    if a is None:
        return b
    if isinstance(a, HistogramValue) and isinstance(b, HistogramValue):
        return HistogramValue(a.bucket_limits,
                              tuple(x + y for x, y in zip(a.bucket_counts, b.bucket_counts,
                                                          strict=True)),
                              a.total + b.total)
    assert not isinstance(a, HistogramValue) and not isinstance(b, HistogramValue)
    return a + b


DEFAULT = CollectionRegistry()
