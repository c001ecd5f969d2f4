"""RestFastPath (compiled and twin) against HttpRestApiHandler: the same bytes, or a fall back.

Every answer the fast path gives is compared byte for byte with what the handler plus
``encode_response`` send for the same request; every request it declines must be one the handler
then answers. Runs are forced inline (a ``RunCostPolicy`` without a limit) once a signature has a
measured cost, so which path answers does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfsfast.core.servable_handle import ServableHandle, ServingEntry
from tfsfast.core.servable_id import ServableId
from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import PREDICT_METHOD_NAME, Signature, TensorInfo
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.server.http._rest_fast_path",
                        "tfsfast.server.http._rest_fast_path_py")
ROW = b'{"instances": [[1.0], [2.0], [5.0]]}'
JSON = {b"content-type": b"application/json"}


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``RestFastPath`` is under test."""
    return importlib.import_module(request.param)


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]) -> Path:
    base = tmp_path_factory.mktemp("fast_path") / "m"
    shutil.copytree(exported_models["tf1"], base / "3")
    return base


def serving_core(base: Path) -> ServerCore:
    """Model "m" at version 3 (labelled "stable"), whose signatures run inline once measured,
    however slow this machine is."""
    config = mc.parse_model_server_config(f"""
        model_config_list {{ config {{
          name: "m" base_path: "{base}" model_platform: "tensorflow"
          model_version_policy {{ specific {{ versions: 3 }} }}
          version_labels {{ key: "stable" value: 3 }}
        }} }}""")
    return ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0,
        allow_version_labels_for_unavailable_models=True,
        session_bundle_config=SessionBundleConfig(
            run_cost_policy=RunCostPolicy(float("inf")))))


@pytest.fixture(scope="module")
def core(model_base: Path):
    core = serving_core(model_base)
    yield core
    core.stop()


def handler_bytes(handler: HttpRestApiHandler, method: str, path: bytes,
                  headers: dict[bytes, bytes], body: bytes, keep_alive: bool = True) -> bytes:
    """What the general path writes for this request."""
    result = handler(HttpRequest(method, path, headers, body, keep_alive))
    if not isinstance(result, HttpResponse):
        async def wait() -> HttpResponse:
            return await result

        result = asyncio.run(wait())
    return encode_response(result, keep_alive)


def warm(core: ServerCore, body: bytes = ROW, path: bytes = b"/v1/models/m:predict") -> None:
    """One run through the handler, so the signature's run cost is measured (inline from then)."""
    handler_bytes(HttpRestApiHandler(core), "POST", path, JSON, body)


def fast_and_handler(impl: Any, core: ServerCore, method: str, path: bytes,
                     headers: dict[bytes, bytes], body: bytes, keep_alive: bool = True,
                     options: RestApiOptions | None = None) -> tuple[bytes | None, bytes]:
    fast = rest_fast_path.for_core(core, options or RestApiOptions(), impl)
    answer = fast.answer(method, path, headers, body, keep_alive)
    return answer, handler_bytes(HttpRestApiHandler(core, options), method, path, headers, body,
                                 keep_alive)


# --- answered by the fast path, byte for byte the handler's answer ---------------------------

