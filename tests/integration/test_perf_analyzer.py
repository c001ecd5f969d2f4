"""Triton's ``perf_analyzer`` drives a real tfsfast process serving half_plus_two: over the Open
Inference Protocol on REST and on gRPC (after reading the model's metadata and Triton model
configuration, which it asks for before sending anything), and over TF Serving's gRPC API
(``--service-kind=tfserving``: GetModelMetadata, then Predict).

With ``--enable_batching`` the configuration says the model batches (``max_batch_size``, the
batch dimension left out of ``dims``), and perf_analyzer sends batches of ``-b`` rows without
being told the input's shape.

Each run is brief (concurrency 2, measurement windows of 200 ms, a lenient stability bound: the
figures are not what is tested) and must exit 0, report a throughput, and have the server count
at least as many OK requests for the model as perf_analyzer says it measured, and no failed
ones. The binary comes from ``tfsfast.testing.perf_analyzer``; when it cannot run here the tests
fail saying what to install.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tfsfast.testing import perf_analyzer
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "half_plus_two"
METRICS_PATH = "/monitoring/prometheus/metrics"
# Brief, stable enough for any machine: the figures only have to exist.
LOAD = ["-m", MODEL, "--concurrency-range", "2", "--measurement-interval", "200",
        "--stability-percentage", "100"]
BATCHING_PARAMETERS = """\
max_batch_size { value: 8 }
batch_timeout_micros { value: 1000 }
num_batch_threads { value: 1 }
"""


@pytest.fixture(scope="module")
def available() -> None:
    try:
        perf_analyzer.binary()
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        pytest.fail(str(e))


def _serve(root: Path, model: Path, *flags: str) -> ServerProcess:
    shutil.copytree(model, root / MODEL / "1")
    monitoring = root / "monitoring_config.txt"
    monitoring.write_text(f'prometheus_config: {{ enable: true, path: "{METRICS_PATH}" }}\n')
    return ServerProcess([f"--model_name={MODEL}", f"--model_base_path={root / MODEL}",
                          f"--monitoring_config_file={monitoring}", *flags])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    with _serve(tmp_path_factory.mktemp("perf_analyzer"), exported_models["tf1"]) as s:
        yield s


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory,
                    exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("perf_analyzer_batching")
    parameters = root / "batching_parameters.txt"
    parameters.write_text(BATCHING_PARAMETERS)
    with _serve(root, exported_models["tf1"], "--enable_batching",
                f"--batching_parameters_file={parameters}") as s:
        yield s


def request_counts(server: ServerProcess) -> dict[str, float]:
    """``request_count`` of the model, by status."""
    status, _, body = server.request("GET", METRICS_PATH)
    assert status == 200
    return {sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(body.decode())
            if family.name == ":tensorflow:serving:request_count"
            for sample in family.samples if sample.labels.get("model_name") == MODEL}


def endpoint(server: ServerProcess, api: str) -> list[str]:
    return {
        "v2_http": ["-i", "http", "-u", f"127.0.0.1:{server.rest_port}"],
        "v2_grpc": ["-i", "grpc", "-u", f"127.0.0.1:{server.grpc_port}"],
        "tfserving_grpc": ["--service-kind", "tfserving", "-i", "grpc",
                           "-u", f"127.0.0.1:{server.grpc_port}",
                           "--model-signature-name", "serving_default"],
    }[api]


def measure(server: ServerProcess, args: list[str]) -> perf_analyzer.Report:
    """A run of perf_analyzer with ``args`` that exited 0, measured one load level with a
    throughput, and had each request it measured counted OK by the server, and none failed."""
    before = request_counts(server)
    report = perf_analyzer.run(args, timeout=120).check()
    after = request_counts(server)
    [measured] = report.measurements
    assert measured.concurrency == 2
    assert measured.throughput > 0
    assert measured.request_count > 0, report.stdout
    grew = {status: after[status] - before.get(status, 0) for status in after
            if after[status] != before.get(status, 0)}
    assert set(grew) == {"OK"}, grew
    assert grew["OK"] >= measured.request_count
    return report


@pytest.mark.parametrize("api", ["v2_http", "v2_grpc", "tfserving_grpc"])
def test_perf_analyzer_measures_the_model(available: None, server: ServerProcess,
                                          api: str) -> None:
    # x is [-1, 1] and the model does not batch: perf_analyzer needs the shape to send.
    measure(server, [*LOAD, "--shape", "x:3,1", *endpoint(server, api)])


@pytest.mark.parametrize("api", ["v2_http", "v2_grpc"])
def test_perf_analyzer_sends_batches_the_configuration_allows(
        available: None, batching_server: ServerProcess, api: str) -> None:
    # A model whose configuration has max_batch_size 0 fails with -b 4 before sending.
    report = measure(batching_server, [*LOAD, "-b", "4", *endpoint(batching_server, api)])
    assert "Batch size: 4" in report.stdout
