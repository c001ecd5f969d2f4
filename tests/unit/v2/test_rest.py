"""The V2 REST routes through HttpRestApiHandler with an in-process ServerCore: metadata,
inference in JSON and binary, every datatype a TF model can take, errors and metrics."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tfsfast import __version__
from tfsfast.core.servable_state import ManagerState
from tfsfast.monitoring.serving_metrics import REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY
from tfsfast.server import model_config as mc
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.http.http_rest_api_handler import (
    CORS_HEADERS,
    HttpRestApiHandler,
    RestApiOptions,
)
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.v2 import binary_tensor
from tfsfast.server.v2.datatypes import data_type
from tfsfast.testing import export_models, runtime_models
from tfsfast.testing.wait import wait_until

HEADER = b"inference-header-content-length"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    root = tmp_path_factory.mktemp("v2")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    shutil.copytree(exported_models["tf1_three"], root / "hp2" / "2")
    export_models.export_multi_io(str(root / "multi" / "1"))
    runtime_models.export_dtype_round_trip(str(root / "dtypes" / "5"))
    config = mc.parse_model_server_config(
        "model_config_list {\n"
        f'  config {{ name: "hp2" base_path: "{root / "hp2"}" model_platform: "tensorflow"\n'
        "           model_version_policy { all {} } }\n"
        f'  config {{ name: "multi" base_path: "{root / "multi"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "dtypes" base_path: "{root / "dtypes"}" '
        'model_platform: "tensorflow" }\n'
        "}\n")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0))
    # The start waits for one version of each model; the metadata tests want both of hp2.
    wait_until(lambda: [s.state.manager_state for s in
                        core.servable_state_monitor.get_version_states("hp2").values()] == [
        ManagerState.AVAILABLE] * 2, "both versions of hp2 to be available")
    yield core
    core.stop()


def call(handler: HttpRestApiHandler, method: str, path: str, body: bytes = b"",
         headers: dict[bytes, bytes] | None = None) -> HttpResponse:
    result = handler(HttpRequest(method, path.encode(), headers or {}, body, True))
    if isinstance(result, HttpResponse):
        return result

    async def wait() -> HttpResponse:
        return await result

    return asyncio.run(wait())


def infer(handler: HttpRestApiHandler, path: str, request: dict[str, Any],
          binary: bytes | None = None,
          headers: dict[bytes, bytes] | None = None) -> HttpResponse:
    body = json.dumps(request).encode()
    headers = dict(headers or {})
    if binary is not None:
        headers[HEADER] = str(len(body)).encode()
        body += binary
    return call(handler, "POST", path, body, headers)


def ok_json(response: HttpResponse) -> Any:
    assert (response.status, response.content_type) == (200, b"application/json"), response.body
    return json.loads(response.body)


def error(response: HttpResponse) -> tuple[int, str]:
    assert response.content_type == b"application/json"
    body = json.loads(response.body)
    assert list(body) == ["error"]
    return response.status, body["error"]


def split(response: HttpResponse) -> tuple[Any, bytes]:
    """The JSON header and the binary data of a response with binary outputs."""
    assert (response.status, response.content_type) == (200, b"application/octet-stream")
    headers = dict(response.headers or ())
    length = int(headers[b"Inference-Header-Content-Length"])
    return json.loads(response.body[:length]), response.body[length:]


# --- metadata ------------------------------------------------------------------------------


def test_server_metadata(core: ServerCore) -> None:
    assert ok_json(call(HttpRestApiHandler(core), "GET", "/v2?x=1")) == {
        "name": "tfsfast", "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository", "model_configuration"]}


HP2_TENSORS = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
               "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}


def test_model_metadata(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    assert ok_json(call(handler, "GET", "/v2/models/hp2")) == {
        "name": "hp2", "versions": ["1", "2"], "platform": "tensorflow_savedmodel", **HP2_TENSORS}
    assert ok_json(call(handler, "GET", "/v2/models/%68p2/versions/1")) == {
        "name": "hp2", "versions": ["1"], "platform": "tensorflow_savedmodel", **HP2_TENSORS}
    assert ok_json(call(handler, "GET", "/v2/models/multi")) == {
        "name": "multi", "versions": ["1"], "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 2]},
                   {"name": "b", "datatype": "INT64", "shape": [-1]},
                   {"name": "s", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "positive", "datatype": "BOOL", "shape": [-1]},
                    {"name": "s_bytes", "datatype": "BYTES", "shape": [-1]},
                    {"name": "text", "datatype": "BYTES", "shape": [-1]},
                    {"name": "total", "datatype": "FP32", "shape": [-1]}]}


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/v2/models/nope", 404, "Servable not found for request: Latest(nope)"),
    ("/v2/models/hp2/versions/9", 404, "Servable not found for request: Specific(hp2, 9)"),
    ("/v2/models/hp2/versions/99999999999999999999", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("/v2/models/dtypes", 400, 'Serving signature key "serving_default" not found.'),
])
def test_model_metadata_errors(core: ServerCore, path: str, status: int, message: str) -> None:
    assert error(call(HttpRestApiHandler(core), "GET", path)) == (status, message)


# --- inference -------------------------------------------------------------------------------


def x_input(values: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": shape or [len(values)], "data": values}


def test_infer_json_latest_and_specific_version(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    latest = infer(handler, "/v2/models/hp2/infer",
                   {"id": "one", "inputs": [x_input([1.0, 2.0, 5.0])]})
    assert ok_json(latest) == {
        "model_name": "hp2", "model_version": "2", "id": "one",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [3.5, 4.0, 5.5]}]}
    first = infer(handler, "/v2/models/hp2/versions/1/infer",
                  {"inputs": [x_input([[1.0], [2.0]], [2, 1])]})
    assert ok_json(first) == {
        "model_name": "hp2", "model_version": "1",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [2.5, 3.0]}]}


MULTI_INPUTS = [
    {"name": "a", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
    {"name": "b", "datatype": "INT64", "shape": [2], "data": [10, -20]},
    {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["h\u00e9", ""]},
]


def test_infer_every_output_in_alias_order(core: ServerCore) -> None:
    answer = ok_json(infer(HttpRestApiHandler(core), "/v2/models/multi/infer",
                           {"inputs": MULTI_INPUTS}))
    assert answer == {"model_name": "multi", "model_version": "1", "outputs": [
        {"name": "positive", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "s_bytes", "datatype": "BYTES", "shape": [2], "data": ["h\u00e9", ""]},
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["h\u00e9", ""]},
        {"name": "total", "datatype": "FP32", "shape": [2], "data": [13.0, -13.0]}]}


def test_infer_the_outputs_asked_for_in_their_order(core: ServerCore) -> None:
    answer = ok_json(infer(HttpRestApiHandler(core), "/v2/models/multi/infer", {
        "inputs": MULTI_INPUTS, "outputs": [{"name": "total"}, {"name": "positive"}]}))
    assert [o["name"] for o in answer["outputs"]] == ["total", "positive"]


def test_infer_binary_inputs_and_outputs(core: ServerCore) -> None:
    a = np.array([[1, 2], [3, 4]], "<f4").tobytes()
    s = b"\x03\x00\x00\x00h\xc3\xa9\x01\x00\x00\x00\xff"
    response = infer(HttpRestApiHandler(core), "/v2/models/multi/infer", {
        "id": "bin",
        "inputs": [{"name": "a", "datatype": "FP32", "shape": [2, 2],
                    "parameters": {"binary_data_size": len(a)}},
                   MULTI_INPUTS[1],
                   {"name": "s", "datatype": "BYTES", "shape": [2],
                    "parameters": {"binary_data_size": len(s)}}],
        "outputs": [{"name": "s_bytes", "parameters": {"binary_data": True}},
                    {"name": "total", "parameters": {"binary_data": True}},
                    {"name": "positive"}],
    }, a + s)
    header, data = split(response)
    assert header == {"model_name": "multi", "model_version": "1", "id": "bin", "outputs": [
        {"name": "s_bytes", "datatype": "BYTES", "shape": [2],
         "parameters": {"binary_data_size": len(s)}},
        {"name": "total", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "positive", "datatype": "BOOL", "shape": [2], "data": [True, False]}]}
    assert data == s + np.array([13.0, -13.0], "<f4").tobytes()


def test_binary_data_output_for_every_output(core: ServerCore) -> None:
    response = infer(HttpRestApiHandler(core), "/v2/models/hp2/versions/1/infer", {
        "inputs": [x_input([4.0])], "parameters": {"binary_data_output": True}})
    header, data = split(response)
    assert header["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1],
                                  "parameters": {"binary_data_size": 4}}]
    assert data == np.array([4.0], "<f4").tobytes()


def test_a_gzip_body(core: ServerCore) -> None:
    body = json.dumps({"inputs": [x_input([2.0])]}).encode()
    response = call(HttpRestApiHandler(core), "POST", "/v2/models/hp2/versions/1/infer",
                    gzip.compress(body), {b"content-encoding": b"gzip"})
    assert ok_json(response)["outputs"][0]["data"] == [3.0]


def _values(name: str) -> np.ndarray:
    if name == "bool":
        return np.array([[True, False], [False, True]])
    if name == "string":
        return np.array([[b"a", b"\xff\x00"], [b"", "h\u00e9".encode()]], dtype=object)
    dtype = ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)
    return np.array([[0, 1], [100, 7]]).astype(dtype)


V2_DTYPES = {"float16": "FP16", "float32": "FP32", "float64": "FP64", "bfloat16": "BF16",
             "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
             "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
             "bool": "BOOL", "string": "BYTES"}


@pytest.mark.parametrize("name", sorted(V2_DTYPES))
def test_every_datatype_through_a_signature_named_by_parameter(core: ServerCore,
                                                               name: str) -> None:
    """The round-trip model's signature of each dtype, in JSON and in binary both ways."""
    handler = HttpRestApiHandler(core)
    values = _values(name)
    datatype = V2_DTYPES[name]
    strings = name == "string"
    json_data = ([x.decode("utf-8", "surrogateescape") for x in values.reshape(-1)]
                 if strings else values.astype(np.float64 if name in ("float16", "bfloat16")
                                               else values.dtype).reshape(-1).tolist())
    if strings:  # bytes that are not text travel as {"b64": ...} in JSON
        json_data[1] = {"b64": "/wA="}
    parameters = {"signature_name": name}
    answer = ok_json(infer(handler, "/v2/models/dtypes/infer", {
        "parameters": parameters,
        "inputs": [{"name": "x", "datatype": datatype, "shape": [2, 2], "data": json_data}],
        "outputs": [{"name": "identity"}]}))
    expected = ([x.decode("utf-8", "replace") for x in values.reshape(-1)] if strings
                else values.astype(np.float64 if values.dtype.kind == "f" or name == "bfloat16"
                                   else values.dtype).reshape(-1).tolist())
    assert answer["outputs"] == [{"name": "identity", "datatype": datatype, "shape": [2, 2],
                                  "data": expected}]
    dtype = data_type(datatype)
    assert dtype is not None
    raw = bytes(binary_tensor.encode(values, dtype))
    header, data = split(infer(handler, "/v2/models/dtypes/infer", {
        "parameters": {**parameters, "binary_data_output": True},
        "inputs": [{"name": "x", "datatype": datatype, "shape": [2, 2],
                    "parameters": {"binary_data_size": len(raw)}}]}, raw))
    assert [(o["name"], o["shape"]) for o in header["outputs"]] == [("concat", [4, 2]),
                                                                    ("identity", [2, 2])]
    concat_size = header["outputs"][0]["parameters"]["binary_data_size"]
    assert data[concat_size:] == raw
    assert data[:concat_size] == raw + raw


