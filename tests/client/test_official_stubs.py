"""The client means what TF Serving's official stubs mean: the messages it writes parse, with
``tensorflow-serving-api``'s protos, as the requests the stubs would send, and its results equal
what the stubs get from the server for the same request."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfsfast.client import GrpcClient, RestClient
from tfsfast.client import _grpc_messages as messages
from tfsfast.codecs.tensor_proto import from_ndarray, to_ndarray
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

INPUTS = {"a": np.array([[1.5, 2.0], [3.0, -4.25]], np.float32),
          "b": np.array([7, -9], np.int64),
          "s": np.array([b"one", b"\xff\x00"], dtype=object)}


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"localhost:{server.grpc_port}") as c:
        yield c


def official_predict_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi_io"
    request.model_spec.version.value = 1
    request.model_spec.signature_name = "serving_default"
    for alias, array in INPUTS.items():
        # Numeric tensors as tensor_content, strings in string_val: what the client sends.
        request.inputs[alias].CopyFrom(from_ndarray(array, None, array.dtype != object))
    request.output_filter.extend(["total", "text"])
    return request


def test_the_predict_request_is_the_stubs_request() -> None:
    spec = messages.model_spec("multi_io", 1, None, "serving_default")
    data = messages.predict_request(spec, INPUTS, ["total", "text"])
    assert predict_pb2.PredictRequest.FromString(data) == official_predict_request()


def test_the_other_requests_are_the_stubs_requests() -> None:
    expected = classification_pb2.ClassificationRequest()
    expected.model_spec.name = "half_plus_two"
    expected.model_spec.version_label = "stable"
    examples = expected.input.example_list_with_context
    first = examples.examples.add().features.feature
    first["x"].float_list.value.extend([2.0, 0.5])
    first["n"].int64_list.value.extend([-1, 2**62])
    first["w"].bytes_list.value.extend([b"a\x00", "\u00e9".encode()])
    examples.examples.add().features.feature["e"].SetInParent()
    examples.context.features.feature["c"].int64_list.value.append(1)
    data = messages.classification_request(
        messages.model_spec("half_plus_two", None, "stable"),
        [{"x": [2.0, 0.5], "n": np.array([-1, 2**62]), "w": [b"a\x00", "\u00e9"]}, {"e": []}],
        {"c": True})
    assert classification_pb2.ClassificationRequest.FromString(data) == expected
    regression = regression_pb2.RegressionRequest.FromString(data)
    assert regression.input == expected.input

    metadata = get_model_metadata_pb2.GetModelMetadataRequest.FromString(
        messages.model_metadata_request(messages.model_spec("m", 0)))
    assert metadata.model_spec.HasField("version") and metadata.model_spec.version.value == 0
    assert list(metadata.metadata_field) == ["signature_def"]
    status = get_model_status_pb2.GetModelStatusRequest.FromString(
        messages.model_status_request(messages.model_spec("m")))
    assert status.model_spec.name == "m" and not status.model_spec.HasField("version")


@pytest.mark.parametrize("wire_format", ["msgpack", "json", "grpc"])
def test_results_equal_the_stubs_results(wire_format: str, server: ServerProcess,
                                         channel: grpc.Channel) -> None:
    client = (GrpcClient(f"localhost:{server.grpc_port}") if wire_format == "grpc" else
              RestClient(f"localhost:{server.rest_port}", wire_format=wire_format))
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    with client:
        response = predictions.Predict(official_predict_request(), timeout=30)
        expected = {alias: to_ndarray(t) for alias, t in response.outputs.items()}
        if wire_format == "grpc":
            outputs = client.predict("multi_io", INPUTS, version=1,
                                     signature_name="serving_default",
                                     output_filter=["total", "text"])
        else:  # REST has no output filter: all outputs come back
            outputs = client.predict("multi_io", INPUTS, version=1,
                                     signature_name="serving_default")
        if wire_format == "json":
            # JSON carries no dtype, and a string output not named *_bytes is text in it: the
            # bytes that are not UTF-8 (b"\xff") reach a JSON client only through "s_bytes".
            assert outputs["s_bytes"].tolist() == INPUTS["s"].tolist()
            del expected["text"]
        for alias, array in expected.items():
            assert outputs[alias].tolist() == array.tolist()
            if wire_format != "json":
                assert outputs[alias].dtype == array.dtype

        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "classify_x_to_y"
        for x in (2.0, -3.5):
            request.input.example_list.examples.add().features.feature[
                "x"].float_list.value.append(x)
        result = predictions.Classify(request, timeout=30).result
        assert client.classify("half_plus_two", [{"x": 2.0}, {"x": -3.5}],
                               signature_name="classify_x_to_y") == [
            [(c.label, c.score) for c in classifications.classes]
            for classifications in result.classifications]

        request = regression_pb2.RegressionRequest(input=request.input)
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "regress_x_to_y"
        result = predictions.Regress(request, timeout=30).result
        assert client.regress("half_plus_two", [{"x": 2.0}, {"x": -3.5}],
                              signature_name="regress_x_to_y") == [
            r.value for r in result.regressions]

        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "half_plus_two"
        official = models.GetModelStatus(status_request, timeout=30).model_version_status
        assert [(s.version, s.state, int(s.error_code), s.error_message)
                for s in client.model_status("half_plus_two")] == [
            (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
             s.status.error_code, s.status.error_message) for s in official]

        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = "multi_io"
        metadata_request.metadata_field.append("signature_def")
        answer = predictions.GetModelMetadata(metadata_request, timeout=30)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        answer.metadata["signature_def"].Unpack(signature_map)
        metadata = client.model_metadata("multi_io")
        assert (metadata.name, metadata.version) == (answer.model_spec.name,
                                                     answer.model_spec.version.value)
        assert sorted(metadata.signature_defs) == sorted(signature_map.signature_def)
        for key, signature in signature_map.signature_def.items():
            mine = metadata.signature_defs[key]
            assert mine.method_name == signature.method_name
            for alias, info in [*signature.inputs.items(), *signature.outputs.items()]:
                ours = mine.inputs.get(alias) or mine.outputs[alias]
                shape = None if info.tensor_shape.unknown_rank else tuple(
                    d.size for d in info.tensor_shape.dim)
                assert (ours.name, ours.dtype, ours.shape) == (
                    info.name, f"DT_{_dtype_name(info.dtype)}", shape)


def _dtype_name(value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(value).removeprefix("DT_")