@pytest.mark.parametrize(("path", "body"), [
    (b"/v1/models/m:predict", ROW),
    (b"/v1/models/m/versions/3:predict", ROW),
    (b"/v1/models/m/versions/003:predict", ROW),
    (b"/v1/models/m:predict", b'{"inputs": [[1.0], [2.0]]}'),
    (b"/v1/models/m:predict", b'{"inputs": {"x": [[1.0]]}}'),
    (b"/v1/models/m:predict", b'{"inputs": 1.0}'),
    (b"/v1/models/m:predict", b'{"instances": [{"x": [7.5]}]}'),
    (b"/v1/models/m:predict", b'{"signature_name": "serving_default", "instances": [[1.0]]}'),
    (b"/v1/models/m:predict", b'{"signature_name": "", "instances": [[0.1], [1e-7]]}'),
    (b"/v1/models/m:predict", b' {"instances":[[3.4028234e38]]} '),
])
def test_predict_answers_match_the_handler(impl: Any, core: ServerCore, path: bytes,
                                           body: bytes) -> None:
    warm(core)
    fast, general = fast_and_handler(impl, core, "POST", path, JSON, body)
    assert fast is not None
    assert fast == general
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("headers", [
    {},
    {b"content-type": b"application/json; charset=utf-8"},
    {b"content-type": b" Application/JSON "},
    {b"accept": b"*/*", b"content-type": b"application/json"},
    {b"accept": b"application/json", b"user-agent": b"curl/8", b"host": b"x"},
])
def test_plain_json_headers_are_taken(impl: Any, core: ServerCore,
                                      headers: dict[bytes, bytes]) -> None:
    warm(core)
    fast, general = fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", headers, ROW)
    assert fast is not None and fast == general


def test_connection_close_and_cors_headers_match(impl: Any, core: ServerCore) -> None:
    warm(core)
    fast, general = fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", JSON, ROW,
                                     keep_alive=False)
    assert fast is not None and fast == general and b"\r\nConnection: close\r\n" in fast
    cors = RestApiOptions(enable_cors_support=True)
    fast, general = fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", JSON, ROW,
                                     options=cors)
    assert fast is not None and fast == general
    assert b"\r\nAccess-Control-Allow-Origin: *\r\n" in fast


def example_body(*values: float | str) -> bytes:
    """A predict body feeding serialized tf.Examples (feature ``x``) to ``regress_x_to_y``;
    a str value is sent as the serialized bytes themselves (not an Example)."""
    import base64

    from tensorflow.core.example import example_pb2

    serialized = []
    for v in values:
        if isinstance(v, str):
            data = v.encode()
        else:
            example = example_pb2.Example()
            example.features.feature["x"].float_list.value.append(v)
            data = example.SerializeToString()
        serialized.append({"b64": base64.b64encode(data).decode()})
    return json.dumps({"signature_name": "regress_x_to_y",
                       "inputs": {"inputs": serialized}}).encode()


def test_an_error_from_the_run_is_answered_like_the_handler(impl: Any, core: ServerCore) -> None:
    warm(core, example_body(1.0))  # a good run: the signature's cost is measured
    good, general = fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", JSON,
                                     example_body(2.0, 4.0))
    assert good is not None and good == general
    # TensorFlow fails the run itself: answered here, as the handler answers it.
    body = example_body("not an example")
    fast, general = fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", JSON, body)
    assert fast is not None
    assert fast == general
    assert fast.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Could not parse example input" in fast


