"""PredictionService over a real gRPC channel (in-process server): answers, codes and texts."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfsfast.codecs import tensor_proto
from tfsfast.server.grpc.grpc_server import GrpcServer, GrpcServerOptions
from tfsfast.server.grpc.prediction_service_impl import PredictionServiceImpl, timeout_in_ms
from tfsfast.server.server_core import ServerCore
from tfsfast.testing.call_context import CallContext
from tfsfast.util.status import Code, ServingError


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(name: str = "default", x: list[float] | None = None,
                    signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tensor_proto.from_ndarray(
        np.array([[v] for v in (x or [2.0])], np.float32)))
    return request


def rpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=30)
    return e.value.code(), e.value.details()


def examples_input(*xs: float) -> object:
    from tensorflow_serving.apis import input_pb2

    input_proto = input_pb2.Input()
    for x in xs:
        input_proto.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return input_proto


# --- Predict --------------------------------------------------------------------------------


def test_predict_answers_with_the_resolved_model_spec(stub) -> None:
    response = stub.Predict(predict_request(x=[2.0, 4.0]), timeout=30)
    assert response.outputs["y"].dtype == 1
    assert [d.size for d in response.outputs["y"].tensor_shape.dim] == [2, 1]
    assert list(response.outputs["y"].float_val) == [3.0, 4.0]
    assert not response.outputs["y"].tensor_content  # AsProtoField, TF Serving's default
    spec = response.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == ("default",
                                                                    "serving_default", 123)


def test_predict_by_version_and_output_filter(stub) -> None:
    request = predict_request()
    request.model_spec.version.value = 123
    request.output_filter.append("y")
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs) == ["y"] and response.model_spec.version.value == 123


def test_predict_tensor_content_input_and_typed_padding(stub) -> None:
    request = predict_request()
    request.inputs["x"].Clear()
    request.inputs["x"].dtype = 1
    for d in (3, 1):
        request.inputs["x"].tensor_shape.dim.add().size = d
    request.inputs["x"].float_val.append(2.0)  # fewer values than elements: the last repeats
    assert list(stub.Predict(request, timeout=30).outputs["y"].float_val) == [3.0, 3.0, 3.0]
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].tensor_content = np.array([0.0, 2.0, 4.0], np.float32).tobytes()
    assert list(stub.Predict(request, timeout=30).outputs["y"].float_val) == [2.0, 3.0, 4.0]


def _spec(**fields) -> predict_pb2.PredictRequest:
    request = predict_request()
    for key, value in fields.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


@pytest.mark.parametrize(("make", "code", "message"), [
    (lambda: predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT,
     "Missing ModelSpec"),
    (lambda: _spec(name=""), grpc.StatusCode.INVALID_ARGUMENT,
     "ModelSpec has no name specified."),
    (lambda: _spec(name="intentionally_missing_model"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(intentionally_missing_model)"),
    (lambda: _spec(version=42), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(default, 42)"),
    (lambda: _spec(version_label="canary"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: canary"),
    (lambda: _spec(signature_name="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
])
def test_predict_model_spec_errors(stub, make, code, message) -> None:
    assert rpc_error(stub.Predict, make()) == (code, message)


def test_predict_input_errors(stub) -> None:
    request = predict_request()
    request.inputs["z"].CopyFrom(request.inputs["x"])
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
        "Missing but required: {}.")
    request = predict_request()
    request.inputs["z"].CopyFrom(request.inputs.pop("x"))
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.")
    request = predict_request()
    request.inputs["x"].tensor_content = b"\0\0"  # 2 bytes for one float
    assert rpc_error(stub.Predict, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                "tensor parsing error: x")
    request = predict_request()
    request.output_filter.extend(["y", "y"])
    assert rpc_error(stub.Predict, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                "duplicate output tensor alias: y")
    request = predict_request()
    request.output_filter.append("w")
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "output tensor alias not found in signature: w Outputs expected to be in the set {y}.")


def test_long_messages_are_truncated_as_tf_serving_does(stub) -> None:
    name = "s" * 2000
    code, message = rpc_error(stub.Predict, _spec(signature_name=name))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == f'Serving signature key "{name}"'[:1024] + "...TRUNCATED"


def test_garbage_request_is_invalid_argument(channel) -> None:
    call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as e:
        call(b"\x0a\xff", timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == ("Could not parse the request as a "
                                 "tensorflow.serving.PredictRequest")


# --- Classify / Regress / MultiInference ---------------------------------------------------------


def test_classify_and_regress(stub) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.CopyFrom(examples_input(2.0, 4.0))
    response = stub.Classify(request, timeout=30)
    assert [[c.score for c in cs.classes] for cs in response.result.classifications] == [
        [3.0], [4.0]]
    assert [c.label for c in response.result.classifications[0].classes] == [""]
    assert (response.model_spec.name, response.model_spec.signature_name,
            response.model_spec.version.value) == ("default", "classify_x_to_y", 123)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list_with_context.context.features.feature[
        "x"].float_list.value.append(10.0)
    regress.input.example_list_with_context.examples.add().features.feature[
        "x"].float_list.value.append(2.0)
    regress.input.example_list_with_context.examples.add()  # takes x from the context
    response = stub.Regress(regress, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0, 7.0]
    assert response.model_spec.signature_name == "regress_x_to_y"


@pytest.mark.parametrize(("method", "signature", "message"), [
    ("Classify", "nope", "No signature was found with the name: nope"),
    ("Regress", "nope", "No signature was found with the name: nope"),
    ("Classify", "", "No classification inputs found in SignatureDef: "),  # x -> y
    ("Regress", "classify_x_to_y", "No regression outputs found in SignatureDef: "),
    ("Classify", "regress_x_to_y", "Expected classification signature outputs to contain at "
     'least one of "classes" or "scores". Signature was: '),
])
def test_signature_structure_errors(stub, method, signature, message) -> None:
    module = classification_pb2 if method == "Classify" else regression_pb2
    request = getattr(module, f"{'Classification' if method == 'Classify' else 'Regression'}"
                              f"Request")()
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature
    request.input.CopyFrom(examples_input(1.0))
    code, details = rpc_error(getattr(stub, method), request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    if message.endswith(": "):
        assert details.startswith(message) and "method_name" in details
    else:
        assert details == message


def test_classify_empty_input_and_missing_spec(stub) -> None:
    request = classification_pb2.ClassificationRequest()
    assert rpc_error(stub.Classify, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                 "Missing ModelSpec")
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    assert rpc_error(stub.Classify, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                 "Input is empty.")


def _multi(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for name, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = name
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.CopyFrom(examples_input(2.0))
    return request


REGRESS, CLASSIFY = "tensorflow/serving/regress", "tensorflow/serving/classify"


def test_multi_inference(stub) -> None:
    response = stub.MultiInference(_multi(("default", "regress_x_to_y", REGRESS),
                                          ("default", "classify_x_to_y", CLASSIFY)), timeout=30)
    assert [r.WhichOneof("result") for r in response.results] == [
        "regression_result", "classification_result"]
    assert response.results[0].regression_result.regressions[0].value == 3.0
    assert response.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [(r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value)
            for r in response.results] == [("default", "regress_x_to_y", 123),
                                           ("default", "classify_x_to_y", 123)]


@pytest.mark.parametrize(("tasks", "code", "message"), [
    ([("default", "regress_x_to_y", REGRESS), ("default", "regress_x_to_y", REGRESS)],
     grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
    ([("default", "regress_x_to_y", REGRESS), ("other", "classify_x_to_y", CLASSIFY)],
     grpc.StatusCode.INVALID_ARGUMENT,
     "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("default", "nope", REGRESS)], grpc.StatusCode.INVALID_ARGUMENT,
     "Requested signature not found in model graph: nope"),
    ([("default", "serving_default", "tensorflow/serving/predict")],
     grpc.StatusCode.UNIMPLEMENTED,
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ([], grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ([("default", "regress_x_to_y", REGRESS), ("", "classify_x_to_y", CLASSIFY)],
     grpc.StatusCode.INVALID_ARGUMENT, "Found ModelSpec with an empty model name."),
])
def test_multi_inference_errors(stub, tasks, code, message) -> None:
    assert rpc_error(stub.MultiInference, _multi(*tasks)) == (code, message)


# --- GetModelMetadata --------------------------------------------------------------------------


def test_get_model_metadata(stub, core: ServerCore) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("default", 123)
    assert not response.model_spec.signature_name
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert sorted(signature_map.signature_def) == ["classify_x_to_y", "regress_x_to_y",
                                                   "serving_default"]
    with core.get_servable_handle("default") as handle:
        expected = handle.servable.meta_graph_def.signature_def["serving_default"]
    assert signature_map.signature_def["serving_default"] == expected


@pytest.mark.parametrize(("fields", "spec", "message"), [
    ([], True, "GetModelMetadataRequest must specify at least one metadata_field"),
    (["signature_def", "other"], True, "Metadata field other is not supported"),
    (["signature_def"], False, "Missing ModelSpec"),
])
def test_get_model_metadata_errors(stub, fields, spec, message) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    if spec:
        request.model_spec.name = "default"
    request.metadata_field.extend(fields)
    assert rpc_error(stub.GetModelMetadata, request) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         message)


# --- transport: message size, deadlines, tensor_content responses ------------------------------


def test_message_size_limit_names_the_flag(core: ServerCore, tmp_path) -> None:
    socket = tmp_path / "small.sock"
    server = GrpcServer(core, GrpcServerOptions(port=0, socket_path=str(socket),
                                                max_message_bytes=200,
                                                serialize_as_tensor_content=True))
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{socket}") as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            big = predict_request(x=[1.0] * 50)
            size = big.ByteSize()
            assert 200 < size <= 400
            assert rpc_error(stub.Predict, big) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Request message of {size} bytes exceeds the maximum of 200 bytes (flag "
                f"--grpc_max_message_bytes)")
            # Beyond twice the limit gRPC refuses it before it is buffered whole.
            code, _ = rpc_error(stub.Predict, predict_request(x=[1.0] * 200))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            ok = stub.Predict(predict_request(x=[2.0, 4.0]), timeout=30)
            # --enable_serialization_as_tensor_content: outputs as raw bytes
            assert ok.outputs["y"].tensor_content == np.array([3.0, 4.0], np.float32).tobytes()
            assert not ok.outputs["y"].float_val
    finally:
        server.stop(None).wait()


def test_deadlines_become_run_timeouts() -> None:
    assert timeout_in_ms(CallContext(None)) == 0
    assert timeout_in_ms(CallContext(1.5)) == 1500
    assert timeout_in_ms(CallContext(0.0001)) == 1
    # grpcio's server reports a call without a deadline as one ~1e18 seconds away.
    assert timeout_in_ms(CallContext(1e18)) == 0
    with pytest.raises(ServingError) as e:
        timeout_in_ms(CallContext(-0.5))
    assert (e.value.code, e.value.message) == (Code.DEADLINE_EXCEEDED, "Deadline Exceeded")


def test_expired_deadline_is_refused_before_anything_runs(core: ServerCore) -> None:
    service = PredictionServiceImpl(core)
    # Garbage would be INVALID_ARGUMENT if the request were even read.
    for method in (service.predict, service.classify, service.regress, service.multi_inference):
        with pytest.raises(ServingError) as e:
            method(b"\xff", CallContext(-1.0))  # type: ignore[arg-type]
        assert e.value.code == Code.DEADLINE_EXCEEDED
