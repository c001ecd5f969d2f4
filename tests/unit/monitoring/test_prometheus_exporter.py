"""The exposition text: TF Serving's format, readable by Prometheus's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tfsfast.monitoring import buckets
from tfsfast.monitoring.collection_registry import CollectionRegistry
from tfsfast.monitoring.metrics import Counter, Gauge, Sampler
from tfsfast.monitoring.prometheus_exporter import generate_page, metric_name


def test_names_follow_tf_servings_rules() -> None:
    assert metric_name("/tensorflow/serving/request_count") == ":tensorflow:serving:request_count"
    assert metric_name("9lives-x.y") == "_9lives:x:y"


def test_page_is_tf_servings_text() -> None:
    registry = CollectionRegistry()
    count = registry.register(Counter("/tensorflow/serving/request_count", "d",
                                      "model_name", "status"))
    count.get_cell("m", "OK").increment_by(3)
    count.get_cell('we"ird\\name\nx', "NOT_FOUND").increment_by(1)
    latency = registry.register(Sampler("/tensorflow/serving/request_latency",
                                        buckets.exponential(10, 1.8, 2), "d",
                                        "model_name", "API", "entrypoint"))
    cell = latency.get_cell("m", "predict", "REST")
    for value in (5, 12, 12, 1000):
        cell.add(value)
    registry.register(Gauge("/tfsfast/empty", "d", "x"))
    assert generate_page(registry) == (
        '# TYPE :tensorflow:serving:request_count counter\n'
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 3\n'
        ':tensorflow:serving:request_count{model_name="we\\"ird\\\\name\\nx",'
        'status="NOT_FOUND"} 1\n'
        '# TYPE :tensorflow:serving:request_latency histogram\n'
        ':tensorflow:serving:request_latency_bucket'
        '{model_name="m",API="predict",entrypoint="REST",le="10"} 1\n'
        ':tensorflow:serving:request_latency_bucket'
        '{model_name="m",API="predict",entrypoint="REST",le="18"} 3\n'
        ':tensorflow:serving:request_latency_bucket'
        '{model_name="m",API="predict",entrypoint="REST",le="+Inf"} 4\n'
        ':tensorflow:serving:request_latency_sum{model_name="m",API="predict",entrypoint="REST"}'
        ' 1029\n'
        ':tensorflow:serving:request_latency_count{model_name="m",API="predict",'
        'entrypoint="REST"} 4\n'
        '# TYPE :tfsfast:empty gauge\n')


def test_prometheus_parses_the_page() -> None:
    registry = CollectionRegistry()
    count = registry.register(Counter("/tensorflow/serving/request_count", "d",
                                      "model_name", "status"))
    count.get_cell('a"b\\c', "OK").increment_by(7)
    latency = registry.register(Sampler("/tensorflow/serving/request_latency",
                                        buckets.exponential(10, 1.8, 33), "d", "model_name"))
    for value in range(0, 100_000, 997):
        latency.get_cell("m").add(value)
    gauge = registry.register(Gauge("/tfsfast/process/cpu_seconds", "d",
                                    value_type="double"))
    gauge.get_cell().set(1.25)
    families = {f.name: f for f in text_string_to_metric_families(generate_page(registry))}
    # Prometheus names a counter's family without its _total; TF Serving's series has none.
    counter = families[":tensorflow:serving:request_count"]
    assert counter.type == "counter"
    assert [(s.labels, s.value) for s in counter.samples] == [
        ({"model_name": 'a"b\\c', "status": "OK"}, 7.0)]
    histogram = families[":tensorflow:serving:request_latency"]
    assert histogram.type == "histogram"
    buckets_seen = [s for s in histogram.samples if s.name.endswith("_bucket")]
    assert buckets_seen[-1].labels["le"] == "+Inf" and len(buckets_seen) == 34
    counts = [s.value for s in buckets_seen]
    assert counts == sorted(counts) and counts[-1] == 101  # cumulative
    (total,) = [s.value for s in histogram.samples if s.name.endswith("_count")]
    assert total == 101
    (cpu,) = families[":tfsfast:process:cpu_seconds"].samples
    assert cpu.value == 1.25
