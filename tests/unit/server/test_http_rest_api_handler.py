"""HttpRestApiHandler with an in-process ServerCore: routes, status codes and TF Serving's texts."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import pytest

from tfsfast.codecs import json_codec
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, HttpServerLimits
from tfsfast.server.http.http_rest_api_handler import (
    CORS_HEADERS,
    HttpRestApiHandler,
    RestApiOptions,
)
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.testing.fake_transport import FakeTransport
from tfsfast.testing.test_util import implementations


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    import shutil

    base = tmp_path_factory.mktemp("handler") / "m"
    shutil.copytree(exported_models["tf1"], base / "3")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=mc.single_model_config("m", str(base)),
        file_system_poll_wait_seconds=0, max_num_load_retries=0))
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


def test_predict_and_trailing_query_string(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    response = call(handler, "POST", "/v1/models/m/versions/3:predict?x=1",
                    b'{"instances": [[1.0], [2.0]]}')
    assert (response.status, json.loads(response.body)) == (200, {"predictions": [[2.5], [3.0]]})


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/v1/models/x:predict", b"{}", 404, "Servable not found for request: Latest(x)"),
    ("POST", "/v1/models/m/versions/4:predict", b"{}", 404,
     "Servable not found for request: Specific(m, 4)"),
    ("POST", "/v1/models/m:predict", b"", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/m:predict", b"[1]", 400, "JSON Value: [1] Is not object"),
    ("POST", "/v1/models/m:predict", b'{"instances": [{"y": [1.0]}]}', 400,
     "Failed to process element: 0 key: y of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "object: does not have named input: y"),
    ("POST", "/v1/models/m:predict", b'{"instances": [["a"]]}', 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "\"a\" Type: String is not of expected type: float"),
    ("POST", "/v1/models/m:PREDICT", b"{}", 400, "Malformed request: POST /v1/models/m:PREDICT"),
    ("POST", "/v1/models/m/metadata", b"{}", 400, "Malformed request: POST /v1/models/m/metadata"),
    ("DELETE", "/v1/models/m", b"", 400, "Malformed request: DELETE /v1/models/m"),
    ("GET", "/v1/models/m/versions/HELLO", b"", 400,
     "Malformed request: GET /v1/models/m/versions/HELLO"),
    ("GET", "/v1/models/m/versions/99999999999999999999", b"", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("GET", "/v1/models/m/labels/a/versions/3", b"", 400,
     "Malformed request: GET /v1/models/m/labels/a/versions/3"),
])
def test_errors(core: ServerCore, method: str, path: str,
                body: bytes, status: int, message: str) -> None:
    response = call(HttpRestApiHandler(core), method, path, body)
    assert response.status == status
    assert response.content_type == b"application/json"
    assert json.loads(response.body) == {"error": message}


def test_status_label_is_ignored_and_names_are_percent_decoded(
        core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    plain = call(handler, "GET", "/v1/models/m")
    assert call(handler, "GET", "/v1/models/%6D/labels/whatever").body == plain.body
    assert json.loads(plain.body)["model_version_status"][0]["version"] == "3"


def test_metadata_shape(core: ServerCore) -> None:
    body = json.loads(call(HttpRestApiHandler(core), "GET", "/v1/models/m/metadata").body)
    assert body["model_spec"] == {"name": "m", "signature_name": "", "version": "3"}
    x = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
    assert x == {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                               {"size": "1", "name": ""}],
                                                       "unknown_rank": False},
                 "name": "x:0"}


def test_cors_headers_and_preflight(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core, RestApiOptions(enable_cors_support=True))
    response = call(handler, "GET", "/v1/models/m")
    assert (b"Access-Control-Allow-Origin", b"*") in response.headers
    ok = call(handler, "OPTIONS", "/v1/models/m:predict", headers={b"origin": b"https://a.b"})
    assert (ok.status, ok.body, ok.content_type) == (200, b"", None)
    bad = call(handler, "OPTIONS", "/v1/models/m:predict")
    assert bad.status == 400
    plain = HttpRestApiHandler(core)
    assert call(plain, "GET", "/v1/models/m").headers is None


def test_gzip_body(core: ServerCore) -> None:
    import gzip

    handler = HttpRestApiHandler(core, RestApiOptions(max_decompressed_body_bytes=100))
    body = gzip.compress(b'{"instances": [[2.0]]}')
    ok = call(handler, "POST", "/v1/models/m:predict", body, {b"content-encoding": b"gzip"})
    assert json.loads(ok.body) == {"predictions": [[3.0]]}
    bomb = gzip.compress(b'{"instances": [' + b"[2.0]," * 1000 + b"[2.0]]}")
    too_big = call(handler, "POST", "/v1/models/m:predict", bomb, {b"content-encoding": b"gzip"})
    assert (too_big.status, json.loads(too_big.body)) == (413, {
        "error": "Decompressed request body exceeds the maximum of 100 bytes "
                 "(flag --rest_api_max_body_bytes)"})
    # RFC 1952: a stream of several members is their concatenation.
    members = gzip.compress(b'{"instances": ') + gzip.compress(b"[[2.0]]}")
    ok = call(handler, "POST", "/v1/models/m:predict", members, {b"content-encoding": b"gzip"})
    assert (ok.status, json.loads(ok.body)) == (200, {"predictions": [[3.0]]})
    # Each member counts toward the limit.
    over = gzip.compress(b" " * 60) + gzip.compress(b" " * 60)
    assert call(handler, "POST", "/v1/models/m:predict", over,
                {b"content-encoding": b"gzip"}).status == 413
    # Zero padding after the last member is allowed; other bytes are not another member.
    padded = call(handler, "POST", "/v1/models/m:predict", body + b"\0" * 8,
                  {b"content-encoding": b"gzip"})
    assert (padded.status, json.loads(padded.body)) == (200, {"predictions": [[3.0]]})
    trailing = call(handler, "POST", "/v1/models/m:predict", body + b"junk",
                    {b"content-encoding": b"gzip"})
    assert (trailing.status, json.loads(trailing.body)) == (400, {
        "error": "Failed to decompress gzip body: Error -3 while decompressing data: incorrect "
                 "header check"})
    # A cut stream is an error of its own, not a shorter body.
    cut = call(handler, "POST", "/v1/models/m:predict", body[:-9], {b"content-encoding": b"gzip"})
    assert (cut.status, json.loads(cut.body)) == (400, {
        "error": f"Failed to decompress gzip body: the gzip stream is truncated "
                 f"({len(body) - 9} bytes)"})


def test_classify_and_regress(core: ServerCore) -> None:
    handler = HttpRestApiHandler(core)
    body = b'{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}'
    response = call(handler, "POST", "/v1/models/m:regress", body)
    assert (response.status, json.loads(response.body)) == (200, {"results": [3.0, 4.0]})
    body = b'{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}'
    response = call(handler, "POST", "/v1/models/m/versions/3:classify", body)
    assert (response.status, json.loads(response.body)) == (200, {"results": [[["", 3.0]]]})
    body = b'{"signature_name": "regress_x_to_y", "context": {"x": 5.0}, "examples": [{}]}'
    response = call(handler, "POST", "/v1/models/m:regress", body)
    assert json.loads(response.body) == {"results": [4.5]}


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/v1/models/m:regress", b'{"signature_name": "nope", "examples": [{}]}', 400,
     "No signature was found with the name: nope"),
    ("/v1/models/m:classify", b'{"examples": [{"x": 2.0}]}', 400, None),
    ("/v1/models/m:regress", b'{"examples": []}', 400,
     "JSON Value: {\"examples\":[]} 'examples' value is an empty array"),
    ("/v1/models/x:regress", b'{"examples": [{}]}', 404,
     "Servable not found for request: Latest(x)"),
])
def test_classify_regress_errors(core: ServerCore, path: str, body: bytes, status: int,
                                 message: str | None) -> None:
    response = call(HttpRestApiHandler(core), "POST", path, body)
    assert response.status == status
    error = json.loads(response.body)["error"]
    if message is not None:
        assert error == message


def test_msgpack_predict_tensor_maps_and_plain_lists(core: ServerCore) -> None:
    import msgpack
    import numpy as np

    handler = HttpRestApiHandler(core)
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    body = msgpack.packb({"instances": {"dtype": "float32", "shape": [3, 1],
                                        "data": x.tobytes()}})
    response = call(handler, "POST", "/v1/models/m:predict", body,
                    {b"content-type": b"application/msgpack"})
    assert response.status == 200 and response.content_type == b"application/msgpack"
    y = msgpack.unpackb(response.body)["predictions"]
    assert (y["dtype"], y["shape"]) == ("float32", [3, 1])
    assert np.frombuffer(y["data"], np.float32).tolist() == [2.5, 3.0, 4.5]
    # Plain msgpack lists, answered as JSON because Accept asks for it.
    body = msgpack.packb({"inputs": [[2.0]]})
    response = call(handler, "POST", "/v1/models/m:predict", body,
                    {b"content-type": b"application/msgpack", b"accept": b"application/json"})
    assert (response.content_type, json.loads(response.body)) == (b"application/json",
                                                                  {"outputs": [[3.0]]})
    # A JSON request may ask for a msgpack answer.
    response = call(handler, "POST", "/v1/models/m:predict", b'{"instances": [[2.0]]}',
                    {b"accept": b"application/msgpack"})
    y = msgpack.unpackb(response.body)["predictions"]
    assert np.frombuffer(y["data"], np.float32).tolist() == [3.0]


def test_msgpack_errors_are_msgpack(core: ServerCore) -> None:
    import msgpack

    handler = HttpRestApiHandler(core)
    response = call(handler, "POST", "/v1/models/m:predict", b"\xc1",
                    {b"content-type": b"application/msgpack"})
    assert response.status == 400 and response.content_type == b"application/msgpack"
    assert "msgpack" in msgpack.unpackb(response.body)["error"]
    response = call(handler, "POST", "/v1/models/none:predict", msgpack.packb({"inputs": [1]}),
                    {b"content-type": b"application/msgpack"})
    assert (response.status, msgpack.unpackb(response.body)) == (
        404, {"error": "Servable not found for request: Latest(none)"})


def test_msgpack_classify_and_regress(core: ServerCore) -> None:
    import msgpack

    handler = HttpRestApiHandler(core)
    headers = {b"content-type": b"application/msgpack"}
    body = msgpack.packb({"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    response = call(handler, "POST", "/v1/models/m:regress", body, headers)
    assert msgpack.unpackb(response.body) == {"results": [3.0]}
    body = msgpack.packb({"signature_name": "classify_x_to_y", "examples": [{"x": 4.0}]})
    response = call(handler, "POST", "/v1/models/m:classify", body, headers)
    assert msgpack.unpackb(response.body) == {"results": [[["", 4.0]]]}
    body = msgpack.packb({"signature_name": "regress_x_to_y", "examples": []})
    response = call(handler, "POST", "/v1/models/m:regress", body, headers)
    assert response.status == 400
    assert "'examples' value is an empty array" in msgpack.unpackb(response.body)["error"]


# --- V2 health routes -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/v2/health/live", "/v2/health/ready", "/v2/models/m/ready", "/v2/models/m/versions/3/ready",
    "/v2/models/%6D/ready",  # the name is percent-decoded
    "/v2/health/ready?verbose=1",  # the query is ignored, as on /v1
])
def test_v2_health_true_is_200_with_an_empty_body(core: ServerCore, path: str) -> None:
    response = call(HttpRestApiHandler(core), "GET", path)
    assert (response.status, response.body, response.content_type, response.headers) == (
        200, b"", None, None)


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/v2/models/x/ready", 404, "Model with name x does not exist."),
    ("/v2/models/x/versions/3/ready", 404, "Model with name x does not exist."),
    ("/v2/models/m/versions/4/ready", 404, "Could not find version 4 of model m"),
    ("/v2/models/m/versions/99999999999999999999/ready", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
])
def test_v2_model_ready_errors(core: ServerCore, path: str, status: int, message: str) -> None:
    response = call(HttpRestApiHandler(core), "GET", path)
    assert (response.status, response.content_type) == (status, b"application/json")
    assert json.loads(response.body) == {"error": message}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v2/health/live"), ("PUT", "/v2/health/ready"), ("DELETE", "/v2/models/m/ready"),
    ("HEAD", "/v2/models/m/versions/3/ready"), ("POST", "/v2/models/x/ready"),
])
def test_v2_health_other_methods_are_malformed_requests(core: ServerCore, method: str,
                                                        path: str) -> None:
    response = call(HttpRestApiHandler(core), method, path)
    assert (response.status, json.loads(response.body)) == (
        400, {"error": f"Malformed request: {method} {path}"})


@pytest.mark.parametrize("path", [
    "/v2/", "/v2/health", "/v2/health/LIVE", "/V2/health/live", "/v2/health/live/",
    "/v2/models//ready", "/v2/models/m/versions/x/ready", "/v2/models/m/versions//ready",
    "/v2/models/a/b/ready",
])
def test_other_v2_paths_stay_a_plain_404(core: ServerCore, path: str) -> None:
    # /v2, /v2/models/<m> and /v2/models/<m>/infer are the protocol's other routes
    # (tests/unit/v2/test_rest.py).
    for method in ("GET", "POST"):
        response = call(HttpRestApiHandler(core), method, path)
        assert (response.status, response.content_type) == (404, b"text/html")
        assert b"404 Not Found" in response.body


def test_v2_health_while_draining(core: ServerCore) -> None:
    health = ServerHealth(core)
    handler = HttpRestApiHandler(core, health=health)
    assert call(handler, "GET", "/v2/health/ready").status == 200
    health.start_draining()
    answers = {path: (r.status, r.body) for path in (
        "/v2/health/live", "/v2/health/ready", "/v2/models/m/ready",
        "/v2/models/m/versions/3/ready") for r in [call(handler, "GET", path)]}
    assert answers == {"/v2/health/live": (200, b""), "/v2/health/ready": (503, b""),
                       "/v2/models/m/ready": (503, b""),
                       "/v2/models/m/versions/3/ready": (503, b"")}
    unknown = call(handler, "GET", "/v2/models/x/ready")
    assert (unknown.status, json.loads(unknown.body)) == (
        404, {"error": "Model with name x does not exist."})
    # TF Serving's API is unaffected by readiness: it serves until the listener closes.
    predict = call(handler, "POST", "/v1/models/m:predict", b'{"instances": [[2.0]]}')
    assert (predict.status, json.loads(predict.body)) == (200, {"predictions": [[3.0]]})


def test_v2_health_cors(core: ServerCore) -> None:
    health = ServerHealth(core)
    handler = HttpRestApiHandler(core, RestApiOptions(enable_cors_support=True), health)
    ready = call(handler, "GET", "/v2/health/ready")
    assert (ready.status, ready.headers) == (200, CORS_HEADERS)
    preflight = call(handler, "OPTIONS", "/v2/health/ready", headers={b"origin": b"https://a.b"})
    assert (preflight.status, preflight.body, preflight.headers) == (200, b"", CORS_HEADERS)
    assert call(handler, "OPTIONS", "/v2/health/ready").status == 400
    health.start_draining()
    not_ready = call(handler, "GET", "/v2/health/ready")
    assert (not_ready.status, not_ready.headers) == (503, CORS_HEADERS)
    unknown = call(handler, "GET", "/v2/models/x/ready")
    assert (unknown.status, unknown.headers) == (404, CORS_HEADERS)


PROTOCOLS = implementations("tfsfast.server.http._http_protocol",
                            "tfsfast.server.http._http_protocol_py")
FAST_PATHS = implementations("tfsfast.server.http._rest_fast_path",
                             "tfsfast.server.http._rest_fast_path_py")


@pytest.mark.parametrize("fast_impl", FAST_PATHS)
@pytest.mark.parametrize("protocol_impl", PROTOCOLS)
def test_v2_health_over_a_connection(core: ServerCore, protocol_impl: str,
                                     fast_impl: str) -> None:
    """The bytes on the wire, through each HttpProtocol with each REST fast path in front: the
    fast path leaves GETs to the handler."""
    health = ServerHealth(core)
    options = RestApiOptions()
    handler = HttpRestApiHandler(core, options, health)
    fast = rest_fast_path.for_core(core, options, importlib.import_module(fast_impl))
    protocol = importlib.import_module(protocol_impl).HttpProtocol(
        handler, HttpServerLimits(), handler.error_response, None, fast)
    transport = FakeTransport()
    protocol.connection_made(transport)

    def exchange(request: bytes) -> bytes:
        del transport.data[:]
        protocol.data_received(request)
        return bytes(transport.data)

    ready = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    assert exchange(ready) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    health.start_draining()
    assert exchange(ready) == b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    assert exchange(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    unknown = exchange(b"GET /v2/models/x/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    error = json_codec.format_error("Model with name x does not exist.")
    assert unknown == (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(error), error))
    assert transport.closed


# --- what the connection answers itself, in the request's format ----------------------------


def split_response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, body = bytes(data).split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert int(headers[b"Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


def error_of(headers: dict[bytes, bytes], body: bytes) -> str:
    import msgpack

    if headers[b"Content-Type"] == b"application/msgpack":
        return msgpack.unpackb(body)["error"]
    assert headers[b"Content-Type"] == b"application/json"
    return json.loads(body)["error"]


@pytest.mark.parametrize(("extra", "content_type"), [
    (b"", b"application/json"),
    (b"Content-Type: application/msgpack\r\n", b"application/msgpack"),
    (b"Accept: application/msgpack\r\n", b"application/msgpack"),
    (b"Content-Type: application/msgpack\r\nAccept: application/json\r\n", b"application/json"),
])
@pytest.mark.parametrize("framing", [
    b"Content-Length: 101\r\n\r\n",  # refused from the header
    b"Transfer-Encoding: chunked\r\n\r\n65\r\n" + b"x" * 101 + b"\r\n",  # from the body
])
@pytest.mark.parametrize("protocol_impl", PROTOCOLS)
def test_body_over_the_limit_is_answered_in_the_requests_format(
        core: ServerCore, protocol_impl: str, framing: bytes, extra: bytes,
        content_type: bytes) -> None:
    handler = HttpRestApiHandler(core, RestApiOptions(enable_cors_support=True))
    protocol = importlib.import_module(protocol_impl).HttpProtocol(
        handler, HttpServerLimits(max_body_bytes=100), handler.error_response)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n" + extra
                           + framing)
    status, headers, body = split_response(transport.data)
    assert (status, headers[b"Content-Type"], headers[b"Access-Control-Allow-Origin"]) == (
        413, content_type, b"*")
    assert error_of(headers, body) == (
        "Request body exceeds the maximum of 100 bytes (flag --rest_api_max_body_bytes)")
    assert transport.closed


@pytest.mark.parametrize("awaited", [False, True])
@pytest.mark.parametrize("protocol_impl", PROTOCOLS)
def test_a_handler_failure_is_a_500_in_the_requests_format(
        core: ServerCore, protocol_impl: str, awaited: bool) -> None:
    """A bug (an exception out of the handler, at once or from its awaitable) is the one thing
    still answered 500, and in the request's format too; the connection keeps serving."""
    import msgpack

    rest = HttpRestApiHandler(core)

    async def failing() -> HttpResponse:
        raise RuntimeError("a bug")

    def handler(request: HttpRequest):
        if request.path.endswith(b"/bug"):
            if awaited:
                return failing()
            raise RuntimeError("a bug")
        return rest(request)

    async def exchange() -> list[bytes]:
        protocol = importlib.import_module(protocol_impl).HttpProtocol(
            handler, HttpServerLimits(), rest.error_response)
        transport = FakeTransport()
        protocol.connection_made(transport)
        answers = []
        for path, body in ((b"/v1/models/m/bug", b"\x80"),
                           (b"/v1/models/m:predict", msgpack.packb({"instances": [[2.0]]}))):
            del transport.data[:]
            protocol.data_received(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Type: application/msgpack\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            [answer] = await transport.wait_for(1)
            answers.append(answer)
        return answers

    failed, served = asyncio.run(exchange())
    status, headers, body = split_response(failed)
    assert (status, error_of(headers, body)) == (500, "Internal server error")
    assert headers[b"Content-Type"] == b"application/msgpack"
    status, headers, body = split_response(served)
    assert status == 200
    assert msgpack.unpackb(body)["predictions"]["shape"] == [1, 1]


def test_error_response_without_headers_is_json(core: ServerCore) -> None:
    response = HttpRestApiHandler(core).error_response(408, "slow", None)
    assert (response.status, response.content_type, json.loads(response.body)) == (
        408, b"application/json", {"error": "slow"})
