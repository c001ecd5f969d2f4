"""``BatchMetrics``: TF Serving's ``batching_session`` metrics, accumulated per batching queue.

One source, compiled twice: ``_batch_metrics.pxd`` declares the C types with which Cython
compiles this file into ``tfsfast.batching._batch_metrics``, the module the compiled batching
session uses; the Python batching session uses this file as it is.

Why not the metrics' cells: ``queuing_latency`` and ``input_batch_size`` take one value per
task and the others one per run, and a cell update is a Python call that finds its thread's
shard and bisects its limits (about half a microsecond). On the batch thread, which holds the
GIL while it records, that was a tenth of what the event loop needed at 80,000 batched requests
a second. So each ``BatchMetrics`` keeps its own histograms and count, added to under its lock
(compiled, each value is a subtraction, a binary search and an increment in C), and every
``BatchMetrics`` made is summed into the DEFAULT registry's metrics at each collection
(``register_partial``), with the cells of the same labels. A collection may miss the run being
recorded, which the next one sees. Every ``BatchMetrics`` is kept for the life of the process:
what it counted must not vanish from a cumulative metric when its model is unloaded.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from tfsfast.monitoring.collection_registry import DEFAULT, Point, sum_values
from tfsfast.monitoring.metrics import HistogramValue
from tfsfast.monitoring.serving_metrics import (
    INPUT_BATCH_SIZE,
    PADDING_SIZE,
    PROCESSED_BATCH_SIZE,
    QUEUING_LATENCY,
    WRAPPED_RUN_COUNT,
)

__all__ = ["BatchMetrics", "Histogram", "bucket_index"]

_QUEUING_LIMITS: tuple[float, ...] = QUEUING_LATENCY.bucket_limits
# TF Serving gives input_batch_size, processed_batch_size and padding_size the same buckets.
_SIZE_LIMITS: tuple[float, ...] = INPUT_BATCH_SIZE.bucket_limits
if PROCESSED_BATCH_SIZE.bucket_limits != _SIZE_LIMITS or PADDING_SIZE.bucket_limits != _SIZE_LIMITS:
    raise ImportError("the batch size samplers' buckets differ")


def bucket_index(limits: tuple[float, ...], value: float) -> int:
    """The bucket ``SamplerCell.add`` counts ``value`` in: the first whose limit is above it;
    the last (whose limit is ``DBL_MAX``) for a value at or above every other limit, and NaN."""
    low = 0
    high = len(limits)
    while low < high:
        middle = (low + high) // 2
        limit = limits[middle]
        if value < limit:
            high = middle
        else:
            low = middle + 1
    return low if low < len(limits) else len(limits) - 1


class Histogram:
    """A histogram over ``limits`` (a sampler's, ending with ``DBL_MAX``) that one writer at a
    time adds to: the caller serializes ``add``."""

    __slots__ = ("counts", "limits", "total")

    def __init__(self, limits: tuple[float, ...]) -> None:
        self.limits = limits
        self.counts = [0] * len(limits)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bucket_index(self.limits, value)] += 1
        self.total += value

    def value(self) -> HistogramValue:
        return HistogramValue(self.limits, tuple(self.counts), self.total)


class BatchMetrics:
    """TF Serving's ``batching_session`` metrics of the batches of one queue, whose scheduler's
    threads are ``thread_pool_name``: per task, ``queuing_latency`` (µs from its enqueue to the
    batch's processing) and ``input_batch_size``; per run of the wrapped session,
    ``wrapped_run_count``, ``processed_batch_size`` (the rows run, padding included) and
    ``padding_size{execution_batch_size}``. Recorded by ``record_run``, from the threads that
    run the batches, so a request pays no call of its own."""

    __slots__ = ("_input", "_lock", "_padding", "_processed", "_queuing", "_wrapped",
                 "thread_pool_name")

    def __init__(self, thread_pool_name: str) -> None:
        self.thread_pool_name = thread_pool_name
        self._lock = threading.Lock()
        self._queuing = Histogram(_QUEUING_LIMITS)
        self._input = Histogram(_SIZE_LIMITS)
        self._processed = Histogram(_SIZE_LIMITS)
        self._padding: dict[int, Histogram] = {}
        self._wrapped = 0
        with _ALL_LOCK:
            _ALL.append(self)

    def record_run(self, tasks: list[Any], rows: int, padded: int, dequeued: float) -> None:
        """One run of ``tasks`` (each with ``enqueue_time`` and ``size``; ``rows`` rows in all,
        run as ``padded``), taken from the queue at ``dequeued`` (the queue's clock, in
        seconds, as ``enqueue_time``)."""
        with self._lock:
            for task in tasks:
                enqueued = task.enqueue_time
                # Whole microseconds, as TF Serving's (differences of EnvTime::NowMicros).
                micros = int((dequeued - enqueued) * 1e6)
                self._queuing.add(micros)
                size = task.size
                self._input.add(size)
            padding = self._padding.get(padded)
            if padding is None:
                padding = self._padding[padded] = Histogram(_SIZE_LIMITS)
            padding.add(padded - rows)
            self._processed.add(padded)
            self._wrapped += 1

    def points(self, metric: str) -> list[Point]:
        """This queue's points of ``metric`` (its full name), for the collection."""
        if metric == QUEUING_LATENCY.descriptor.name:
            return [Point((self.thread_pool_name,), self._queuing.value())]
        if metric == INPUT_BATCH_SIZE.descriptor.name:
            return [Point((), self._input.value())]
        if metric == PROCESSED_BATCH_SIZE.descriptor.name:
            return [Point((), self._processed.value())]
        if metric == PADDING_SIZE.descriptor.name:
            return [Point((str(size),), histogram.value())
                    for size, histogram in list(self._padding.items())]
        return [Point((), self._wrapped)]


_ALL_LOCK = threading.Lock()
_ALL: list[BatchMetrics] = []


def _summed(metric: str) -> list[Point]:
    """``metric``'s points over every ``BatchMetrics`` of this module, summed by labels."""
    with _ALL_LOCK:
        instances = list(_ALL)
    merged: dict[tuple[str, ...], Any] = {}
    for instance in instances:
        for point in instance.points(metric):
            merged[point.labels] = sum_values(merged.get(point.labels), point.value)
    return [Point(labels, value) for labels, value in merged.items()]


for _metric in (QUEUING_LATENCY, INPUT_BATCH_SIZE, PROCESSED_BATCH_SIZE, PADDING_SIZE,
                WRAPPED_RUN_COUNT):
    DEFAULT.register_partial(_metric.descriptor.name, functools.partial(_summed,
                                                                        _metric.descriptor.name))
