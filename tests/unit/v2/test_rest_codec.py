"""The REST inference body: the JSON request with binary inputs, and the response writer, with
the compiled JSON tensor writer and its Python twin."""

from __future__ import annotations

import json
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.runtime.dtypes import DataType
from tfsfast.server.v2 import rest_codec
from tfsfast.server.v2.infer import InferRequest, RequestedOutput, RequestInput, ResponseOutput
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

HEADER = b"inference-header-content-length"


@pytest.fixture(params=implementations("tfsfast.codecs._json", "tfsfast.codecs._json_py"))
def writer(request: pytest.FixtureRequest) -> Any:
    return import_impl(request.param).format_predict_response


def _invalid(call: Any, *args: Any) -> str:
    with pytest.raises(ServingError) as raised:
        call(*args)
    assert raised.value.code == Code.INVALID_ARGUMENT
    return raised.value.message


# --- the header length ------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "length"), [
    ({}, None), ({HEADER: b"12"}, 12), ({HEADER: b" 7\t"}, 7), ({HEADER: b"0"}, 0),
    ({HEADER: b"20"}, 20),
])
def test_header_length(headers: dict[bytes, bytes], length: int | None) -> None:
    assert rest_codec.header_length(headers, 20) == length


@pytest.mark.parametrize(("value", "message"), [
    (b"abc", "Unable to parse Inference-Header-Content-Length: 'abc' is not a number of bytes"),
    (b"-1", "Unable to parse Inference-Header-Content-Length: '-1' is not a number of bytes"),
    (b"", "Unable to parse Inference-Header-Content-Length: '' is not a number of bytes"),
    (b"99999999999", "Inference-Header-Content-Length is 99999999999, but the request body has "
                     "20 bytes"),
    (b"9" * 5000, "Inference-Header-Content-Length is " + "9" * 32 + "..., but the request "
                  "body has 20 bytes"),
    (b"x" * 33, "Unable to parse Inference-Header-Content-Length: '" + "x" * 32 + "...' is not a "
                "number of bytes"),
    (b"0x10", "Unable to parse Inference-Header-Content-Length: '0x10' is not a number of bytes"),
    ("\u00b2".encode("latin-1"),
     "Unable to parse Inference-Header-Content-Length: '\u00b2' is not a number of bytes"),
    (b"21", "Inference-Header-Content-Length is 21, but the request body has 20 bytes"),
])
def test_header_length_errors(value: bytes, message: str) -> None:
    assert _invalid(rest_codec.header_length, {HEADER: value}, 20) == message


# --- the request ----------------------------------------------------------------------------


def _parse(body: Any, binary: bytes | None = None,
           limits: CodecLimits = DEFAULT_CODEC_LIMITS) -> tuple[InferRequest, Any]:
    text = body if isinstance(body, bytes) else json.dumps(body).encode()
    if binary is None:
        return rest_codec.parse_infer_request(text, None, limits)
    return rest_codec.parse_infer_request(text + binary, len(text), limits)


def test_a_whole_request() -> None:
    floats = np.array([1.0, 2.0], np.float32).tobytes()
    request, _ = _parse({
        "id": "r-1", "model_name": "ignored", "parameters": {"binary_data_output": True,
                                                             "custom": [1]},
        "inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32",
             "parameters": {"binary_data_size": 8}},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["x"]},
            {"name": "b", "shape": [0], "datatype": "INT64", "parameters": {"binary_data_size": 0}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
    }, floats)
    assert request.id == "r-1"
    assert request.parameters == {"binary_data_output": True, "custom": [1]}
    a, s, b = request.inputs
    assert (a.name, a.datatype, a.shape, a.parameters) == ("a", "FP32", (1, 2),
                                                           {"binary_data_size": 8})
    assert type(a.data) is memoryview and bytes(a.data) == floats
    assert s == RequestInput("s", "BYTES", (1,), ["x"], {})
    assert (b.shape, bytes(b.data)) == ((0,), b"")
    assert request.outputs == [RequestedOutput("y", {"binary_data": False}),
                               RequestedOutput("z", {})]


def test_a_request_without_id_parameters_or_outputs() -> None:
    request, _ = _parse({"inputs": []})
    assert request == InferRequest([], None, None, {})