def test_a_dtype_the_protocol_cannot_carry(core: ServerCore) -> None:
    response = infer(HttpRestApiHandler(core), "/v2/models/dtypes/infer", {
        "parameters": {"signature_name": "complex64"},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})
    assert error(response) == (400, "Input 'x' of signature 'complex64' has dtype complex64, "
                                    "which the Open Inference Protocol cannot carry")


@pytest.mark.parametrize(("request_body", "status", "message"), [
    ({"inputs": [x_input([1.0]), {"name": "k", "datatype": "FP32", "shape": [1], "data": [1]}]},
     400, "Input 'k' is not an input of signature 'serving_default' (its inputs: x)"),
    ({"inputs": []}, 400,
     "Signature 'serving_default' needs input(s) the request does not give: x"),
    ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}]}, 400,
     "Input 'x' has datatype FP64, but signature 'serving_default' expects FP32"),
    ({"inputs": [x_input([1.0, 2.0], [3])]}, 400,
     "Input 'x' has shape [3], 3 elements, but its data has 2 elements"),
    ({"inputs": [x_input(["a"])]}, 400,
     "'data' of input 'x': JSON Value: \"a\" Type: String is not of expected type: float"),
    ({"inputs": [x_input([1.0])], "outputs": [{"name": "z"}]}, 400,
     "Output 'z' is not an output of signature 'serving_default' (its outputs: y)"),
    ({"inputs": [x_input([1.0])], "parameters": {"signature_name": "nope"}}, 400,
     'Serving signature key "nope" not found.'),
    ({"inputs": [x_input([1.0])], "parameters": {"signature_name": 1}}, 400,
     "Parameter 'signature_name' must be a string"),
    ({"inputs": {}}, 400, "The request must have an 'inputs' array"),
])
def test_infer_errors(core: ServerCore, request_body: dict[str, Any], status: int,
                      message: str) -> None:
    handler = HttpRestApiHandler(core)
    assert error(infer(handler, "/v2/models/hp2/infer", request_body)) == (status, message)
    # ... and the server goes on serving.
    assert ok_json(infer(handler, "/v2/models/hp2/infer", {"inputs": [x_input([1.0])]}))


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), [
    ("/v2/models/nope/infer", b"{}", {}, 404, "Servable not found for request: Latest(nope)"),
    ("/v2/models/hp2/versions/7/infer", b"{}", {}, 404,
     "Servable not found for request: Specific(hp2, 7)"),
    ("/v2/models/hp2/infer", b"{", {}, 400,
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("/v2/models/hp2/infer", b"{}", {HEADER: b"x"}, 400,
     "Unable to parse Inference-Header-Content-Length: 'x' is not a number of bytes"),
    ("/v2/models/hp2/infer", b"{}", {HEADER: b"3"}, 400,
     "Inference-Header-Content-Length is 3, but the request body has 2 bytes"),
    ("/v2/models/hp2/infer", b"{}", {b"content-encoding": b"gzip"}, 400,
     "Failed to decompress gzip body: Error -3 while decompressing data: incorrect header check"),
])
def test_request_level_errors(core: ServerCore, path: str, body: bytes,
                              headers: dict[bytes, bytes], status: int, message: str) -> None:
    assert error(call(HttpRestApiHandler(core), "POST", path, body, headers)) == (status, message)


