"""A real tfsfast process driven over the Open Inference Protocol by its real clients: Triton's
``tritonclient.http`` and the KServe SDK's ``InferenceRESTClient``.

Three models: half_plus_two (``hp2``, TF1 export, x float [-1, 1]), a multi-input,
multi-output model with string tensors (``multi``), and the dtype round-trip model
(``dtypes``: one signature per dtype, picked with the ``signature_name`` parameter).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tfsfast import __version__
from tfsfast.testing import export_models, runtime_models
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

HP2_METADATA = {
    "name": "hp2", "versions": ["1"], "platform": "tensorflow_savedmodel",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("v2_clients")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "1")
    export_models.export_multi_io(str(root / "multi" / "1"))
    runtime_models.export_dtype_round_trip(str(root / "dtypes" / "1"))
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("hp2", "multi", "dtypes")) + "}\n")
    with ServerProcess([f"--model_config_file={config}"]) as s:
        yield s


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}", concurrency=4)
    yield c
    c.close()


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


X = np.array([[1.0], [2.0], [5.0]], np.float32)
Y = np.array([[2.5], [3.0], [4.5]], np.float32)


# --- tritonclient ---------------------------------------------------------------------------


def test_triton_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("hp2") and client.is_model_ready("hp2", "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("hp2", "2")
    assert client.get_server_metadata() == {
        "name": "tfsfast", "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository", "model_configuration"]}
    assert client.get_model_metadata("hp2") == HP2_METADATA
    assert client.get_model_metadata("hp2", "1") == HP2_METADATA
    assert client.get_model_metadata("multi")["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "b", "datatype": "INT64", "shape": [-1]},
        {"name": "s", "datatype": "BYTES", "shape": [-1]}]


def test_triton_model_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("hp2")
    assert {k: config[k] for k in ("name", "platform", "backend", "max_batch_size",
                                   "version_policy")} == {
        "name": "hp2", "platform": "tensorflow_savedmodel", "backend": "tensorflow",
        "max_batch_size": 0, "version_policy": {"latest": {"num_versions": 1}}}
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"] + config["output"]
            ] == [("x", "TYPE_FP32", [-1, 1]), ("y", "TYPE_FP32", [-1, 1])]
    assert client.get_model_config("hp2", "1") == config


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_triton_infer(client: triton.InferenceServerClient, binary_in: bool,
                      binary_out: bool) -> None:
    result = client.infer("hp2", [_input("x", X, "FP32", binary_in)], request_id="r-7",
                          outputs=[triton.InferRequestedOutput("y", binary_data=binary_out)])
    np.testing.assert_array_equal(result.as_numpy("y"), Y)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "hp2", "1", "r-7")
    assert ("data" in response["outputs"][0]) is not binary_out


def test_triton_infer_without_outputs_asks_for_binary_ones(
        client: triton.InferenceServerClient) -> None:
    result = client.infer("hp2", [_input("x", X, "FP32", True)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("y"), Y)
    assert result.get_output("y") == {"name": "y", "datatype": "FP32", "shape": [3, 1],
                                      "parameters": {"binary_data_size": 12}}


def test_triton_infer_several_inputs_and_outputs_with_strings(
        client: triton.InferenceServerClient) -> None:
    a = np.array([[1, 2], [3, 4], [0.5, 0]], np.float32)
    b = np.array([10, -20, 0], np.int64)
    s = np.array(["h\u00e9".encode(), b"", b"\xff\x00"], dtype=np.object_)
    result = client.infer("multi", [_input("a", a, "FP32", True), _input("b", b, "INT64", False),
                                    _input("s", s, "BYTES", True)],
                          outputs=[triton.InferRequestedOutput("text", binary_data=True),
                                   triton.InferRequestedOutput("total", binary_data=False),
                                   triton.InferRequestedOutput("positive", binary_data=True)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["text", "total", "positive"]
    assert result.as_numpy("text").tolist() == s.tolist()
    assert result.as_numpy("total").tolist() == [13.0, -13.0, 0.5]
    assert result.as_numpy("positive").tolist() == [True, False, False]
    assert result.as_numpy("s_bytes") is None


def test_triton_strings_in_json(client: triton.InferenceServerClient) -> None:
    s = np.array(["h\u00e9".encode(), b"x"], dtype=np.object_)
    result = client.infer("multi", [
        _input("a", np.zeros((2, 2), np.float32), "FP32", False),
        _input("b", np.array([1, 1], np.int64), "INT64", False),
        _input("s", s, "BYTES", False)],
        outputs=[triton.InferRequestedOutput("text", binary_data=False)])
    assert result.get_output("text")["data"] == ["h\u00e9", "x"]


@pytest.mark.parametrize(("signature", "datatype", "array"), [
    ("float16", "FP16", np.array([[0.5, -1.0], [65504, 0]], np.float16)),
    ("bfloat16", "BF16", np.array([[1.5, -2.0]], np.float32)),  # tritonclient's BF16 carrier
    ("float64", "FP64", np.array([0.1, 1e300])),
    ("int8", "INT8", np.array([-128, 127], np.int8)),
    ("uint16", "UINT16", np.array([0, 65535], np.uint16)),
    ("uint64", "UINT64", np.array([(1 << 64) - 1], np.uint64)),
    ("bool", "BOOL", np.array([[True, False, True]])),
    ("string", "BYTES", np.array([b"\x00\xff", b"ok"], dtype=np.object_)),
])
def test_triton_datatypes_in_binary(client: triton.InferenceServerClient, signature: str,
                                    datatype: str, array: np.ndarray) -> None:
    result = client.infer("dtypes", [_input("x", array, datatype, True)],
                          outputs=[triton.InferRequestedOutput("identity", binary_data=True)],
                          parameters={"signature_name": signature})
    assert result.as_numpy("identity").tolist() == array.tolist()
    assert result.get_output("identity")["datatype"] == datatype


def test_triton_async_infer(client: triton.InferenceServerClient) -> None:
    pending = [client.async_infer("hp2", [_input("x", X * i, "FP32", i % 2 == 0)],
                                  request_id=str(i)) for i in range(8)]
    for i, request in enumerate(pending):
        result = request.get_result()
        assert result.get_response()["id"] == str(i)
        np.testing.assert_array_equal(result.as_numpy("y"), X * i * 0.5 + 2)


@pytest.mark.parametrize(("call", "status", "message"), [
    (lambda c: c.infer("nope", [_input("x", X, "FP32", True)]), "404",
     "Servable not found for request: Latest(nope)"),
    (lambda c: c.infer("hp2", [_input("x", X, "FP32", True)], model_version="4"), "404",
     "Servable not found for request: Specific(hp2, 4)"),
    (lambda c: c.infer("hp2", [_input("x", X.astype(np.float64), "FP64", False)]), "400",
     "Input 'x' has datatype FP64, but signature 'serving_default' expects FP32"),
    (lambda c: c.infer("hp2", [_input("z", X, "FP32", True)]), "400",
     "Input 'z' is not an input of signature 'serving_default' (its inputs: x)"),
    (lambda c: c.infer("hp2", [_input("x", X, "FP32", True)],
                       outputs=[triton.InferRequestedOutput("q")]), "400",
     "Output 'q' is not an output of signature 'serving_default' (its outputs: y)"),
    (lambda c: c.infer("hp2", [_input("x", X, "FP32", True)],
                       parameters={"signature_name": "other"}), "400",
     'Serving signature key "other" not found.'),
    (lambda c: c.infer("hp2", [_input("x", X, "FP32", True)],
                       outputs=[triton.InferRequestedOutput("y", class_count=2)]), "400",
     "Parameter 'classification' of output 'y' is not supported: this server does not serve "
     "the classification extension"),
    (lambda c: c.get_model_metadata("nope"), "404",
     "Servable not found for request: Latest(nope)"),
    (lambda c: c.get_model_metadata("dtypes"), "400",
     'Serving signature key "serving_default" not found.'),
    (lambda c: c.get_model_config("nope"), "404",
     "Servable not found for request: Latest(nope)"),
    (lambda c: c.get_model_config("hp2", "2"), "404",
     "Servable not found for request: Specific(hp2, 2)"),
])
def test_triton_errors(client: triton.InferenceServerClient, call: Any, status: str,
                       message: str) -> None:
    with pytest.raises(InferenceServerException) as raised:
        call(client)
    assert (raised.value.status(), raised.value.message()) == (status, message)
    assert client.is_server_live()


# --- the KServe SDK ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kserve() -> Any:
    """The KServe SDK, imported with an empty command line: at import it parses ``sys.argv`` as
    its model server's flags, and would take pytest's for them (``--co`` for its
    ``--configure_logging``)."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        return importlib.import_module("kserve")
    finally:
        sys.argv = argv