@pytest.mark.parametrize(("body", "message"), [
    (b"", "JSON Parse error: The document is empty"),
    (b"[1]", "JSON Value: [1] Is not object"),
    (b'{"inputs": [}', "JSON Parse error: Invalid value. at offset: 12"),
    ({}, "The request must have an 'inputs' array"),
    ({"inputs": {}}, "The request must have an 'inputs' array"),
    ({"id": 7, "inputs": []}, "'id' must be a string"),
    ({"parameters": [], "inputs": []}, "'parameters' of the request must be an object"),
    ({"parameters": {"binary_data_output": 1}, "inputs": []},
     "Parameter 'binary_data_output' of the request must be a boolean"),
    ({"inputs": [1]}, "Element 0 of 'inputs' must be an object"),
    ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]},
     "Element 0 of 'inputs' must have a 'name' string"),
    ({"inputs": [{"name": "x", "shape": [1], "data": [1]}]},
     "Input 'x' must have a 'datatype' string"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]},
     "Input 'x' must have a 'shape' array of integers"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.0], "data": [1]}]},
     "Input 'x' must have a 'shape' array of integers"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [True], "data": [1]}]},
     "Input 'x' must have a 'shape' array of integers"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]},
     "Input 'x' must have either 'data' or the parameter 'binary_data_size', and not both"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                  "parameters": {"binary_data_size": 4}}]},
     "Input 'x' must have either 'data' or the parameter 'binary_data_size', and not both"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": 4}]},
     "'parameters' of input 'x' must be an object"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                  "parameters": {"binary_data_size": 4}}]},
     "Input 'x' has binary data, but the request has no Inference-Header-Content-Length header "
     "to say where it starts"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                  "parameters": {"binary_data_size": -4}}]},
     "Parameter 'binary_data_size' of input 'x' must be an integer >= 0"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                  "parameters": {"shared_memory_region": "r"}}]},
     "Parameter 'shared_memory_region' of input 'x' is not supported: this server does not "
     "serve the shared memory extension"),
    ({"inputs": [], "outputs": {}}, "'outputs' must be an array"),
    ({"inputs": [], "outputs": ["y"]}, "Element 0 of 'outputs' must be an object"),
    ({"inputs": [], "outputs": [{"parameters": {}}]},
     "Element 0 of 'outputs' must have a 'name' string"),
    ({"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 3}}]},
     "Parameter 'classification' of output 'y' is not supported: this server does not serve "
     "the classification extension"),
    ({"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]},
     "Parameter 'binary_data' of output 'y' must be a boolean"),
])
def test_request_errors(body: Any, message: str) -> None:
    assert _invalid(_parse, body) == message


def _binary_input(size: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [3],
            "parameters": {"binary_data_size": size}}


@pytest.mark.parametrize(("inputs", "binary", "message"), [
    ([_binary_input(16)], b"\0" * 12,
     "Input 'x' has a binary_data_size of 16 bytes, but only 12 bytes of binary data are left "
     "for it"),
    ([_binary_input(8), _binary_input(8)], b"\0" * 12,
     "Input 'x' has a binary_data_size of 8 bytes, but only 4 bytes of binary data are left "
     "for it"),
    ([_binary_input(8)], b"\0" * 12,
     "The request has 4 bytes of binary data that no input's binary_data_size accounts for"),
    ([], b"\0",
     "The request has 1 bytes of binary data that no input's binary_data_size accounts for"),
    ([_binary_input("8")], b"\0" * 8,
     "Parameter 'binary_data_size' of input 'x' must be an integer >= 0"),
])
def test_binary_data_errors(inputs: list[Any], binary: bytes, message: str) -> None:
    assert _invalid(_parse, {"inputs": inputs}, binary) == message


def test_the_nesting_limit_applies() -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [[[[1]]]]}]}
    assert _invalid(_parse, body, None, CodecLimits(max_json_depth=5)) == (
        "JSON nesting depth exceeds the maximum of 5")


# --- decoding inputs --------------------------------------------------------------------------


def _decode(datatype: str, dtype: DataType, shape: list[int], data: Any,
            body: bytes | None = None) -> np.ndarray:
    decoder = rest_codec.InputDecoder(False, DEFAULT_CODEC_LIMITS)
    count = int(np.prod(shape))
    return decoder(RequestInput("x", datatype, tuple(shape), data), dtype, count)