# --- handed to the handler ----------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "headers", "body"), [
    ("GET", b"/v1/models/m:predict", JSON, ROW),
    ("OPTIONS", b"/v1/models/m:predict", {b"origin": b"https://a.b"}, b""),
    ("POST", b"/v1/models/nope:predict", JSON, ROW),  # unknown model: 404
    ("POST", b"/v1/models/m/versions/4:predict", JSON, ROW),  # unknown version: 404
    ("POST", b"/v1/models/m/versions/99999999999999999999:predict", JSON, ROW),
    ("POST", b"/v1/models/m/labels/stable:predict", JSON, ROW),  # labels: the handler's
    ("POST", b"/v1/models/m/labels/nope:predict", JSON, ROW),
    ("POST", b"/v1/models/m:PREDICT", JSON, ROW),  # the handler's "Malformed request"
    ("POST", b"/v1/models/m:regress", JSON, b'{"examples": [{"x": 1.0}]}'),
    ("POST", b"/v1/models/m/metadata", JSON, b""),
    ("POST", b"/v1/models/m:predict", {b"content-encoding": b"gzip"}, gzip.compress(ROW)),
    ("POST", b"/v1/models/m:predict", {b"content-encoding": b"identity"}, ROW),
    ("POST", b"/v1/models/m:predict", {b"content-type": b"application/msgpack"}, ROW),
    ("POST", b"/v1/models/m:predict", {b"content-type": b"application/json; x=msgpack"}, ROW),
    ("POST", b"/v1/models/m:predict", {b"content-type": b"text/plain"}, ROW),
    ("POST", b"/v1/models/m:predict", {b"accept": b"application/msgpack"}, ROW),
    ("POST", b"/v1/models/m:predict", JSON, b""),
    ("POST", b"/v1/models/m:predict", JSON, b"not json"),
    ("POST", b"/v1/models/m:predict", JSON, b'{"instances": [["a"]]}'),
    ("POST", b"/v1/models/m:predict", JSON, b'{"instances": [{"y": [1.0]}]}'),
    ("POST", b"/v1/models/m:predict", JSON, b'{"signature_name": "nope", "instances": [[1]]}'),
    ("POST", b"/v1/models/m:predict", JSON, b'{"instances": [[1.0]], "inputs": [[1.0]]}'),
])
def test_unusual_requests_fall_back_to_the_handler(impl: Any, core: ServerCore, method: str,
                                                   path: bytes, headers: dict[bytes, bytes],
                                                   body: bytes) -> None:
    warm(core)
    fast, general = fast_and_handler(impl, core, method, path, headers, body)
    assert fast is None
    assert general.startswith(b"HTTP/1.1 ")  # the handler answers it (any status)


@pytest.mark.parametrize("path", [b"/v1/models/m:predict?x=1", b"/V1/MODELS/m:predict",
                                  b"/v1/models/%6D:predict", b"/v1/models/m/VERSIONS/3:predict"])
def test_every_spelling_of_a_predict_url_is_answered_as_the_handler_answers_it(
        impl: Any, core: ServerCore, path: bytes) -> None:
    # The route is the handler's parser: a query, any case, a percent-encoded name.
    warm(core)
    fast, general = fast_and_handler(impl, core, "POST", path, JSON, ROW)
    assert fast is not None
    assert fast == general
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")


def test_unmeasured_signature_falls_back_without_running(impl: Any, model_base: Path) -> None:
    fresh = serving_core(model_base)  # its signatures have never run
    try:
        fast, _ = fast_and_handler(impl, fresh, "POST", b"/v1/models/m:predict", JSON, ROW)
        assert fast is None
    finally:
        fresh.stop()


# --- a servable under the test's control -------------------------------------------------------

class FakeBundle:
    """A servable with one float signature ``x`` -> ``y`` whose run the test decides."""

    def __init__(self, run: Any, batching: bool = False,
                 method_name: str = PREDICT_METHOD_NAME) -> None:
        info = TensorInfo("x", "x:0", DataType.DT_FLOAT, (-1,))
        out = TensorInfo("y", "y:0", DataType.DT_FLOAT, (-1,))
        self.signatures = {"serving_default": Signature("serving_default", method_name,
                                                        {"x": info}, {"y": out})}
        self.batching_session = object() if batching else None
        self.runs = 0
        self._run = run

    def run_inline(self, key: str, inputs: dict[str, np.ndarray], output_aliases: Any,
                   timeout_in_ms: int, deadline: float | None) -> Any:
        self.runs += 1
        return self._run(inputs)

    async def run_async(self, key: str, inputs: dict[str, np.ndarray], output_aliases: Any,
                        timeout_in_ms: int, deadline: float | None) -> Any:
        self.runs += 1
        return {"y": inputs["x"] * 2}


class FakeCore:
    """What the handler and ``for_core`` use of a ServerCore, serving one FakeBundle as m/1."""

    def __init__(self, bundle: FakeBundle) -> None:
        self.entry = ServingEntry(ServableId("m", 1), bundle)
        self.manager = self
        self.handle_table = self

    def find(self, name: str, version: int | None, policy: int) -> ServingEntry | None:
        return self.entry if name == "m" and version in (None, 1) else None

    def get_servable_handle(self, name: str, version: int | None = None,
                            label: str | None = None) -> ServableHandle:
        if self.find(name, version, 1) is None:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        return ServableHandle(self.entry)