def _kserve(server: ServerProcess, kserve: Any, work: Any) -> Any:
    async def run() -> Any:
        client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", timeout=60))
        try:
            return await work(client, f"http://127.0.0.1:{server.rest_port}")
        finally:
            await client.close()

    return asyncio.run(run())


def test_kserve_model_ready(server: ServerProcess, kserve: Any) -> None:
    async def work(client: Any, base: str) -> list[bool]:
        return [await client.is_model_ready(base, "hp2"),
                await client.is_model_ready(base, "nope")]

    assert _kserve(server, kserve, work) == [True, False]


@pytest.mark.parametrize("binary", [False, True])
def test_kserve_infer(server: ServerProcess, kserve: Any, binary: bool) -> None:
    async def work(client: Any, base: str) -> Any:
        x = kserve.InferInput("x", [3, 1], "FP32")
        x.set_data_from_numpy(X, binary_data=binary)
        outputs = [kserve.protocol.infer_type.RequestedOutput(
            "y", parameters={"binary_data": binary})]
        request = kserve.InferRequest("hp2", [x], request_id="k-1", request_outputs=outputs)
        return await client.infer(base, request, model_name="hp2")

    response = _kserve(server, kserve, work)
    assert (response.model_name, response.id) == ("hp2", "k-1")
    [y] = response.outputs
    assert (y.name, y.datatype, y.shape) == ("y", "FP32", [3, 1])
    np.testing.assert_array_equal(y.as_numpy(), Y)