@pytest.mark.parametrize(("datatype", "dtype", "data", "expected"), [
    ("FP32", DataType.DT_FLOAT, [1, 2.5], np.array([1, 2.5], np.float32)),
    ("FP32", DataType.DT_FLOAT, [[1], [2.5]], np.array([[1], [2.5]], np.float32)),
    ("FP64", DataType.DT_DOUBLE, [0.1, -3], np.array([0.1, -3], np.float64)),
    ("INT64", DataType.DT_INT64, [-(1 << 63), (1 << 63) - 1],
     np.array([-(1 << 63), (1 << 63) - 1], np.int64)),
    ("UINT64", DataType.DT_UINT64, [(1 << 64) - 1, 0], np.array([(1 << 64) - 1, 0], np.uint64)),
    ("INT32", DataType.DT_INT32, [-(1 << 31), 5], np.array([-(1 << 31), 5], np.int32)),
    ("UINT32", DataType.DT_UINT32, [(1 << 32) - 1, 5], np.array([(1 << 32) - 1, 5], np.uint32)),
    ("INT8", DataType.DT_INT8, [-128, 127], np.array([-128, 127], np.int8)),
    ("INT16", DataType.DT_INT16, [-32768, 32767], np.array([-32768, 32767], np.int16)),
    ("UINT8", DataType.DT_UINT8, [0, 255], np.array([0, 255], np.uint8)),
    ("UINT16", DataType.DT_UINT16, [0, 65535], np.array([0, 65535], np.uint16)),
    ("BOOL", DataType.DT_BOOL, [True, False], np.array([True, False])),
    ("FP16", DataType.DT_HALF, [0.5, 1e6], np.array([0.5, np.inf], np.float16)),
    ("BF16", DataType.DT_BFLOAT16, [1.5, -2], np.array([1.5, -2], ml_dtypes.bfloat16)),
])
def test_json_data(datatype: str, dtype: DataType, data: list[Any],
                   expected: np.ndarray) -> None:
    shape = [expected.size]
    decoded = _decode(datatype, dtype, shape, data)
    assert decoded.dtype == expected.dtype
    assert decoded.reshape(-1).tolist() == expected.reshape(-1).tolist()


def test_json_strings_are_utf8_bytes_and_b64_objects_bytes() -> None:
    decoded = _decode("BYTES", DataType.DT_STRING, [3], ["h\u00e9", "", {"b64": "/wA="}])
    assert decoded.tolist() == [b"h\xc3\xa9", b"", b"\xff\x00"]


def test_binary_data_is_decoded_as_binary() -> None:
    data = memoryview(np.array([1, 2], "<i4").tobytes())
    assert _decode("INT32", DataType.DT_INT32, [2], data).tolist() == [1, 2]


@pytest.mark.parametrize(("datatype", "dtype", "shape", "data", "message"), [
    ("FP32", DataType.DT_FLOAT, [3], [1, 2],
     "Input 'x' has shape [3], 3 elements, but its data has 2 elements"),
    ("FP32", DataType.DT_FLOAT, [3], [[1, 2], [3, 4]],
     "Input 'x' has shape [3], 3 elements, but its data has 4 elements"),
    ("FP32", DataType.DT_FLOAT, [4], [[1, 2], [3]],
     "'data' of input 'x': Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ("FP32", DataType.DT_FLOAT, [1], ["a"],
     "'data' of input 'x': JSON Value: \"a\" Type: String is not of expected type: float"),
    ("INT64", DataType.DT_INT64, [1], [1.5],
     "'data' of input 'x': JSON Value: 1.5 Type: Number is not of expected type: int64"),
    ("BOOL", DataType.DT_BOOL, [1], [1],
     "'data' of input 'x': JSON Value: 1 Type: Number is not of expected type: bool"),
    ("BYTES", DataType.DT_STRING, [1], [1],
     "'data' of input 'x': JSON Value: 1 Type: Number is not of expected type: string"),
    ("INT8", DataType.DT_INT8, [2], [127, 128], "'data' of input 'x': 128 is out of the range of "
                                                "INT8"),
    ("INT16", DataType.DT_INT16, [1], [-32769], "'data' of input 'x': -32769 is out of the range "
                                                "of INT16"),
    ("UINT8", DataType.DT_UINT8, [2], [-1, 300], "'data' of input 'x': -1 is out of the range of "
                                                 "UINT8"),
    ("UINT16", DataType.DT_UINT16, [1], [65536], "'data' of input 'x': 65536 is out of the range "
                                                 "of UINT16"),
    ("UINT8", DataType.DT_UINT8, [1], [1.0],
     "'data' of input 'x': JSON Value: 1.0 Type: Number is not of expected type: int64"),
    ("FP32", DataType.DT_FLOAT, [1], 5, "'data' of input 'x' must be an array"),
    ("FP32", DataType.DT_FLOAT, [1], {"a": 1}, "'data' of input 'x' must be an array"),
])
def test_json_data_errors(datatype: str, dtype: DataType, shape: list[int], data: Any,
                          message: str) -> None:
    assert _invalid(_decode, datatype, dtype, shape, data) == message


# --- the response ------------------------------------------------------------------------------