def both(impl: Any, bundle: FakeBundle, body: bytes = b'{"instances": [1.0, 2.0]}',
         options: RestApiOptions | None = None) -> tuple:
    core: Any = FakeCore(bundle)
    return fast_and_handler(impl, core, "POST", b"/v1/models/m:predict", JSON, body,
                            options=options)


def test_serving_error_from_the_run_is_answered_once(impl: Any) -> None:
    def fail(inputs: Any) -> Any:
        raise ServingError(Code.RESOURCE_EXHAUSTED, 'OOM "when" allocating\n')

    bundle = FakeBundle(fail)
    fast, general = both(impl, bundle)
    assert fast is not None and fast == general
    assert fast.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert bundle.runs == 2  # once by each path: the fast path did not hand over a failed run


def test_serving_error_from_formatting_the_outputs_is_answered(impl: Any) -> None:
    # Row format needs every output to share the batch size; this one has none.
    bundle = FakeBundle(lambda inputs: {"y": np.float32(1.0)})
    fast, general = both(impl, bundle)
    assert fast is not None and fast == general
    assert fast.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_other_exceptions_from_the_run_propagate_as_from_the_handler(impl: Any) -> None:
    def bug(inputs: Any) -> Any:
        raise RuntimeError("bug")

    bundle = FakeBundle(bug)
    core: Any = FakeCore(bundle)
    fast = rest_fast_path.for_core(core, RestApiOptions(), impl)
    with pytest.raises(RuntimeError, match="bug"):
        fast.answer("POST", b"/v1/models/m:predict", JSON, b'{"instances": [1.0]}', True)
    with pytest.raises(RuntimeError, match="bug"):
        handler_bytes(HttpRestApiHandler(core), "POST", b"/v1/models/m:predict", JSON,
                      b'{"instances": [1.0]}')
    assert bundle.runs == 2


def test_a_run_that_must_go_async_falls_back(impl: Any) -> None:
    bundle = FakeBundle(lambda inputs: None)
    fast, general = both(impl, bundle)
    assert fast is None
    assert json.loads(general.split(b"\r\n\r\n", 1)[1]) == {"predictions": [2.0, 4.0]}


def test_enforced_method_name_falls_back_before_the_run(impl: Any) -> None:
    bundle = FakeBundle(lambda inputs: {"y": inputs["x"]}, method_name="custom/method")
    fast, general = both(impl, bundle, options=RestApiOptions(enforce_signature_method_name=True))
    assert fast is None
    assert general.startswith(b"HTTP/1.1 500 ")
    assert b"Expected prediction signature method_name to be one of" in general
    assert bundle.runs == 0
    fast, general = both(impl, bundle)  # not enforced: answered
    assert fast is not None and fast == general


def test_a_batching_bundle_without_a_connection_is_never_run(impl: Any) -> None:
    bundle = FakeBundle(lambda inputs: {"y": inputs["x"]}, batching=True)
    core: Any = FakeCore(bundle)
    fast = rest_fast_path.for_core(core, RestApiOptions(), impl)
    assert fast.answer("POST", b"/v1/models/m:predict", JSON, b'{"instances": [1.0]}',
                       True) is None
    assert bundle.runs == 0


def test_a_servable_that_is_not_a_bundle_goes_to_the_handler(impl: Any) -> None:
    core: Any = FakeCore(FakeBundle(lambda inputs: {"y": inputs["x"]}))
    core.entry = ServingEntry(ServableId("m", 1), object())
    fast = rest_fast_path.for_core(core, RestApiOptions(), impl)
    assert fast.answer("POST", b"/v1/models/m:predict", JSON, b'{"instances": [1.0]}',
                       True) is None