# --- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v2"), ("PUT", "/v2"), ("POST", "/v2/models/hp2"),
    ("DELETE", "/v2/models/hp2/versions/1"), ("GET", "/v2/models/hp2/infer"),
    ("PUT", "/v2/models/hp2/versions/1/infer"),
])
def test_other_methods_are_malformed_requests(core: ServerCore, method: str, path: str) -> None:
    assert error(call(HttpRestApiHandler(core), method, path)) == (
        400, f"Malformed request: {method} {path}")


@pytest.mark.parametrize("path", [
    "/v2/", "/v2/models", "/v2/models/", "/v2/models/hp2/", "/v2/models/hp2/versions",
    "/v2/models/hp2/versions/", "/v2/models/hp2/versions/x", "/v2/models/hp2/infer/",
    "/v2/models/hp2/versions/1/infer/x", "/V2/models/hp2", "/v2/models/hp2/INFER", "/v22",
])
def test_other_paths_are_a_plain_404(core: ServerCore, path: str) -> None:
    for method in ("GET", "POST"):
        response = call(HttpRestApiHandler(core), method, path)
        assert (response.status, response.content_type) == (404, b"text/html")


def test_cors(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core, RestApiOptions(enable_cors_support=True))
    assert call(handler, "GET", "/v2").headers == CORS_HEADERS
    assert call(handler, "GET", "/v2/models/hp2").headers == CORS_HEADERS
    assert call(handler, "GET", "/v2/models/nope").headers == CORS_HEADERS
    binary = infer(handler, "/v2/models/hp2/infer", {
        "inputs": [x_input([1.0])], "parameters": {"binary_data_output": True}})
    length = str(len(json.dumps(
        {"model_name": "hp2", "model_version": "2", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1],
             "parameters": {"binary_data_size": 4}}]}))).encode()
    assert binary.headers == [*CORS_HEADERS, (b"Inference-Header-Content-Length", length)]
    preflight = call(handler, "OPTIONS", "/v2/models/hp2/infer",
                     headers={b"origin": b"https://a.b"})
    assert (preflight.status, preflight.body, preflight.headers) == (200, b"", CORS_HEADERS)
    assert call(handler, "OPTIONS", "/v2").status == 400  # no Origin
    assert infer(HttpRestApiHandler(core), "/v2/models/hp2/infer", {
        "inputs": [x_input([1.0])], "parameters": {"binary_data_output": True}}).headers == [
        (b"Inference-Header-Content-Length", length)]


def test_metrics(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    ok = REQUEST_COUNT.get_cell("multi", "OK")
    invalid = REQUEST_COUNT.get_cell("multi", "INVALID_ARGUMENT")
    latency = REQUEST_LATENCY.get_cell("multi", "infer", "REST")
    metadata_latency = REQUEST_LATENCY.get_cell("multi", "", "REST")
    runtime = RUNTIME_LATENCY.get_cell("multi", "ModelInfer", "TF1")
    server = REQUEST_COUNT.get_cell("", "OK")
    before = (ok.value(), invalid.value(), latency.value().count,
              metadata_latency.value().count, runtime.value().count, server.value())
    assert ok_json(infer(handler, "/v2/models/multi/infer", {"inputs": MULTI_INPUTS}))
    assert error(infer(handler, "/v2/models/multi/infer", {"inputs": []}))[0] == 400
    assert error(call(handler, "GET", "/v2/models/multi/infer"))[0] == 400
    assert ok_json(call(handler, "GET", "/v2/models/multi"))
    assert ok_json(call(handler, "GET", "/v2"))
    after = (ok.value(), invalid.value(), latency.value().count,
             metadata_latency.value().count, runtime.value().count, server.value())
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 2, 1, 1, 1, 1]
