"""BatchMetrics, compiled and twin: a batch's record equals TF Serving's per-task samples."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

import pytest

from tfsfast.monitoring import buckets, serving_metrics
from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.metrics import HistogramValue, Sampler
from tfsfast.testing.test_util import implementations, import_impl

IMPLS = implementations("tfsfast.batching._batch_metrics", "tfsfast.batching._batch_metrics_py")
_POOLS = itertools.count()


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return import_impl(request.param)


@dataclass
class Task:
    enqueue_time: float
    size: int


def test_bucket_index_is_where_a_sampler_adds_the_value(impl: Any) -> None:
    limits = buckets.exponential(100, 1.2, 52)
    rng = random.Random(7)
    values = [*limits, *(math.nextafter(x, 0) for x in limits), 0.0, -5.0, math.inf,
              -math.inf, math.nan, *(rng.uniform(0, 2e6) for _ in range(500))]
    for value in values:
        cell = Sampler("/b", limits, "d").get_cell()
        cell.add(value)
        counts = cell.value().bucket_counts
        assert counts.index(1) == impl.bucket_index(limits, value), value


def test_a_run_is_recorded_as_its_tasks_one_by_one(impl: Any) -> None:
    pool = f"pool-{next(_POOLS)}"
    metrics = impl.BatchMetrics(pool)
    dequeued = 1000.0
    tasks = [Task(dequeued - d, s) for d, s in
             [(0.0, 1), (0.0000995, 3), (0.00012, 1), (0.25, 64), (2.0, 9000), (0.0031, 2)]]
    before = {name: value_of(name, pool) for name in NAMES}
    padding_name = serving_metrics.PADDING_SIZE.descriptor.name
    padding_before = collected(padding_name, ("9072",))
    metrics.record_run(tasks, 9071, 9072, dequeued)
    metrics.record_run(tasks[:1], 1, 1, dequeued + 1)

    queuing = reference(serving_metrics.QUEUING_LATENCY.bucket_limits,
                        [int((dequeued - t.enqueue_time) * 1e6) for t in tasks] + [1000000])
    sizes = reference(serving_metrics.INPUT_BATCH_SIZE.bucket_limits,
                      [t.size for t in tasks] + [1])
    assert value_of("queuing", pool) == added(before["queuing"], queuing)
    assert value_of("input", pool) == added(before["input"], sizes)
    assert value_of("processed", pool) == added(
        before["processed"], reference(serving_metrics.PROCESSED_BATCH_SIZE.bucket_limits,
                                       [9072, 1]))
    assert value_of("wrapped", pool) == (before["wrapped"] or 0) + 2
    assert collected(padding_name, ("9072",)) == added(
        padding_before, reference(serving_metrics.PADDING_SIZE.bucket_limits, [1]))


def test_an_empty_run_counts_one_wrapped_run(impl: Any) -> None:
    pool = f"pool-{next(_POOLS)}"
    before = value_of("wrapped", pool) or 0
    impl.BatchMetrics(pool).record_run([], 0, 0, 5.0)
    assert value_of("wrapped", pool) == before + 1
    assert value_of("queuing", pool).count == 0


NAMES = ("queuing", "input", "processed", "wrapped")


def value_of(name: str, pool: str) -> Any:
    """The metric's value as a collection of the DEFAULT registry reads it."""
    metric, labels = {
        "queuing": (serving_metrics.QUEUING_LATENCY, (pool,)),
        "input": (serving_metrics.INPUT_BATCH_SIZE, ()),
        "processed": (serving_metrics.PROCESSED_BATCH_SIZE, ()),
        "wrapped": (serving_metrics.WRAPPED_RUN_COUNT, ()),
    }[name]
    return collected(metric.descriptor.name, labels)


def collected(name: str, labels: tuple[str, ...]) -> Any:
    for metric in DEFAULT.collect():
        if metric.descriptor.name == name:
            for point in metric.points:
                if point.labels == labels:
                    return point.value
    return None


def reference(limits: tuple[float, ...], values: list[float]) -> HistogramValue:
    cell = Sampler("/r", limits, "d").get_cell()
    for value in values:
        cell.add(value)
    return cell.value()


def added(base: HistogramValue | None, more: HistogramValue) -> HistogramValue:
    if base is None:
        return more
    return HistogramValue(base.bucket_limits,
                          tuple(a + b for a, b in zip(base.bucket_counts, more.bucket_counts,
                                                      strict=True)),
                          base.total + more.total)
