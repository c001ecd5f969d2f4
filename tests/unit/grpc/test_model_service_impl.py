"""ModelService (status and reload), health and reflection over a real in-process channel."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.metrics import Counter
from tfsfast.server.grpc import protos
from tfsfast.server.grpc.grpc_server import GrpcServer
from tfsfast.server.server_core import ServerCore


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def status_request(name: str = "default", version: int | None = None,
                   label: str | None = None) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


def rpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=60)
    return e.value.code(), e.value.details()


def test_get_model_status(stub) -> None:
    for request in (status_request(), status_request(version=123),
                    status_request(label="anything")):  # a label is ignored, as in TF Serving
        response = stub.GetModelStatus(request, timeout=30)
        assert [(s.version, s.state, s.status.error_code, s.status.error_message)
                for s in response.model_version_status] == [
            (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, "")]


@pytest.mark.parametrize(("request_fn", "code", "message"), [
    (lambda: get_model_status_pb2.GetModelStatusRequest(), grpc.StatusCode.INVALID_ARGUMENT,
     "Missing ModelSpec"),
    (lambda: status_request("nope"), grpc.StatusCode.NOT_FOUND,
     "Could not find any versions of model nope"),
    (lambda: status_request(version=7), grpc.StatusCode.NOT_FOUND,
     "Could not find version 7 of model default"),
])
def test_get_model_status_errors(stub, request_fn, code, message) -> None:
    assert rpc_error(stub.GetModelStatus, request_fn()) == (code, message)


def _reload_request(core: ServerCore, **models: str) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    for name, directory in models.items():
        model = request.config.model_config_list.config.add()
        model.name = name
        model.base_path = str(core.models_root / directory)  # type: ignore[attr-defined]
        model.model_platform = "tensorflow"
    return request


def test_reload_config_errors(stub, core: ServerCore) -> None:
    assert rpc_error(stub.HandleReloadConfigRequest,
                     model_management_pb2.ReloadConfigRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
        "ModelConfigList is currently supported")
    request = _reload_request(core, a="default")
    request.config.model_config_list.config[0].model_platform = "pytorch"
    assert rpc_error(stub.HandleReloadConfigRequest, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Model a requests unsupported platform pytorch")


def test_reload_replaces_the_model_list(stub, channel, core: ServerCore) -> None:
    # A counter the reload increments (once per config put in force), asked for with a name
    # that no metric has: TF Serving's metric diff answers both.
    reloads = DEFAULT.register(Counter("/test/model_service/reloads", "test"))
    core.add_config_listener(lambda config: reloads.get_cell().increment_by(1))
    request = _reload_request(core, three="three")
    request.metric_names.extend(["/test/model_service/reloads", "/test/absent"])
    try:
        response = stub.HandleReloadConfigRequest(request, timeout=120)
    finally:
        DEFAULT.unregister("/test/model_service/reloads")
    assert response.status.error_code == 0 and not response.status.error_message
    assert [(m.name, m.int64_value_increase) for m in response.metric] == [
        ("/test/model_service/reloads", 1), ("/test/absent", 0)]
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "three"
    request.inputs["x"].dtype = 1
    request.inputs["x"].float_val.append(2.0)
    for d in (1, 1):
        request.inputs["x"].tensor_shape.dim.add().size = d
    assert list(predict.Predict(request, timeout=30).outputs["y"].float_val) == [4.0]
    # The dropped model is unloaded: its versions end, and it no longer serves.
    request.model_spec.name = "default"
    assert rpc_error(predict.Predict, request) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(default)")


# --- health ------------------------------------------------------------------------------------


def test_health_check_and_watch(channel, server: GrpcServer) -> None:
    request_cls = protos.message_class("grpc.health.v1.HealthCheckRequest")
    response_cls = protos.message_class("grpc.health.v1.HealthCheckResponse")
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=request_cls.SerializeToString,
                                response_deserializer=response_cls.FromString)
    for service in ("", "tensorflow.serving.PredictionService", "ModelService"):
        assert check(request_cls(service=service), timeout=30).status == response_cls.SERVING
    with pytest.raises(grpc.RpcError) as e:
        check(request_cls(service="nope"), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    watch = channel.unary_stream("/grpc.health.v1.Health/Watch",
                                 request_serializer=request_cls.SerializeToString,
                                 response_deserializer=response_cls.FromString)
    stream = watch(request_cls(service=""), timeout=60)
    assert next(stream).status == response_cls.SERVING
    server.set_serving(False)
    try:
        assert next(stream).status == response_cls.NOT_SERVING
        assert check(request_cls(service=""), timeout=30).status == response_cls.NOT_SERVING
    finally:
        server.set_serving(True)
    assert next(stream).status == response_cls.SERVING
    stream.cancel()


# --- reflection --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection(channel, version: str) -> None:
    request_cls = protos.message_class(f"grpc.reflection.{version}.ServerReflectionRequest")
    response_cls = protos.message_class(f"grpc.reflection.{version}.ServerReflectionResponse")
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString)
    requests = [request_cls(list_services=""),
                request_cls(file_containing_symbol="tensorflow.serving.PredictionService"),
                request_cls(file_by_filename="grpc/health/v1/health.proto"),
                request_cls(file_containing_symbol="no.such.Symbol")]
    listed, by_symbol, by_name, missing = list(info(iter(requests), timeout=30))
    assert [s.name for s in listed.list_services_response.service] == [
        "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService",
        "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"]
    assert not by_symbol.HasField("error_response"), by_symbol
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in by_symbol.file_descriptor_response.file_descriptor_proto]
    assert files[0].name == "tensorflow_serving/apis/prediction_service.proto"
    assert [m.name for m in files[0].service[0].method] == [
        "Classify", "Regress", "Predict", "MultiInference", "GetModelMetadata"]
    names = {f.name for f in files}
    assert "tensorflow_serving/apis/predict.proto" in names  # dependencies come along
    assert by_name.file_descriptor_response.file_descriptor_proto
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
