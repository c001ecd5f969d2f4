"""``--monitoring_config_file``: a real Prometheus server scrapes a real tfsfast.

The requests sent are known, good and bad, over REST and gRPC; what Prometheus stored must be
exactly those counts per status (TF Serving's ``request_count`` semantics: every REST request
of the API, gRPC's Predict/Classify/Regress), and a quantile over ``request_latency`` must
answer. TF Serving's own ``testPrometheusEndpoint`` is the first case.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tfsfast.testing.prometheus_server import PrometheusServer
from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.wait import wait_until

pytestmark = pytest.mark.integration

PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("monitored")
    shutil.copytree(exported_models["tf1"], root / "m" / "1")
    config = root / "monitoring_config.txt"
    # TF Serving's testdata/monitoring_config.txt.
    config.write_text(f'prometheus_config: {{\n  enable: true,\n  path: "{PATH}"\n}}\n')
    with ServerProcess(["--model_name=m", f"--model_base_path={root / 'm'}",
                        f"--monitoring_config_file={config}"]) as s:
        yield s


def test_prometheus_endpoint(server: ServerProcess) -> None:
    # TF Serving's testPrometheusEndpoint.
    status, headers, body = server.request("GET", PATH)
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert "# TYPE" in body.decode()


def test_the_page_parses_with_tf_servings_names(server: ServerProcess) -> None:
    assert server.json("POST", "/v1/models/m:predict", {"instances": [1.0]})[0] == 200
    _, _, body = server.request("GET", PATH)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families[":tensorflow:serving:request_count"].type == "counter"
    latency = families[":tensorflow:serving:request_latency"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")
               and s.labels["model_name"] == "m" and s.labels["API"] == "predict"]
    assert len(buckets) == 34 and buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].labels["entrypoint"] == "REST"


def _grpc_predict(server: ServerProcess, model: str) -> grpc.StatusCode:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
        try:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                               timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def _counts(prometheus: PrometheusServer) -> dict[tuple[str, str], float]:
    samples = prometheus.query(":tensorflow:serving:request_count")
    return {(dict(labels)["model_name"], dict(labels)["status"]): value
            for labels, value in samples.items()}


def test_prometheus_scrapes_exact_counts(server: ServerProcess) -> None:
    before = _counts_from_page(server)
    sent: dict[tuple[str, str], int] = {}

    def expect(key: tuple[str, str]) -> None:
        sent[key] = sent.get(key, 0) + 1

    for _ in range(5):
        assert server.json("POST", "/v1/models/m:predict", {"instances": [1.0]})[0] == 200
        expect(("m", "OK"))
    for body in (b"{", b'{"instances": "x"}'):
        assert server.request("POST", "/v1/models/m:predict", body)[0] == 400
        expect(("m", "INVALID_ARGUMENT"))
    assert server.json("POST", "/v1/models/absent:predict", {"instances": [1.0]})[0] == 404
    expect(("absent", "NOT_FOUND"))
    for _ in range(3):
        assert _grpc_predict(server, "m") == grpc.StatusCode.OK
        expect(("m", "OK"))
    assert _grpc_predict(server, "absent") == grpc.StatusCode.NOT_FOUND
    expect(("absent", "NOT_FOUND"))
    expected = {key: before.get(key, 0) + n for key, n in sent.items()}
    sent_at = time.time()

    with PrometheusServer([f"127.0.0.1:{server.rest_port}"], PATH) as prometheus:
        wait_until(lambda: prometheus.scrapes_after(sent_at), "a scrape after the requests",
                   detail=prometheus.log)
        counts = _counts(prometheus)
        assert {key: counts.get(key) for key in expected} == expected
        quantile = prometheus.query(
            'histogram_quantile(0.99, :tensorflow:serving:request_latency_bucket'
            '{model_name="m",API="predict",entrypoint="REST"})')
        (value,) = quantile.values()
        assert 0 < value < math.inf


def _counts_from_page(server: ServerProcess) -> dict[tuple[str, str], float]:
    """What the page says now (the module's earlier tests sent requests too)."""
    _, _, body = server.request("GET", PATH)
    for family in text_string_to_metric_families(body.decode()):
        if family.name == ":tensorflow:serving:request_count":
            return {(s.labels["model_name"], s.labels["status"]): s.value
                    for s in family.samples}
    return {}


def _page(server: ServerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The page's samples: name as written (the parser adds ``_total`` to a counter's) ->
    labels -> value."""
    status, _, body = server.request("GET", PATH)
    assert status == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            name = family.name if family.type == "counter" else s.name
            samples.setdefault(name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def test_batching_metrics_under_a_batching_server(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "m" / "1")
    config = tmp_path / "monitoring_config.txt"
    config.write_text(f'prometheus_config {{ enable: true path: "{PATH}" }}\n')
    with ServerProcess(["--model_name=m", f"--model_base_path={tmp_path / 'm'}",
                        "--enable_batching", f"--monitoring_config_file={config}"]) as server:
        sent = 6
        for _ in range(sent):
            assert server.json("POST", "/v1/models/m:predict", {"instances": [1.0]})[0] == 200
        for _ in range(2):
            assert _grpc_predict(server, "m") == grpc.StatusCode.OK
        page = _page(server)
    pool = (("thread_pool_name", "model_server_batch_threads"),)
    runs = page[":tensorflow:serving:batching_session:wrapped_run_count"][()]
    # One task per request (each of one row), each run from the queue at least once per batch.
    assert 1 <= runs <= sent + 2
    assert page[":tensorflow:serving:batching_session:input_batch_size_count"][()] == sent + 2
    assert page[":tensorflow:serving:batching_session:input_batch_size_sum"][()] == sent + 2
    assert page[":tensorflow:serving:batching_session:queuing_latency_count"][pool] == sent + 2
    assert page[":tensorflow:serving:batching_session:processed_batch_size_count"][()] == runs
    padding = page[":tensorflow:serving:batching_session:padding_size_count"]
    assert sum(padding.values()) == runs
    requests = page[":tensorflow:serving:request_count"]
    assert requests[(("model_name", "m"), ("status", "OK"))] == sent + 2
    # The load in flight, read when the page is made: the scrape's own connection (its request
    # is being answered, not waiting), an empty queue, no gRPC call.
    assert page[":tfsfast:http:connections"][()] >= 1
    assert page[":tfsfast:http:requests_in_progress"][()] == 0
    assert page[":tfsfast:grpc:calls_in_progress"][()] == 0
    depths = page[":tfsfast:batching:queue_depth"]
    # Every batched signature of the export has its queue, all empty now.
    assert (("model_name", "m"), ("signature_name", "serving_default"), ("version", "1")) in depths
    assert set(depths.values()) == {0}
    # TensorFlow's own counters of the SavedModel the server loaded (a TF1 export).
    assert page[":tensorflow:core:saved_model:read:count"][(("write_version", "1"),)] >= 1
    assert sum(page[":tensorflow:core:saved_model:read:api"].values()) >= 1


def test_no_page_without_the_flag(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "m" / "1")
    with ServerProcess(["--model_name=m", f"--model_base_path={tmp_path / 'm'}"]) as server:
        status, headers, _ = server.request("GET", PATH)
        unknown = server.request("GET", "/unknown/path")
    assert (status, headers["Content-Type"]) == (404, "text/html")
    assert unknown[0] == 404


def test_rest_workers_serve_the_page_too(tmp_path: Path,
                                         exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "m" / "1")
    config = tmp_path / "monitoring_config.txt"
    config.write_text(f'prometheus_config {{ enable: true path: "{PATH}" }}\n')
    with ServerProcess(["--model_name=m", f"--model_base_path={tmp_path / 'm'}",
                        "--rest_api_num_workers=2",
                        f"--monitoring_config_file={config}"]) as server:
        server.wait_for_log("REST worker")
        # A connection each: the kernel spreads them over the two processes sharing the port,
        # so every one of 16 reaching the same process is a 1 in 2^15 chance.
        answers = [server.request("GET", PATH) for _ in range(16)]
    assert {(status, headers["Content-Type"]) for status, headers, _ in answers} == {
        (200, "text/plain")}
    assert all(b"# TYPE :tensorflow:serving:request_count counter\n" in body
               for _, _, body in answers)
