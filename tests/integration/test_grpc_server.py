"""A real tfsfast process driven with TF Serving's official gRPC stubs: TCP, UNIX socket, TLS.

The known answers are TF Serving's own (``tensorflow_model_server_test.py``): half_plus_two gives
3.0 for x = 2.0 through Predict, Classify, Regress and MultiInference, with the response's model
spec naming the model, the (resolved) signature and version 123.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfsfast.server.grpc import protos
from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.test_util import tfserving_testdata

pytestmark = pytest.mark.integration

REGRESS, CLASSIFY = "tensorflow/serving/regress", "tensorflow/serving/classify"


def predict_request(name: str = "default", x: float = 2.0, shape: tuple[int, ...] = (1, 1),
                    signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    tensor = request.inputs["x"]
    tensor.dtype = 1
    tensor.float_val.append(x)
    for d in shape:
        tensor.tensor_shape.dim.add().size = d
    return request


def examples(x: float = 2.0) -> input_pb2.Input:
    proto = input_pb2.Input()
    proto.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return proto


def spec_of(response) -> tuple[str, str, int]:
    spec = response.model_spec
    return spec.name, spec.signature_name, spec.version.value


def check_every_api(channel: grpc.Channel, x_shape: tuple[int, ...], multi_tasks: int) -> None:
    """Predict/Classify/Regress/MultiInference give 3.0 for 2.0, with TF Serving's model spec."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(shape=x_shape)
    request.output_filter.append("y")
    response = stub.Predict(request, timeout=30)
    assert response.outputs["y"].dtype == 1 and list(response.outputs["y"].float_val) == [3.0]
    assert spec_of(response) == ("default", "serving_default", 123)

    classify = classification_pb2.ClassificationRequest(input=examples())
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    response = stub.Classify(classify, timeout=30)
    assert [c.score for c in response.result.classifications[0].classes] == [3.0]
    assert spec_of(response) == ("default", "classify_x_to_y", 123)

    regress = regression_pb2.RegressionRequest(input=examples())
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    response = stub.Regress(regress, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0]
    assert spec_of(response) == ("default", "regress_x_to_y", 123)

    multi = inference_pb2.MultiInferenceRequest(input=examples())
    for signature, method in [("regress_x_to_y", REGRESS),
                              ("classify_x_to_y", CLASSIFY)][:multi_tasks]:
        task = multi.tasks.add(method_name=method)
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
    response = stub.MultiInference(multi, timeout=30)
    assert response.results[0].regression_result.regressions[0].value == 3.0
    if multi_tasks > 1:
        assert response.results[1].classification_result.classifications[0].classes[
            0].score == 3.0
    assert [spec_of(r) for r in response.results] == [
        ("default", s, 123) for s in ("regress_x_to_y", "classify_x_to_y")[:multi_tasks]]


def rpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=30)
    return e.value.code(), e.value.details()


# --- TF Serving's TF1 test export, over TCP and the UNIX socket --------------------------------


@pytest.fixture(scope="module")
def cpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tfserving_testdata("saved_model_half_plus_two_cpu")
    socket = tmp_path_factory.mktemp("uds") / "tfs.sock"
    with ServerProcess(["--model_name=default", f"--model_base_path={base}",
                        f"--grpc_socket_path={socket}", "--enable_grpc_healthcheck_service",
                        "--grpc_channel_arguments=grpc.max_concurrent_streams=50,x.y=z"]) as s:
        s.socket_path = socket  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def tcp(cpu_server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"localhost:{cpu_server.grpc_port}") as channel:
        yield channel


def test_tf_serving_log_lines(cpu_server: ServerProcess) -> None:
    assert f"Running gRPC ModelServer at 0.0.0.0:{cpu_server.grpc_port} ..." in cpu_server.log
    assert (f"Running gRPC ModelServer at UNIX socket {cpu_server.socket_path} ..."  # type: ignore[attr-defined]
            in cpu_server.log)


def test_every_api_over_tcp_and_unix_socket(cpu_server: ServerProcess, tcp) -> None:
    check_every_api(tcp, (1, 1), multi_tasks=2)
    with grpc.insecure_channel(f"unix:{cpu_server.socket_path}") as uds:  # type: ignore[attr-defined]
        check_every_api(uds, (1, 1), multi_tasks=2)


def test_model_status_matches_tf_serving(tcp) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(tcp)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    response = stub.GetModelStatus(request, timeout=30)
    assert json_format.MessageToDict(response, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True) == {
        "model_version_status": [{"version": "123", "state": "AVAILABLE",
                                  "status": {"error_code": "OK", "error_message": ""}}]}


def test_model_metadata_matches_tf_serving(tcp) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(tcp)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "default"
    response = stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    ours = {"model_spec": json_format.MessageToDict(
                response.model_spec, preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True),
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True)}}
    expected = json.loads(tfserving_testdata("half_plus_two_model_metadata.json").read_text())
    assert ours == expected


