"""The gRPC inference messages: typed and raw contents into tensors, responses as raw data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.server.v2 import grpc_protocol
from tfsfast.server.v2.grpc_codec import ContentsDecoder, infer_response, parse_infer_request
from tfsfast.server.v2.grpc_inference_service import model_version
from tfsfast.server.v2.infer import (
    InferRequest,
    bind_inputs,
    requested_aliases,
    response_outputs,
    signature_name,
)
from tfsfast.util.status import Code, ServingError

LIMITS = CodecLimits(max_tensor_rank=3, max_tensor_elements=100, max_request_elements=150)
ModelInferRequest = grpc_protocol.message_class("ModelInferRequest")
ModelInferResponse = grpc_protocol.message_class("ModelInferResponse")


def _signature(**dtypes: DataType) -> Signature:
    infos = {alias: TensorInfo(alias, f"{alias}:0", dtype, None)
             for alias, dtype in dtypes.items()}
    return Signature("serving_default", "tensorflow/serving/predict", inputs=infos,
                     outputs=dict(infos))


def _request(*inputs: dict[str, Any], raw: list[bytes] | None = None, **fields: Any) -> Any:
    request = ModelInferRequest(model_name="m", **fields)
    for spec in inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"],
                                    shape=spec["shape"])
        for field, values in spec.get("contents", {}).items():
            getattr(tensor.contents, field).extend(values)
    request.raw_input_contents.extend(raw or [])
    # Through the wire, as the service gets it.
    return ModelInferRequest.FromString(request.SerializeToString())


def _bind(signature: Signature, request: Any) -> dict[str, np.ndarray]:
    parsed = parse_infer_request(request)
    return bind_inputs(signature, parsed.inputs, ContentsDecoder(), LIMITS)


def _fails(call: Any, code: Code, message: str) -> None:
    with pytest.raises(ServingError) as info:
        call()
    assert (info.value.code, info.value.message) == (code, message)


TYPED = [
    ("BOOL", DataType.DT_BOOL, "bool_contents", [True, False, True], np.bool_),
    ("INT8", DataType.DT_INT8, "int_contents", [-128, 0, 127], np.int8),
    ("INT16", DataType.DT_INT16, "int_contents", [-32768, 1, 32767], np.int16),
    ("INT32", DataType.DT_INT32, "int_contents", [-(2**31), 2, 2**31 - 1], np.int32),
    ("INT64", DataType.DT_INT64, "int64_contents", [-(2**63), 3, 2**63 - 1], np.int64),
    ("UINT8", DataType.DT_UINT8, "uint_contents", [0, 1, 255], np.uint8),
    ("UINT16", DataType.DT_UINT16, "uint_contents", [0, 2, 65535], np.uint16),
    ("UINT32", DataType.DT_UINT32, "uint_contents", [0, 3, 2**32 - 1], np.uint32),
    ("UINT64", DataType.DT_UINT64, "uint64_contents", [0, 4, 2**64 - 1], np.uint64),
    ("FP32", DataType.DT_FLOAT, "fp32_contents", [1.5, -0.25, 3e38], np.float32),
    ("FP64", DataType.DT_DOUBLE, "fp64_contents", [1e300, -2.5, 0.1], np.float64),
]


@pytest.mark.parametrize(("datatype", "dtype", "field", "values", "numpy_type"), TYPED)
def test_typed_contents_become_the_signatures_dtype(datatype: str, dtype: DataType, field: str,
                                                    values: list[Any], numpy_type: Any) -> None:
    request = _request({"name": "x", "datatype": datatype, "shape": [3, 1],
                        "contents": {field: values}})
    x = _bind(_signature(x=dtype), request)["x"]
    assert x.dtype == np.dtype(numpy_type) and x.shape == (3, 1)
    assert x.reshape(-1).tolist() == np.array(values, numpy_type).tolist()


def test_bytes_contents_are_an_object_array_of_bytes() -> None:
    values = ["h\u00e9".encode(), b"", b"\xff\x00"]
    request = _request({"name": "s", "datatype": "BYTES", "shape": [3],
                        "contents": {"bytes_contents": values}})
    s = _bind(_signature(s=DataType.DT_STRING), request)["s"]
    assert s.dtype == np.dtype(object) and s.tolist() == values


@pytest.mark.parametrize(("datatype", "dtype", "field", "values", "numpy_type"), TYPED)
def test_raw_contents_are_little_endian_views(datatype: str, dtype: DataType, field: str,
                                              values: list[Any], numpy_type: Any) -> None:
    array = np.array(values, numpy_type)
    data = array.astype(np.dtype(numpy_type).newbyteorder("<")).tobytes()
    request = _request({"name": "x", "datatype": datatype, "shape": [1, 3]}, raw=[data])
    x = _bind(_signature(x=dtype), request)["x"]
    assert x.shape == (1, 3) and x.reshape(-1).tolist() == array.tolist()
    assert not x.flags.owndata  # a view of the message's bytes


def test_raw_half_and_bytes_with_several_inputs_in_order() -> None:
    half = np.array([1.5, -2.0], np.float16)
    strings = [b"ab", b"", b"\x00z"]
    packed = b"".join(len(s).to_bytes(4, "little") + s for s in strings)
    request = _request({"name": "h", "datatype": "FP16", "shape": [2]},
                       {"name": "s", "datatype": "BYTES", "shape": [3]},
                       raw=[half.astype("<f2").tobytes(), packed])
    tensors = _bind(_signature(h=DataType.DT_HALF, s=DataType.DT_STRING), request)
    assert tensors["h"].tolist() == [1.5, -2.0] and tensors["h"].dtype == np.float16
    assert tensors["s"].tolist() == strings


def test_parameters_outputs_and_id_are_read() -> None:
    request = ModelInferRequest(model_name="m", id="r-1")
    request.parameters["signature_name"].string_param = "other"
    request.parameters["priority"].int64_param = 3
    request.parameters["flag"].bool_param = True
    request.outputs.add(name="b")
    request.outputs.add(name="a")
    parsed = parse_infer_request(request)
    assert parsed.id == "r-1" and signature_name(parsed) == "other"
    assert dict(parsed.parameters) == {"signature_name": "other", "priority": 3, "flag": True}
    assert [o.name for o in parsed.outputs or ()] == ["b", "a"]
    assert parse_infer_request(ModelInferRequest()).outputs is None


def test_response_has_every_output_as_raw_data_in_order() -> None:
    signature = _signature(f=DataType.DT_FLOAT, s=DataType.DT_STRING, b=DataType.DT_BOOL)
    outputs = {"f": np.array([[1.5], [-2.0]], np.float32),
               "s": np.array([b"x", b"yz"], object), "b": np.array([True, False])}
    answer = response_outputs(signature, outputs, ["s", "f", "b"])
    response = ModelInferResponse.FromString(
        infer_response("m", "7", "r-2", answer).SerializeToString())
    assert (response.model_name, response.model_version, response.id) == ("m", "7", "r-2")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("s", "BYTES", [2]), ("f", "FP32", [2, 1]), ("b", "BOOL", [2])]
    assert list(response.raw_output_contents) == [
        b"\x01\x00\x00\x00x\x02\x00\x00\x00yz", np.array([1.5, -2.0], "<f4").tobytes(),
        b"\x01\x00"]
    assert not response.outputs[0].HasField("contents")


# --- errors -----------------------------------------------------------------------------------


def test_raw_contents_need_one_entry_per_input() -> None:
    request = _request({"name": "a", "datatype": "FP32", "shape": [1]},
                       {"name": "b", "datatype": "FP32", "shape": [1]}, raw=[b"\x00" * 4])
    _fails(lambda: parse_infer_request(request), Code.INVALID_ARGUMENT,
           "The request has 1 raw_input_contents for 2 inputs: it needs one per input")


def test_contents_and_raw_contents_together_are_refused() -> None:
    request = _request({"name": "a", "datatype": "FP32", "shape": [1],
                        "contents": {"fp32_contents": [1.0]}}, raw=[b"\x00" * 4])
    _fails(lambda: parse_infer_request(request), Code.INVALID_ARGUMENT,
           "Input 'a' has contents, which the request must not give when it has "
           "raw_input_contents")


def test_contents_in_another_field_than_the_datatypes() -> None:
    request = _request({"name": "x", "datatype": "FP32", "shape": [2],
                        "contents": {"int64_contents": [1, 2]}})
    _fails(lambda: _bind(_signature(x=DataType.DT_FLOAT), request), Code.INVALID_ARGUMENT,
           "Input 'x' has datatype FP32, whose contents go in fp32_contents, but the request "
           "gives int64_contents")


def test_half_has_no_typed_contents() -> None:
    request = _request({"name": "h", "datatype": "FP16", "shape": [1],
                        "contents": {"fp32_contents": [1.0]}})
    _fails(lambda: _bind(_signature(h=DataType.DT_HALF), request), Code.INVALID_ARGUMENT,
           "Input 'h' has datatype FP16, which has no typed contents: send it in "
           "raw_input_contents")


@pytest.mark.parametrize(("datatype", "dtype", "field", "value"), [
    ("INT8", DataType.DT_INT8, "int_contents", 128),
    ("INT16", DataType.DT_INT16, "int_contents", -32769),
    ("UINT8", DataType.DT_UINT8, "uint_contents", 256),
    ("UINT16", DataType.DT_UINT16, "uint_contents", 65536),
])
def test_narrow_values_out_of_range(datatype: str, dtype: DataType, field: str,
                                    value: int) -> None:
    request = _request({"name": "x", "datatype": datatype, "shape": [2],
                        "contents": {field: [1, value]}})
    _fails(lambda: _bind(_signature(x=dtype), request), Code.INVALID_ARGUMENT,
           f"'{field}' of input 'x': {value} is out of the range of {datatype}")


def test_element_count_of_typed_contents() -> None:
    request = _request({"name": "x", "datatype": "FP32", "shape": [2, 2],
                        "contents": {"fp32_contents": [1.0, 2.0, 3.0]}})
    _fails(lambda: _bind(_signature(x=DataType.DT_FLOAT), request), Code.INVALID_ARGUMENT,
           "Input 'x' has shape [2, 2], 4 elements, but its data has 3 elements")


def test_size_of_raw_contents() -> None:
    request = _request({"name": "x", "datatype": "FP32", "shape": [2]}, raw=[b"\x00" * 6])
    _fails(lambda: _bind(_signature(x=DataType.DT_FLOAT), request), Code.INVALID_ARGUMENT,
           "Input 'x' has 2 elements of FP32, which take 8 bytes, but its binary data has "
           "6 bytes")


def test_datatype_and_name_checks_are_the_protocols() -> None:
    signature = _signature(x=DataType.DT_FLOAT)
    _fails(lambda: _bind(signature, _request({"name": "x", "datatype": "FLOAT32", "shape": [1],
                                              "contents": {"fp32_contents": [1.0]}})),
           Code.INVALID_ARGUMENT, "Input 'x' has datatype 'FLOAT32', which is not a datatype "
           "of the Open Inference Protocol")
    _fails(lambda: _bind(signature, _request({"name": "y", "datatype": "FP32", "shape": [1],
                                              "contents": {"fp32_contents": [1.0]}})),
           Code.INVALID_ARGUMENT, "Input 'y' is not an input of signature 'serving_default' "
           "(its inputs: x)")


@pytest.mark.parametrize(("owner", "key", "extension"), [
    ("the request", "shared_memory_region", "shared memory"),
    ("input 'x'", "shared_memory_region", "shared memory"),
    ("output 'x'", "classification", "classification"),
])
def test_parameters_of_extensions_not_served_are_refused(owner: str, key: str,
                                                         extension: str) -> None:
    request = ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1])
    output = request.outputs.add(name="x")
    target = {"the request": request, "input 'x'": tensor, "output 'x'": output}[owner]
    target.parameters[key].string_param = "region"
    _fails(lambda: parse_infer_request(request), Code.INVALID_ARGUMENT,
           f"Parameter '{key}' of {owner} is not supported: this server does not serve the "
           f"{extension} extension")


def test_requested_outputs_are_checked() -> None:
    request = ModelInferRequest(model_name="m")
    request.outputs.add(name="nope")
    parsed: InferRequest = parse_infer_request(request)
    _fails(lambda: requested_aliases(_signature(x=DataType.DT_FLOAT), parsed.outputs),
           Code.INVALID_ARGUMENT,
           "Output 'nope' is not an output of signature 'serving_default' (its outputs: x)")


@pytest.mark.parametrize(("text", "version"), [("", None), ("0", 0), ("12", 12),
                                               (str(2**63 - 1), 2**63 - 1)])
def test_model_version(text: str, version: int | None) -> None:
    assert model_version(text) == version


@pytest.mark.parametrize("text", ["x", "-1", "1.0", str(2**63), "9" * 5000, "\u0661"])
def test_model_version_not_a_number(text: str) -> None:
    _fails(lambda: model_version(text), Code.INVALID_ARGUMENT,
           f"Failed to convert version: {text} to numeric.")