def test_kserve_infer_strings_and_several_outputs(server: ServerProcess, kserve: Any) -> None:
    async def work(client: Any, base: str) -> Any:
        a = kserve.InferInput("a", [2, 2], "FP32")
        a.set_data_from_numpy(np.array([[1, 2], [3, 4]], np.float32), binary_data=True)
        b = kserve.InferInput("b", [2], "INT64")
        b.set_data_from_numpy(np.array([5, -9], np.int64), binary_data=False)
        s = kserve.InferInput("s", [2], "BYTES")
        # The SDK turns binary outputs back into JSON-able data: only UTF-8 text survives it.
        s.set_data_from_numpy(np.array([b"one", "h\u00e9".encode()], dtype=np.object_),
                              binary_data=True)
        requested = kserve.protocol.infer_type.RequestedOutput
        outputs = [requested("text", parameters={"binary_data": True}), requested("total")]
        request = kserve.InferRequest("multi", [a, b, s], request_outputs=outputs)
        return await client.infer(base, request, model_name="multi")

    response = _kserve(server, kserve, work)
    text, total = response.outputs
    assert text.as_numpy().tolist() == ["one", "h\u00e9"]
    assert total.as_numpy().tolist() == [8.0, -2.0]


def test_kserve_errors_carry_the_servers_message(server: ServerProcess, kserve: Any) -> None:
    async def work(client: Any, base: str) -> Any:
        x = kserve.InferInput("x", [3, 1], "FP32")
        x.set_data_from_numpy(X, binary_data=False)
        return await client.infer(base, kserve.InferRequest("nope", [x]), model_name="nope")

    with pytest.raises(httpx.HTTPStatusError) as raised:
        _kserve(server, kserve, work)
    assert raised.value.response.status_code == 404
    assert str(raised.value).startswith(
        "Servable not found for request: Latest(nope), '404 Not Found' for url ")


# --- hostile bodies -------------------------------------------------------------------------


def _x(**fields: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", **fields}]}).encode()


@pytest.mark.parametrize(("body", "headers", "message"), [
    (b"{}", {"Inference-Header-Content-Length": "99999999999"},
     "Inference-Header-Content-Length is 99999999999, but the request body has 2 bytes"),
    (b"{}", {"Inference-Header-Content-Length": "-1"},
     "Unable to parse Inference-Header-Content-Length: '-1' is not a number of bytes"),
    (_x(shape=[3], parameters={"binary_data_size": 12}) + b"\0" * 4,
     {"Inference-Header-Content-Length": str(len(_x(shape=[3], parameters={
         "binary_data_size": 12})))},
     "Input 'x' has a binary_data_size of 12 bytes, but only 4 bytes of binary data are left "
     "for it"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": '
     + b"[" * 100_000 + b"]" * 100_000 + b"}]}", {},
     "JSON nesting depth exceeds the maximum of 100"),
    (_x(shape=[1 << 62, 1 << 62], data=[]), {},
     f"Input 'x' has {1 << 124} elements, which exceeds the maximum of {1 << 28} elements per "
     "tensor"),
    (_x(shape=[2, -5], data=[]), {}, "Input 'x' has shape [2, -5]: a dimension cannot be "
                                     "negative"),
    (_x(shape=[1 << 27], parameters={"binary_data_size": 0}),
     {"Inference-Header-Content-Length": str(len(_x(shape=[1 << 27], parameters={
         "binary_data_size": 0})))},
     f"Input 'x' has {1 << 27} elements of FP32, which take {1 << 29} bytes, but its binary data "
     "has 0 bytes"),
])
def test_hostile_bodies_get_a_400_and_the_server_goes_on(
        server: ServerProcess, client: triton.InferenceServerClient, body: bytes,
        headers: dict[str, str], message: str) -> None:
    status, _, answer = server.request("POST", "/v2/models/hp2/infer", body, headers)
    assert (status, json.loads(answer)) == (400, {"error": message})
    result = client.infer("hp2", [_input("x", X, "FP32", True)])
    np.testing.assert_array_equal(result.as_numpy("y"), Y)
