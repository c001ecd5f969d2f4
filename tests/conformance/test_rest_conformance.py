"""TF Serving's REST API rules (tfserving-compat.md §1.3 and §2), one test per rule, through the
REST handler with an in-process ServerCore, against the compiled and the Python JSON codec."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest

from tfsfast.codecs import json_codec
from tfsfast.server import model_config as mc
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.test_util import implementations, import_impl, tfserving_testdata

CODECS = implementations("tfsfast.codecs._json", "tfsfast.codecs._json_py")


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    from tfsfast.testing.export_models import export_multi_io

    root = tmp_path_factory.mktemp("conformance")
    shutil.copytree(exported_models["tf1"], root / "hp2" / "123")
    export_multi_io(str(root / "multi" / "1"))
    config = mc.parse_model_server_config(
        "model_config_list {\n"
        f'  config {{ name: "hp2" base_path: "{root / "hp2"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "multi" base_path: "{root / "multi"}" model_platform: "tensorflow" }}\n'
        "}\n")
    core = ServerCore.create(ServerCoreOptions(model_server_config=config,
                                               file_system_poll_wait_seconds=0,
                                               max_num_load_retries=0))
    yield core
    core.stop()


@pytest.fixture(params=CODECS)
def handler(request: pytest.FixtureRequest, core: ServerCore,
            monkeypatch: pytest.MonkeyPatch) -> HttpRestApiHandler:
    codec = import_impl(request.param)
    monkeypatch.setattr(json_codec, "JsonCodec", codec.JsonCodec)  # the handler makes one
    return HttpRestApiHandler(core)


def call(handler: HttpRestApiHandler, method: str, path: str, body: bytes | str = b"",
         headers: dict[bytes, bytes] | None = None) -> HttpResponse:
    if isinstance(body, str):
        body = body.encode()
    result = handler(HttpRequest(method, path.encode(), headers or {}, body, True))
    if isinstance(result, HttpResponse):
        return result

    async def wait() -> HttpResponse:
        return await result

    return asyncio.run(wait())


def ok(handler: HttpRestApiHandler, path: str, body: str | dict) -> object:
    response = call(handler, "POST", path, body if isinstance(body, str) else json.dumps(body))
    assert response.status == 200, response.body
    return json.loads(response.body)


def error(handler: HttpRestApiHandler, method: str, path: str, body: str = "") -> tuple[int, str]:
    response = call(handler, method, path, body)
    assert response.content_type == b"application/json"
    payload = json.loads(response.body)
    assert list(payload) == ["error"]
    return response.status, payload["error"]


PREDICT = "/v1/models/hp2:predict"
MULTI = "/v1/models/multi:predict"


# --- §1.3 routing and status codes --------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/v1/models", 400, "Missing model name in request."),
    ("PUT", "/v1/models/hp2", 400, "Malformed request: PUT /v1/models/hp2"),
    ("HEAD", "/v1/models/hp2", 400, "Malformed request: HEAD /v1/models/hp2"),
    ("GET", "/v1/models/hp2:predict", 400, "Malformed request: GET /v1/models/hp2:predict"),
    ("POST", "/v1/models/hp2/metadata", 400, "Malformed request: POST /v1/models/hp2/metadata"),
    ("POST", "/v1/models/hp2:PREDICT", 400, "Malformed request: POST /v1/models/hp2:PREDICT"),
    ("GET", "/v1/models/hp2/versions/abc", 400,
     "Malformed request: GET /v1/models/hp2/versions/abc"),
    ("POST", "/v1/models/hp2/versions/1/labels/a:predict", 400,
     "Malformed request: POST /v1/models/hp2/versions/1/labels/a:predict"),
    ("GET", "/v1/models/hp2/versions/18446744073709551615", 400,
     "Failed to convert version: 18446744073709551615 to numeric."),
    ("GET", "/v1/models/nope", 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/hp2/versions/5", 404, "Could not find version 5 of model hp2"),
    ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/hp2/versions/5:predict", 404,
     "Servable not found for request: Specific(hp2, 5)"),
    ("POST", "/v1/models/hp2/labels/x:predict", 400, "Unrecognized servable version label: x"),
])
def test_routes(handler: HttpRestApiHandler, method: str, path: str, status: int,
                message: str) -> None:
    assert error(handler, method, path, '{"instances": [[1.0]]}') == (status, message)


def test_routes_are_case_insensitive_and_names_percent_decoded(
        handler: HttpRestApiHandler) -> None:
    assert ok(handler, "/V1/Models/%68p2/VERSIONS/123:predict", {"instances": [[2.0]]}) == {
        "predictions": [[3.0]]}


def test_unrouted_path_is_not_json(handler: HttpRestApiHandler) -> None:
    response = call(handler, "GET", "/v3/models/hp2")
    assert response.status == 404 and response.content_type == b"text/html"


def test_status_format(handler: HttpRestApiHandler) -> None:
    response = call(handler, "GET", "/v1/models/hp2")
    assert response.body.decode() == (
        '{\n "model_version_status": [\n  {\n   "version": "123",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}')


def test_metadata_matches_tf_serving() -> None:
    """The metadata of TF Serving's own export equals TF Serving's answer (keys/lists sorted)."""
    base = tfserving_testdata("saved_model_half_plus_two_cpu")
    expected = json.loads((base.parent / "half_plus_two_model_metadata.json").read_text())
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("default", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0))
    try:
        got = json.loads(call(HttpRestApiHandler(core), "GET", "/v1/models/default/metadata").body)
    finally:
        core.stop()

    def canonical(value: object) -> object:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return sorted((canonical(v) for v in value), key=json.dumps)
        return value

    assert canonical(got) == canonical(expected)


# --- §2.1 parsing ----------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ("", "JSON Parse error: The document is empty"),
    ("{", "JSON Parse error: Missing a name for object member. at offset: 1"),
    ('{"instances": [1.0,]}', "JSON Parse error: Invalid value. at offset: 19"),
    ("[]", "JSON Value: [] Is not object"),
    ('{"instances": [[1.0]], "inputs": [[1.0]]}',
     'JSON Value: {"instances":[[1.0]],"inputs":[[1.0]]} Not formatted correctly expecting '
     "only one of 'inputs' or 'instances' keys to exist "),
    ("{}", "Missing 'inputs' or 'instances' key"),
    ('{"signature_name": 5, "instances": [1]}',
     'JSON Value: {"signature_name":5,"instances":[1]} not formatted correctly. '
     "'signature_name' key must be a string value."),
    ('{"signature_name": "nope", "instances": [1]}',
     'Serving signature name: "nope" not found in signature def'),
    ('{"instances": 5}', 'JSON Value: {"instances":5} Expecting \'instances\' to be an list/array'),
    ('{"instances": []}', "JSON Value: {\"instances\":[]} No values in 'instances' array"),
])
def test_document_errors(handler: HttpRestApiHandler, body: str, message: str) -> None:
    assert error(handler, "POST", PREDICT, body) == (400, message)


def test_nan_infinity_and_trailing_bytes(handler: HttpRestApiHandler) -> None:
    got = ok(handler, PREDICT, '{"instances": [[NaN], [Infinity], [-Infinity]]} trailing')
    assert json.dumps(got) == '{"predictions": [[NaN], [Infinity], [-Infinity]]}'


# --- §2.2 predict request formats -------------------------------------------------------

def test_row_and_columnar_single_input(handler: HttpRestApiHandler) -> None:
    assert ok(handler, PREDICT, {"instances": [[1.0], [2.0]]}) == {"predictions": [[2.5], [3.0]]}
    assert ok(handler, PREDICT, {"inputs": [[1.0], [2.0]]}) == {"outputs": [[2.5], [3.0]]}
    assert ok(handler, PREDICT, {"inputs": {"x": [[2.0]]}}) == {"outputs": [[3.0]]}
    assert ok(handler, PREDICT, {"instances": [{"x": [2.0]}]}) == {"predictions": [[3.0]]}


def test_integers_are_floats_for_a_float_signature(handler: HttpRestApiHandler) -> None:
    assert ok(handler, PREDICT, {"instances": [[2]]}) == {"predictions": [[3.0]]}


def test_multiple_inputs_and_outputs_row_format(handler: HttpRestApiHandler) -> None:
    got = ok(handler, MULTI, {"instances": [
        {"a": [1.0, 2.0], "b": 3, "s": "x"},
        {"a": [0.5, 0.5], "b": -1, "s": {"b64": base64.b64encode(b"\xff\x00").decode()}}]})
    [first, second] = got["predictions"]
    assert first == {"total": 6.0, "positive": True, "s_bytes": {"b64": "eA=="}, "text": "x"}
    assert second["total"] == 0.0 and second["positive"] is False
    assert second["s_bytes"] == {"b64": "/wA="}


def test_multiple_inputs_and_outputs_columnar(handler: HttpRestApiHandler) -> None:
    got = ok(handler, MULTI, {"inputs": {"a": [[1.0, 1.0]], "b": [1], "s": ["hi"],
                                         "ignored": 1}})
    assert got == {"outputs": {"total": [3.0], "positive": [True], "s_bytes": [{"b64": "aGk="}],
                               "text": ["hi"]}}


def test_scalar_columnar_is_a_bare_value(handler: HttpRestApiHandler) -> None:
    assert ok(handler, MULTI, {"signature_name": "scalar", "inputs": 1.5}) == {"outputs": 3.0}


@pytest.mark.parametrize(("body", "message"), [
    ({"instances": [1.0]},
     "instances is a plain list, but expecting list of objects as multiple input tensors "
     "required as per tensorinfo_map"),
    ({"inputs": [1.0]},
     "inputs is a plain value/list, but expecting an object as multiple input tensors "
     "required as per tensorinfo_map"),
    ({"inputs": {"a": [[1.0, 1.0]], "b": [1]}}, "Missing named input: s in 'inputs' object."),
    ({"instances": [{"a": [1.0, 1.0], "b": 1, "s": "x"}, [1]]},
     "Expecting object but got list at item 1 of input list"),
    ({"instances": [{"a": [1.0, 1.0], "b": 1}]},
     'Failed to process element: 0 of \'instances\' list. JSON object: {"a":[1.0,1.0],"b":1} '
     "keys must be equal to: a,b,s"),
    ({"instances": [{"a": [1.0, 1.0], "b": 1.5, "s": "x"}]},
     "Failed to process element: 0 key: b of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "Value: 1.5 Type: Number is not of expected type: int64"),
    ({"instances": [{"a": [1.0, 1.0], "b": 1, "s": 5}]},
     "Failed to process element: 0 key: s of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "Value: 5 Type: Number is not of expected type: string"),
    ({"instances": [{"a": [1.0, 1.0], "b": 1, "s": {"b64": "@@"}}]},
     "Failed to process element: 0 key: s of 'instances' list. Error: INVALID_ARGUMENT: "
     "Unable to base64 decode"),
    ({"instances": [{"a": [1.0, 1.0], "b": 1, "s": {"b64": "eA==", "x": 1}}]},
     "Failed to process element: 0 key: s of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     'Value: {"b64":"eA==","x":1} not formatted correctly for base64 data'),
    ({"instances": [{"a": [1.0, None], "b": 1, "s": "x"}]},
     "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "Value: null Type: Null is not of expected type: float"),
])
def test_multi_input_errors(handler: HttpRestApiHandler, body: dict, message: str) -> None:
    assert error(handler, "POST", MULTI, json.dumps(body)) == (400, message)


@pytest.mark.parametrize(("instances", "message"), [
    ([[1.0], [1.0, 2.0]],
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 1 but got: 2"),
    ([[1.0], [[1.0]]],
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [1] but got: [1,1]"),
    ([[True]],
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "true Type: True is not of expected type: float"),
])
def test_ragged_and_type_errors(handler: HttpRestApiHandler, instances: list,
                                message: str) -> None:
    assert error(handler, "POST", PREDICT, json.dumps({"instances": instances})) == (400,
                                                                                      message)


def test_ragged_columnar(handler: HttpRestApiHandler) -> None:
    status, message = error(handler, "POST", PREDICT, '{"inputs": [[1.0], [1.0, 2.0]]}')
    assert status == 400
    assert message.startswith("Encountered list at unexpected size: 2 at level: 1 expected "
                              "size: 1")


# --- §2.3 response encoding ---------------------------------------------------------------

@pytest.mark.parametrize(("x", "text"), [
    (2.0, "3.0"), (17999996.0, "9e+06"), (1999994.0, "999999.0"), (-4.0, "0.0"),
    (1111111.0, "555557.5"), (1e30, "5e+29"),
])
def test_float_text(handler: HttpRestApiHandler, x: float, text: str) -> None:
    response = call(handler, "POST", PREDICT, json.dumps({"instances": [[x]]}))
    assert response.body.decode() == '{"predictions": [[' + text + "]]}"


def test_error_body_layout(handler: HttpRestApiHandler) -> None:
    response = call(handler, "POST", PREDICT, "")
    assert response.body == b'{\n    "error": "JSON Parse error: The document is empty"\n}'


# --- classify / regress ---------------------------------------------------------------------

def test_classify_and_regress_vectors(handler: HttpRestApiHandler) -> None:
    assert ok(handler, "/v1/models/hp2:regress",
              {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]}) == {
        "results": [2.5, 3.0]}
    assert ok(handler, "/v1/models/hp2:classify",
              {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == {
        "results": [[["", 3.0]]]}


def test_regress_missing_examples(handler: HttpRestApiHandler) -> None:
    assert error(handler, "POST", "/v1/models/hp2:regress", '{"context": {}}') == (
        400, "JSON Value: {\"context\":{}} When method is classify, key 'examples' is expected "
             "and was not found")
