"""The metric types: exact counts from many threads, TensorFlow's bucket rules."""

from __future__ import annotations

import math
import sys
import threading

import pytest

from tfsfast.monitoring import buckets
from tfsfast.monitoring.collection_registry import CollectionRegistry, Point
from tfsfast.monitoring.metrics import (
    Counter,
    Gauge,
    HistogramValue,
    MetricDescriptor,
    Sampler,
)


def test_exponential_buckets_are_tensorflows() -> None:
    # Each limit is the previous one times the factor, then DBL_MAX closes the last bucket.
    assert buckets.exponential(1, 2, 15) == (*[2.0**i for i in range(15)], buckets.DBL_MAX)
    latency = buckets.exponential(10, 1.8, 33)
    assert len(latency) == 34 and latency[:3] == (10.0, 18.0, 10.0 * 1.8 * 1.8)
    with pytest.raises(ValueError):
        buckets.exponential(0, 2, 3)
    with pytest.raises(ValueError):
        buckets.explicit([1.0, 1.0])


def test_sampler_counts_each_value_below_the_first_greater_limit() -> None:
    cell = Sampler("/s", [1.0, 10.0], "d", "l").get_cell("x")
    for value in (0.5, 1.0, 9.99, 10.0, 1e300, math.inf):
        cell.add(value)
    value = cell.value()
    # [.., 1), [1, 10), [10, DBL_MAX]: a value equal to a limit goes above it (upper_bound).
    assert value.bucket_limits == (1.0, 10.0, buckets.DBL_MAX)
    assert value.bucket_counts == (1, 2, 3)
    assert value.count == 6 and value.total == math.inf


def test_sampler_add_counts_equals_adding_each_value() -> None:
    values = [0.5, 1.0, 9.99, 10.0, 1e300, 3.0]
    one_by_one = Sampler("/s", [1.0, 10.0], "d").get_cell()
    for value in values:
        one_by_one.add(value)
    at_once = Sampler("/s", [1.0, 10.0], "d").get_cell()
    at_once.add(0.25)  # a shard made by add, then added to
    at_once.add_counts([0, 0, 0], 0.0)
    at_once.add_counts([0, 3, 2], sum(values) - 0.5)
    assert at_once.bucket_limits == (1.0, 10.0, buckets.DBL_MAX)
    expected = one_by_one.value()
    assert at_once.value() == HistogramValue(expected.bucket_limits, expected.bucket_counts,
                                             expected.total - 0.25)


def test_counter_counts_exactly_from_many_threads() -> None:
    cell = Counter("/c", "d", "model").get_cell("m")
    per_thread, threads = 20_000, 8
    start = threading.Barrier(threads)

    def count() -> None:
        start.wait()
        for _ in range(per_thread):
            cell.increment_by(1)

    workers = [threading.Thread(target=count) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Counts from threads that have ended stay.
    assert cell.value() == per_thread * threads
    with pytest.raises(ValueError, match="cannot be decremented"):
        cell.increment_by(-1)


def test_cells_are_per_label_values_and_kept() -> None:
    counter = Counter("/c", "d", "model", "status")
    counter.get_cell("b", "OK").increment_by(2)
    counter.get_cell("a", "OK").increment_by(1)
    assert counter.get_cell("b", "OK") is counter.get_cell("b", "OK")
    assert [(labels, cell.value()) for labels, cell in counter.cells()] == [
        (("a", "OK"), 1), (("b", "OK"), 2)]
    with pytest.raises(ValueError, match="has labels"):
        counter.get_cell("a")


def test_registry_collects_metrics_and_collectors_by_name() -> None:
    registry = CollectionRegistry()
    gauge = registry.register(Gauge("/b/gauge", "d", "model"))
    gauge.get_cell("m").set(3)
    registry.register_collector(MetricDescriptor("/a/computed", "d", ("k",), "gauge", "int64"),
                                lambda: [Point(("z",), 2), Point(("y",), 1)])
    collected = registry.collect()
    assert [m.descriptor.name for m in collected] == ["/a/computed", "/b/gauge"]
    assert collected[0].points == (Point(("y",), 1), Point(("z",), 2))
    assert collected[1].points == (Point(("m",), 3),)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Counter("/b/gauge", "d"))


def test_partial_collectors_are_summed_with_the_cells_of_the_same_labels() -> None:
    registry = CollectionRegistry()
    counter = registry.register(Counter("/c", "", "model"))
    sampler = registry.register(Sampler("/s", [10.0], "", "model"))
    counter.get_cell("a").increment_by(2)
    sampler.get_cell("a").add(3.0)
    registry.register_partial("/c", lambda: [Point(("a",), 5), Point(("b",), 1)])
    registry.register_partial("/c", lambda: [Point(("b",), 4)])
    registry.register_partial("/s", lambda: [
        Point(("a",), HistogramValue((10.0, sys.float_info.max), (1, 2), 40.0))])
    collected = {m.descriptor.name: m.points for m in registry.collect()}
    assert collected["/c"] == (Point(("a",), 7), Point(("b",), 5))
    assert collected["/s"] == (
        Point(("a",), HistogramValue((10.0, sys.float_info.max), (2, 2), 43.0)),)
    with pytest.raises(ValueError, match="no metric named /absent is registered"):
        registry.register_partial("/absent", list)