def test_a_new_bundle_under_the_same_name_is_used(impl: Any) -> None:
    core: Any = FakeCore(FakeBundle(lambda inputs: {"y": inputs["x"] + 1}))
    fast = rest_fast_path.for_core(core, RestApiOptions(), impl)
    body = b'{"instances": [1.0]}'
    first = fast.answer("POST", b"/v1/models/m:predict", JSON, body, True)
    core.entry = ServingEntry(ServableId("m", 1), FakeBundle(lambda inputs: {"y": inputs["x"]}))
    second = fast.answer("POST", b"/v1/models/m:predict", JSON, body, True)
    assert first is not None and first.endswith(b'{"predictions": [2.0]}')
    assert second is not None and second.endswith(b'{"predictions": [1.0]}')


# --- the URL and header checks, compiled against the twin ----------------------------------

@pytest.mark.parametrize(("path", "expected"), [
    (b"/v1/models/m:predict", ("m", None)),
    (b"/v1/models/my-model_2.x:predict", ("my-model_2.x", None)),
    (b"/v1/models/m/versions/0:predict", ("m", 0)),
    (b"/v1/models/m/versions/123456789012345678:predict", ("m", 123456789012345678)),
    (b"/v1/models/m/versions/9223372036854775807:predict", ("m", 9223372036854775807)),
    (b"/v1/models/m/versions/9223372036854775808:predict", None),  # the handler's error
    (b"/v1/models/m/versions/:predict", None),
    (b"/v1/models/m/versions/1a:predict", None),
    (b"/v1/models/m/versions/1/x:predict", None),
    (b"/v1/models/m/labels/a:predict", None),
    (b"/v1/models/:predict", None),
    (b"/v1/models/m:predictx", None),
    (b"/v1/models/m:PREDICT", None),
    (b"/v1/models/m:classify", None),
    (b"/v1/models/a:b:predict", None),
    (b"/v1/models/m", None),
    (b"", None),
    # As the handler routes them: any case, a query, a percent-encoded name, any other byte.
    (b"/V1/Models/m/Versions/2:predict", ("m", 2)),
    (b"/v1/models/m:predict?x=1", ("m", None)),
    (b"/v1/models/a%2Fb%20c:predict", ("a/b c", None)),
    (b"/v1/models/m n:predict", ("m n", None)),
    (b"/v1/models/m\xe9:predict", ("m\xe9", None)),
    (b"/v1/models/m#:predict", ("m#", None)),
])
def test_route(impl: Any, path: bytes, expected: tuple[str, int | None] | None) -> None:
    assert impl.route(path) == expected


_PATH_BYTES = st.sampled_from([b"/", b":", b"m", b"M", b"0", b"3", b"9", b"%", b"%6D", b"?",
                               b"v1", b"models", b"versions", b"VERSIONS", b"labels", b"predict",
                               b" ", b"\xff", b"#"])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PATH_BYTES, max_size=10), st.booleans())
def test_any_url_gets_the_handlers_answer(impl: Any, core: ServerCore, parts: list[bytes],
                                          prefixed: bool) -> None:
    warm(core)
    path = (b"/v1/models/" if prefixed else b"") + b"".join(parts) + b":predict"
    fast, general = fast_and_handler(impl, core, "POST", path, JSON, ROW)
    assert fast is None or fast == general


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, True),
    ({b"content-type": b"application/json"}, True),
    ({b"content-type": b"\tapplication/JSON\t;charset=utf-8"}, True),
    ({b"content-type": b"application/jsonx"}, False),
    ({b"content-type": b"application/json-seq"}, False),
    ({b"content-type": b"application/msgpack"}, False),
    ({b"content-type": b"application/json; profile=MsgPack"}, False),
    ({b"content-type": b""}, False),
    ({b"content-encoding": b""}, False),
    ({b"accept": b"*/*"}, True),
    ({b"accept": b"application/json"}, True),
    ({b"accept": b"application/json, */*"}, False),
    ({b"accept": b"application/msgpack"}, False),
])
def test_plain_json(impl: Any, headers: dict[bytes, bytes], expected: bool) -> None:
    assert impl.plain_json(headers) is expected