@pytest.mark.parametrize(("array", "dtype", "text"), [
    (np.array([[1.5, 2], [3, 0.1]], np.float32), DataType.DT_FLOAT, b"[1.5, 2.0, 3.0, 0.1]"),
    (np.array([0.1, 1e300], np.float64), DataType.DT_DOUBLE, b"[0.1, 1e+300]"),
    (np.array([np.nan, -np.inf], np.float32), DataType.DT_FLOAT, b"[NaN, -Infinity]"),
    (np.array([[(1 << 64) - 1]], np.uint64), DataType.DT_UINT64, b"[18446744073709551615]"),
    (np.array([-(1 << 63)], np.int64), DataType.DT_INT64, b"[-9223372036854775808]"),
    (np.array([-128, 7], np.int8), DataType.DT_INT8, b"[-128, 7]"),
    (np.array([65535], np.uint16), DataType.DT_UINT16, b"[65535]"),
    (np.array([[True], [False]]), DataType.DT_BOOL, b"[true, false]"),
    (np.array([0.5, 65504], np.float16), DataType.DT_HALF, b"[0.5, 65504.0]"),
    (np.array([1.5], ml_dtypes.bfloat16), DataType.DT_BFLOAT16, b"[1.5]"),
    (np.array([b"a\"b", b"\xff", "h\u00e9".encode()], object), DataType.DT_STRING,
     b'["a\\"b", "\xef\xbf\xbd", "h\xc3\xa9"]'),
    (np.float32(2.5).reshape(()), DataType.DT_FLOAT, b"[2.5]"),
    (np.zeros((2, 0), np.float32), DataType.DT_FLOAT, b"[]"),
    (np.array([1, 2], np.int64), DataType.DT_INT32, b"[1, 2]"),  # written as the declared dtype
])
def test_tensor_json(writer: Any, array: np.ndarray, dtype: DataType, text: bytes) -> None:
    assert rest_codec.tensor_json(array, dtype, writer) == text


def test_tensor_json_of_a_strided_view_is_row_major(writer: Any) -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3).T
    assert rest_codec.tensor_json(array, DataType.DT_INT32, writer) == b"[0, 3, 1, 4, 2, 5]"


Y = ResponseOutput("y", "FP32", DataType.DT_FLOAT, np.array([[2.5], [3.0]], np.float32))
S = ResponseOutput("s", "BYTES", DataType.DT_STRING, np.array([b"ab", b""], object))


def test_a_json_response(writer: Any) -> None:
    body, length = rest_codec.format_infer_response("m", "3", "r-1", [Y, S], [False, False],
                                                    writer)
    assert length is None
    assert body == (b'{"model_name": "m", "model_version": "3", "id": "r-1", "outputs": ['
                    b'{"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [2.5, 3.0]}, '
                    b'{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["ab", ""]}]}')
    assert json.loads(body)["outputs"][0]["data"] == [2.5, 3.0]


def test_a_response_with_binary_outputs(writer: Any) -> None:
    body, length = rest_codec.format_infer_response("m\u00e9", "1", None, [S, Y], [True, True],
                                                    writer)
    header = ('{"model_name": "m\u00e9", "model_version": "1", "outputs": ['
              '{"name": "s", "datatype": "BYTES", "shape": [2], '
              '"parameters": {"binary_data_size": 10}}, '
              '{"name": "y", "datatype": "FP32", "shape": [2, 1], '
              '"parameters": {"binary_data_size": 8}}]}').encode()
    assert (body[:length], length) == (header, len(header))
    assert body[length:] == (b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
                             + np.array([2.5, 3.0], "<f4").tobytes())


def test_a_response_with_some_binary_outputs(writer: Any) -> None:
    body, length = rest_codec.format_infer_response("m", "1", None, [Y, S], [False, True],
                                                    writer)
    assert length is not None
    assert json.loads(body[:length])["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [2.5, 3.0]},
        {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 10}}]
    assert body[length:] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_an_id_and_names_are_written_as_json_strings(writer: Any) -> None:
    out = ResponseOutput('q"\n', "BOOL", DataType.DT_BOOL, np.array([], bool))
    body, _ = rest_codec.format_infer_response("m", "1", "\ud800\\", [out], [False], writer)
    assert json.loads(body) == {"model_name": "m", "model_version": "1", "id": "\ufffd\\",
                                "outputs": [{"name": 'q"\n', "datatype": "BOOL", "shape": [0],
                                             "data": []}]}


@pytest.mark.parametrize(("parameters", "outputs", "binary"), [
    ({}, None, [False, False]),
    ({"binary_data_output": True}, None, [True, True]),
    ({"binary_data_output": False}, None, [False, False]),
    ({}, [RequestedOutput("s", {"binary_data": True}), RequestedOutput("y")], [False, True]),
    ({"binary_data_output": True}, [RequestedOutput("y", {"binary_data": False})],
     [False, True]),
])
def test_binary_outputs(parameters: dict[str, Any], outputs: list[RequestedOutput] | None,
                        binary: list[bool]) -> None:
    request = InferRequest([], outputs, None, parameters)
    assert rest_codec.binary_outputs(request, [Y, S]) == binary