@pytest.mark.parametrize(("request_fn", "code", "message"), [
    (lambda: predict_request("intentionally_missing_model"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(intentionally_missing_model)"),
    (lambda: _versioned(42), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(default, 42)"),
    (lambda: _labelled("stable"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: stable"),
    (lambda: predict_request(signature="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (lambda: predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT,
     "Missing ModelSpec"),
    (lambda: predict_request(signature="x" * 1500), grpc.StatusCode.FAILED_PRECONDITION,
     ('Serving signature key "' + "x" * 1500)[:1024] + "...TRUNCATED"),
])
def test_predict_errors(tcp, request_fn, code, message) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(tcp)
    assert rpc_error(stub.Predict, request_fn()) == (code, message)


def _versioned(version: int) -> predict_pb2.PredictRequest:
    request = predict_request()
    request.model_spec.version.value = version
    return request


def _labelled(label: str) -> predict_pb2.PredictRequest:
    request = predict_request()
    request.model_spec.version_label = label
    return request


def test_classify_and_regress_errors(tcp) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(tcp)
    request = classification_pb2.ClassificationRequest(input=examples())
    request.model_spec.name = "default"
    request.model_spec.signature_name = "missing"
    assert rpc_error(stub.Classify, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: missing")
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    assert rpc_error(stub.Regress, regress) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                "Input is empty.")


def test_health_and_reflection(tcp) -> None:
    request_cls = protos.message_class("grpc.health.v1.HealthCheckRequest")
    response_cls = protos.message_class("grpc.health.v1.HealthCheckResponse")
    check = tcp.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=request_cls.SerializeToString,
                            response_deserializer=response_cls.FromString)
    assert check(request_cls(service="PredictionService"), timeout=30).status == 1  # SERVING
    reflection_request = protos.message_class("grpc.reflection.v1.ServerReflectionRequest")
    reflection_response = protos.message_class("grpc.reflection.v1.ServerReflectionResponse")
    info = tcp.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                             request_serializer=reflection_request.SerializeToString,
                             response_deserializer=reflection_response.FromString)
    (answer,) = list(info(iter([reflection_request(list_services="")]), timeout=30))
    names = {s.name for s in answer.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health"} <= names


# --- TF2 exports: classify/regress signatures declared as predict, each with its own input ------


@pytest.fixture(params=["tf_serving", "exported"])
def tf2_base(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """TF Serving's native TF2 half_plus_two (version 123), and the same made by TensorFlow here
    (so that the test runs without ../shared)."""
    if request.param == "tf_serving":
        return tfserving_testdata("saved_model_half_plus_two_tf2_cpu")
    from tfsfast.testing.export_models import export_half_plus_two_tf2_classify_regress

    export_half_plus_two_tf2_classify_regress(str(tmp_path / "m" / "123"))
    return tmp_path / "m"


def test_multi_inference_tf2(tf2_base: Path) -> None:
    """TF Serving's testMultiInferenceTf2 (and the other APIs on the same export): the regress
    and classify signatures read different input tensors, both fed in one run."""
    with ServerProcess(["--model_name=default", f"--model_base_path={tf2_base}"]) as s, \
            grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        check_every_api(channel, (1,), multi_tasks=2)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        multi = inference_pb2.MultiInferenceRequest()
        for x in (2.0, 4.0):
            multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
        for signature, method in [("classify_x_to_y", CLASSIFY), ("regress_x_to_y", REGRESS)]:
            task = multi.tasks.add(method_name=method)
            task.model_spec.name = "default"
            task.model_spec.signature_name = signature
        classify, regress = stub.MultiInference(multi, timeout=30).results
        assert [c.classes[0].score for c in classify.classification_result.classifications] == [
            3.0, 4.0]
        assert [r.value for r in regress.regression_result.regressions] == [3.0, 4.0]


# --- an export made in the test session, with mutual TLS and a small message limit --------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A CA, a server certificate for localhost and a client certificate, both signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"),
             "-out", str(d / "ca.pem"), "-days", "2", "-subj", "/CN=tfsfast test CA")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.csr"), "-subj", "/CN=localhost")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{name}.pem"),
                 "-days", "2", "-extfile", str(d / "san.ext"))
    return {p.stem + p.suffix.replace(".", "_"): p.read_bytes() for p in d.iterdir()}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path],
               pki: dict[str, bytes]) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tls")
    shutil.copytree(exported_models["tf1"], root / "default" / "123")
    config = root / "ssl.cfg"
    config.write_text(
        f"server_key: {json.dumps(pki['server_key'].decode())}\n"
        f"server_cert: {json.dumps(pki['server_pem'].decode())}\n"
        f"custom_ca: {json.dumps(pki['ca_pem'].decode())}\n"
        "client_verify: true\n")
    with ServerProcess(["--model_name=default", f"--model_base_path={root / 'default'}",
                        f"--ssl_config_file={config}", "--grpc_max_message_bytes=2000",
                        f"--grpc_socket_path={root / 'tls.sock'}"]) as s:
        s.socket_path = root / "tls.sock"  # type: ignore[attr-defined]
        yield s


def test_mutual_tls(tls_server: ServerProcess, pki: dict[str, bytes]) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca_pem"], private_key=pki["client_key"],
        certificate_chain=pki["client_pem"])
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}", credentials) as channel:
        check_every_api(channel, (1, 1), multi_tasks=2)
    # The UNIX socket is secured too (TF Serving uses the same credentials for both).
    with grpc.secure_channel(f"unix:{tls_server.socket_path}", credentials,  # type: ignore[attr-defined]
                             options=[("grpc.ssl_target_name_override", "localhost")]) as uds:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(uds)
        assert list(stub.Predict(predict_request(), timeout=30).outputs["y"].float_val) == [3.0]


