"""Where requests are counted: TF Serving's ``request_count``, ``request_latency``,
``runtime_latency`` and ``request_example_counts``, on REST (the handler and the fast path) and
gRPC (the service and the fast path), compiled and twin, read back from the DEFAULT registry as
the page reads them (the compiled paths' own accumulators summed with the cells).

Each test counts what its own requests added: other tests in the process count too.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfsfast.codecs import tensor_proto
from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.metrics import HistogramValue, Sampler
from tfsfast.monitoring.prometheus_exporter import PROMETHEUS_PATH, generate_page
from tfsfast.monitoring.serving_metrics import REQUEST_LATENCY
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.grpc.prediction_service_impl import (
    INLINE_MAX_REQUEST_BYTES,
    PredictionServiceImpl,
    PredictionServiceOptions,
)
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.server.v2.grpc_inference_service import GrpcInferenceServiceImpl
from tfsfast.server.v2.grpc_protocol import message_class
from tfsfast.testing.call_context import CallContext
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy
from tfsfast.util.status import ServingError

REST_IMPLS = implementations("tfsfast.server.http._rest_fast_path",
                             "tfsfast.server.http._rest_fast_path_py")
GRPC_IMPLS = implementations("tfsfast.server.grpc._predict_fast_path",
                             "tfsfast.server.grpc._predict_fast_path_py")
INFER_IMPLS = implementations("tfsfast.server.v2._infer_fast_path",
                              "tfsfast.server.v2._infer_fast_path_py")
V2_IMPLS = implementations("tfsfast.server.v2._rest_infer_fast_path",
                           "tfsfast.server.v2._rest_infer_fast_path_py")
JSON = {b"content-type": b"application/json"}
ROW = b'{"instances": [[1.0], [2.0], [5.0]]}'
# Every measured signature runs inline, however slow this machine is.
INLINE = RunCostPolicy(float("inf"))


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    """Model "counted" at version 3."""
    base = tmp_path_factory.mktemp("request_metrics") / "counted"
    shutil.copytree(exported_models["tf1"], base / "3")
    serving = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("counted", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(run_cost_policy=INLINE)))
    yield serving
    serving.stop()


def _metric(name: str) -> dict[tuple[str, ...], Any]:
    (metric,) = [m for m in DEFAULT.collect() if m.descriptor.name == name]
    return {point.labels: point.value for point in metric.points}


def request_counts() -> dict[tuple[str, ...], int]:
    return _metric("/tensorflow/serving/request_count")


def latency_counts(name: str = "request_latency") -> dict[tuple[str, ...], int]:
    """Values recorded per label combination of a latency sampler."""
    values = _metric(f"/tensorflow/serving/{name}")
    counts = {}
    for labels, value in values.items():
        assert isinstance(value, HistogramValue)
        counts[labels] = value.count
    return counts


def added(before: dict[tuple[str, ...], int], after: dict[tuple[str, ...], int]
          ) -> dict[tuple[str, ...], int]:
    return {labels: n - before.get(labels, 0) for labels, n in after.items()
            if n != before.get(labels, 0)}


def call(handler: HttpRestApiHandler, method: str, path: str, body: bytes = b"",
         headers: dict[bytes, bytes] | None = None) -> HttpResponse:
    result = handler(HttpRequest(method, path.encode(), headers or {}, body, True))
    if isinstance(result, HttpResponse):
        return result

    async def wait() -> HttpResponse:
        return await result

    return asyncio.run(wait())


# --- the compiled paths' accumulators ----------------------------------------------------------


@pytest.mark.parametrize("module", implementations("tfsfast.monitoring._request_counts",
                                                   "tfsfast.monitoring._request_counts_py"))
def test_accumulated_latencies_fall_in_the_samplers_buckets(module: str) -> None:
    impl = importlib.import_module(module)
    counts = impl.RequestCounts("REST")
    name = f"bucketed {module}"
    ok = counts.ok_counts(name, "predict")
    runtime = counts.runtime_counts(name, "Predict")
    reference = Sampler("/reference", REQUEST_LATENCY.bucket_limits, "").get_cell()
    latencies = [0, 9, 10, 11, 17, 18, 19, 1_000, 1_474_755_971, 1_474_755_972, 10**13]
    for usec in latencies:
        ok.record_elapsed(usec * 1000 + 999)  # whole microseconds, as the cells get them
        runtime.record_elapsed(usec * 1000)
        reference.add(usec)
    counts.error(name, 5)
    counts.error(name, 5)
    assert _metric("/tensorflow/serving/request_latency")[(name, "predict", "REST")] == \
        reference.value()
    assert _metric("/tensorflow/serving/runtime_latency")[(name, "Predict", "TF1")] == \
        reference.value()
    assert {labels: n for labels, n in request_counts().items() if labels[0] == name} == {
        (name, "OK"): len(latencies), (name, "NOT_FOUND"): 2}


# --- REST: the handler -------------------------------------------------------------------------


def test_rest_handler_counts_every_api_request_once_by_url_model_and_status(
        core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    sent = [
        ("POST", "/v1/models/counted:predict", ROW, 200),
        ("POST", "/v1/models/counted/versions/3:predict", ROW, 200),
        ("POST", "/v1/models/counted:predict", b"{", 400),
        ("POST", "/v1/models/counted:predict", b'{"instances": "x"}', 400),
        ("POST", "/v1/models/counted/versions/7:predict", ROW, 404),
        ("POST", "/v1/models/nowhere:predict", ROW, 404),
        ("POST", "/v1/models/counted:regress",
         b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}', 200),
        ("POST", "/v1/models/counted:classify",
         b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}', 200),
        ("POST", "/v1/models/counted:regress", b'{"signature_name": "nope", "examples": [{}]}',
         400),
        ("GET", "/v1/models/counted", b"", 200),
        ("GET", "/v1/models/counted/metadata", b"", 200),
        ("GET", "/v1/models/nowhere", b"", 404),
        ("GET", "/v1/models", b"", 400),  # Missing model name in request.
        ("PUT", "/v1/models/counted:predict", ROW, 400),  # Malformed request: no model parsed
        ("OPTIONS", "/v1/models/counted:predict", b"", 400),  # a preflight without an origin
    ]
    requests_before, latency_before = request_counts(), latency_counts()
    for method, path, body, status in sent:
        assert call(handler, method, path, body).status == status, (method, path, body)
    # Not requests of the API: not counted.
    assert call(handler, "GET", "/v2/health/live").status == 200
    assert call(handler, "GET", "/elsewhere").status == 404
    assert added(requests_before, request_counts()) == {
        ("counted", "OK"): 6,
        ("counted", "INVALID_ARGUMENT"): 3,
        ("counted", "NOT_FOUND"): 1,  # an unknown version is still the URL's model
        ("nowhere", "NOT_FOUND"): 2,
        ("", "INVALID_ARGUMENT"): 3,
    }
    assert added(latency_before, latency_counts()) == {
        ("counted", "predict", "REST"): 2,
        ("counted", "regress", "REST"): 1,
        ("counted", "classify", "REST"): 1,
        ("counted", "", "REST"): 2,
    }


def test_rest_preflight_with_an_origin_is_ok_without_a_model(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core, RestApiOptions(enable_cors_support=True))
    before, latency_before = request_counts(), latency_counts()
    response = call(handler, "OPTIONS", "/v1/models/counted:predict",
                    headers={b"origin": b"http://example.com"})
    assert response.status == 200
    assert added(before, request_counts()) == {("", "OK"): 1}
    assert added(latency_before, latency_counts()) == {("", "", "REST"): 1}


def test_rest_runs_and_examples_are_recorded(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    examples = _metric("/tensorflow/serving/request_example_count_total").get(("counted",), 0)
    runtime_before = latency_counts("runtime_latency")
    assert call(handler, "POST", "/v1/models/counted:predict", ROW).status == 200
    assert call(handler, "POST", "/v1/models/counted:regress",
                b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}'
                ).status == 200
    assert call(handler, "POST", "/v1/models/counted:predict", b"{").status == 400
    assert added(runtime_before, latency_counts("runtime_latency")) == {
        ("counted", "Predict", "TF1"): 1, ("counted", "Regress", "TF1"): 1}
    assert _metric("/tensorflow/serving/request_example_count_total")[("counted",)] == \
        examples + 2


def test_the_page_is_served_at_the_configured_path_only_and_not_counted(
        core: ServerCore) -> None:
    handler = HttpRestApiHandler(core, RestApiOptions(prometheus_path="/metrics"))
    before = request_counts()
    for method in ("GET", "POST", "DELETE"):
        response = call(handler, method, "/metrics")
        assert (response.status, response.content_type) == (200, b"text/plain")
        assert response.body.startswith(b"# TYPE ")
        assert b"\n# TYPE :tensorflow:serving:request_count counter\n" in response.body
    assert call(handler, "GET", "/metrics?x=1").status == 200  # the path, as routes see it
    assert added(before, request_counts()) == {}
    # Without a path configured, the default path is an unknown path like any other.
    response = call(HttpRestApiHandler(core), "GET", PROMETHEUS_PATH)
    assert (response.status, response.content_type) == (404, b"text/html")


# --- REST: the fast path -----------------------------------------------------------------------


@pytest.fixture(params=REST_IMPLS)
def rest_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


def test_rest_fast_path_counts_what_it_answers(rest_impl: Any, core: ServerCore) -> None:
    call(HttpRestApiHandler(core), "POST", "/v1/models/counted:predict", ROW)  # measured
    fast = rest_fast_path.for_core(core, RestApiOptions(), rest_impl)
    before, latency_before = request_counts(), latency_counts()
    runtime_before = latency_counts("runtime_latency")
    for _ in range(3):
        answer = fast.answer("POST", b"/v1/models/counted:predict", JSON, ROW, True)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200 OK\r\n")
    answer = fast.answer("POST", b"/v1/models/counted/versions/3:predict", JSON, ROW, True)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200 OK\r\n")
    # Declined: the handler answers and counts these.
    assert fast.answer("POST", b"/v1/models/counted:predict", JSON, b"{", True) is None
    assert fast.answer("POST", b"/v1/models/nowhere:predict", JSON, ROW, True) is None
    assert added(before, request_counts()) == {("counted", "OK"): 4}
    assert added(latency_before, latency_counts()) == {("counted", "predict", "REST"): 4}
    assert added(runtime_before, latency_counts("runtime_latency")) == {
        ("counted", "Predict", "TF1"): 4}


def test_rest_v2_fast_path_counts_what_it_answers(v2_impl: Any, core: ServerCore) -> None:
    infer = b'{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP32","data":[1,2]}]}'
    call(HttpRestApiHandler(core), "POST", "/v2/models/counted/infer", infer)  # measured
    fast = v2_impl.RestInferFastPath(core.manager.handle_table.find, RestApiOptions())
    before, latency_before = request_counts(), latency_counts()
    runtime_before = latency_counts("runtime_latency")
    for path in (b"/v2/models/counted/infer", b"/v2/models/counted/infer",
                 b"/v2/models/counted/versions/3/infer"):
        answer = fast.answer(path, infer, True)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200 OK\r\n")
    # Declined: the handler answers and counts these.
    assert fast.answer(b"/v2/models/counted/infer", b"{", True) is None
    assert fast.answer(b"/v2/models/nowhere/infer", infer, True) is None
    assert added(before, request_counts()) == {("counted", "OK"): 3}
    assert added(latency_before, latency_counts()) == {("counted", "infer", "REST"): 3}
    assert added(runtime_before, latency_counts("runtime_latency")) == {
        ("counted", "ModelInfer", "TF1"): 3}


@pytest.fixture(params=V2_IMPLS)
def v2_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


# --- gRPC --------------------------------------------------------------------------------------


def predict_request(name: str = "counted", **spec: Any) -> bytes:
    r = predict_pb2.PredictRequest()
    r.model_spec.name = name
    for key, value in spec.items():
        setattr(r.model_spec, key, value)
    r.inputs["x"].CopyFrom(tensor_proto.from_ndarray(np.array([[1.0], [2.0]], np.float32)))
    return r.SerializeToString()


def examples_input(target: Any) -> None:
    for x in (1.0, 4.0, 5.0):
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(x)
        target.example_list.examples.append(example)


def answer(method: Any, data: bytes) -> bytes:
    result = method(data, CallContext())
    return result if isinstance(result, bytes) else result()


def test_grpc_service_counts_predict_classify_regress_only(core: ServerCore) -> None:
    service = PredictionServiceImpl(core, PredictionServiceOptions(run_cost_policy=INLINE))
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "counted"
    regress.model_spec.signature_name = "regress_x_to_y"
    examples_input(regress.input)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "counted"
    classify.model_spec.signature_name = "classify_x_to_y"
    examples_input(classify.input)
    bad_classify = classification_pb2.ClassificationRequest()
    bad_classify.model_spec.name = "counted"
    bad_classify.model_spec.signature_name = "nope"
    examples_input(bad_classify.input)
    multi = inference_pb2.MultiInferenceRequest()
    task = multi.tasks.add()
    task.model_spec.name = "counted"
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    examples_input(multi.input)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "counted"
    metadata.metadata_field.append("signature_def")

    before, latency_before = request_counts(), latency_counts()
    examples_before = _metric("/tensorflow/serving/request_example_count_total").get(
        ("counted",), 0)
    answer(service.predict_answer, predict_request())
    answer(service.predict_answer, predict_request())
    answer(service.regress, regress.SerializeToString())
    answer(service.classify, classify.SerializeToString())
    failures = [
        (service.predict_answer, predict_request("nowhere")),
        (service.predict_answer, predict_request(signature_name="nope")),
        (service.predict_answer, predict_pb2.PredictRequest().SerializeToString()),
        (service.predict_answer, b"\xff"),
        (service.classify, bad_classify.SerializeToString()),
        (service.regress, b"\xff"),
    ]
    for method, data in failures:
        with pytest.raises(ServingError):
            answer(method, data)
    # Not counted, as in TF Serving.
    answer(service.multi_inference, multi.SerializeToString())
    answer(service.get_model_metadata, metadata.SerializeToString())
    assert added(before, request_counts()) == {
        ("counted", "OK"): 4,
        ("nowhere", "NOT_FOUND"): 1,
        ("counted", "FAILED_PRECONDITION"): 1,
        ("counted", "INVALID_ARGUMENT"): 1,
        ("", "INVALID_ARGUMENT"): 3,
    }
    assert added(latency_before, latency_counts()) == {
        ("counted", "Predict", "GRPC"): 2,
        ("counted", "Regress", "GRPC"): 1,
        ("counted", "Classify", "GRPC"): 1,
    }
    # Regress, Classify and MultiInference: three examples each.
    assert _metric("/tensorflow/serving/request_example_count_total")[("counted",)] == \
        examples_before + 9


def test_grpc_continuation_is_counted_when_it_ends(core: ServerCore) -> None:
    # A policy that lets nothing run inline: Predict answers with a continuation.
    service = PredictionServiceImpl(core, PredictionServiceOptions(
        run_cost_policy=RunCostPolicy(0.0)))
    before, latency_before = request_counts(), latency_counts()
    continuation = service.predict_answer(predict_request(), CallContext())
    assert not isinstance(continuation, bytes)
    assert added(before, request_counts()) == {}
    continuation()
    assert added(before, request_counts()) == {("counted", "OK"): 1}
    assert added(latency_before, latency_counts()) == {("counted", "Predict", "GRPC"): 1}


@pytest.fixture(params=GRPC_IMPLS)
def grpc_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


@pytest.fixture(params=INFER_IMPLS)
def infer_impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


def test_model_infer_fast_path_counts_what_it_answers(infer_impl: Any,
                                                      core: ServerCore) -> None:
    service = GrpcInferenceServiceImpl(core, ServerHealth(core), 1 << 20, run_cost_policy=INLINE)
    request = message_class("ModelInferRequest")(model_name="counted")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    request.raw_input_contents.append(np.array([1.0, 2.0], "<f4").tobytes())
    data = request.SerializeToString()
    answer(service.model_infer_answer, data)  # measured
    fast = infer_impl.InferFastPath(core.manager.handle_table.find, service._run_costs,
                                    service.model_infer_answer)
    before, latency_before = request_counts(), latency_counts()
    runtime_before = latency_counts("runtime_latency")
    for _ in range(3):
        assert fast.answer(data, CallContext()) is not None
    # Declined: model_infer_answer answers and counts it.
    assert fast.answer(data[:-3], CallContext()) is None
    assert added(before, request_counts()) == {("counted", "OK"): 3}
    assert added(latency_before, latency_counts()) == {("counted", "ModelInfer", "GRPC"): 3}
    assert added(runtime_before, latency_counts("runtime_latency")) == {
        ("counted", "ModelInfer", "TF1"): 3}


def test_grpc_fast_path_counts_once_whoever_answers(grpc_impl: Any, core: ServerCore) -> None:
    service = PredictionServiceImpl(core, PredictionServiceOptions(run_cost_policy=INLINE))
    answer(service.predict_answer, predict_request())  # measured: runs inline from now
    fast = grpc_impl.PredictFastPath(
        core.manager.handle_table.find, core.get_model_version_for_label, service._run_costs,
        service.predict_answer, False, False, INLINE_MAX_REQUEST_BYTES, service._tensors)
    before, latency_before = request_counts(), latency_counts()
    runtime_before = latency_counts("runtime_latency")
    assert fast.answer(predict_request(), CallContext()) is not None
    for _ in range(2):
        answer(fast, predict_request())
    with pytest.raises(ServingError):
        answer(fast, predict_request("nowhere"))  # declined, then predict_answer's NOT_FOUND
    assert added(before, request_counts()) == {("counted", "OK"): 3,
                                               ("nowhere", "NOT_FOUND"): 1}
    assert added(latency_before, latency_counts()) == {("counted", "Predict", "GRPC"): 3}
    assert added(runtime_before, latency_counts("runtime_latency")) == {
        ("counted", "Predict", "TF1"): 3}


def test_the_page_shows_the_compiled_paths_counts(core: ServerCore) -> None:
    fast = rest_fast_path.for_core(core, RestApiOptions())
    call(HttpRestApiHandler(core), "POST", "/v1/models/counted:predict", ROW)
    before = request_counts()[("counted", "OK")]
    assert fast.answer("POST", b"/v1/models/counted:predict", JSON, ROW, True) is not None
    line = f':tensorflow:serving:request_count{{model_name="counted",status="OK"}} {before + 1}'
    assert line in generate_page(DEFAULT).splitlines()