def test_tls_refuses_plaintext_and_clients_without_a_certificate(
        tls_server: ServerProcess, pki: dict[str, bytes]) -> None:
    with grpc.insecure_channel(f"localhost:{tls_server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert rpc_error(stub.Predict, predict_request())[0] == grpc.StatusCode.UNAVAILABLE
    no_cert = grpc.ssl_channel_credentials(root_certificates=pki["ca_pem"])
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}", no_cert) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert rpc_error(stub.Predict, predict_request())[0] == grpc.StatusCode.UNAVAILABLE


def test_message_limit_is_resource_exhausted_naming_the_flag(
        tls_server: ServerProcess, pki: dict[str, bytes]) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca_pem"], private_key=pki["client_key"],
        certificate_chain=pki["client_pem"])
    request = predict_request()
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].tensor_shape.dim[0].size = 700
    request.inputs["x"].tensor_content = np.ones(700, np.float32).tobytes()
    size = request.ByteSize()
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}", credentials) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert rpc_error(stub.Predict, request) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Request message of {size} bytes exceeds the maximum of 2000 bytes (flag "
            f"--grpc_max_message_bytes)")


# --- HandleReloadConfigRequest -----------------------------------------------------------------


def test_reload_switches_models(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "half_plus_two" / "123")
    shutil.copytree(exported_models["tf1_three"], tmp_path / "half_plus_three" / "123")

    def config(name: str) -> str:
        return (f'model_config_list {{ config {{ name: "{name}" base_path: '
                f'"{tmp_path / name}" model_platform: "tensorflow" }} }}')

    (tmp_path / "models.config").write_text(config("half_plus_two"))
    with ServerProcess([f"--model_config_file={tmp_path / 'models.config'}"]) as s, \
            grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert list(predict.Predict(predict_request("half_plus_two"), timeout=30)
                    .outputs["y"].float_val) == [3.0]
        request = model_management_pb2.ReloadConfigRequest()
        from google.protobuf import text_format

        text_format.Parse(config("half_plus_three"), request.config)
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = stub.HandleReloadConfigRequest(request, timeout=120)
        assert response.status.error_code == 0
        # Blocking: the new model answers as soon as the call returns.
        assert list(predict.Predict(predict_request("half_plus_three"), timeout=30)
                    .outputs["y"].float_val) == [4.0]
        assert rpc_error(predict.Predict, predict_request("half_plus_two")) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(half_plus_two)")
        # A bad reload: the code and TF Serving's text.
        bad = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(config("x").replace("tensorflow", "onnx"), bad.config)
        assert rpc_error(stub.HandleReloadConfigRequest, bad) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Model x requests unsupported platform onnx")


# --- drain ----------------------------------------------------------------------------------------


def test_sigterm_turns_health_not_serving(tmp_path: Path,
                                          exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "m" / "1")
    s = ServerProcess(["--model_name=m", f"--model_base_path={tmp_path / 'm'}",
                       "--enable_grpc_healthcheck_service"]).start()
    try:
        request_cls = protos.message_class("grpc.health.v1.HealthCheckRequest")
        response_cls = protos.message_class("grpc.health.v1.HealthCheckResponse")
        with grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
            watch = channel.unary_stream("/grpc.health.v1.Health/Watch",
                                         request_serializer=request_cls.SerializeToString,
                                         response_deserializer=response_cls.FromString)
            stream = watch(request_cls(service=""), timeout=60)
            assert next(stream).status == response_cls.SERVING
            assert s.process is not None
            s.process.send_signal(signal.SIGTERM)
            assert next(stream).status == response_cls.NOT_SERVING
    finally:
        assert s.stop() == 0


def test_a_port_in_use_fails_the_start(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    import socket
    import sys

    shutil.copytree(exported_models["tf1"], tmp_path / "m" / "1")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tfsfast", f"--port={port}", "--model_name=m",
             f"--model_base_path={tmp_path / 'm'}"], capture_output=True, text=True,
            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 255
    assert (f"Failed to start server. Error: INVALID_ARGUMENT: Failed to BuildAndStart gRPC "
            f"server: cannot listen on 0.0.0.0:{port}") in result.stderr
