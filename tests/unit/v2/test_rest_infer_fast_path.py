"""RestInferFastPath (compiled and twin) against HttpRestApiHandler: the same bytes, or a fall
back.

Every answer the fast path gives is compared byte for byte with what the handler plus
``encode_response`` send for the same V2 infer; every request it declines must be one the
handler then answers. Runs are forced inline (a ``RunCostPolicy`` without a limit) once a
signature has a measured cost, so which path answers does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.servables.saved_model_bundle_factory import SessionBundleConfig
from tfsfast.server import model_config as mc
from tfsfast.server.http import rest_fast_path
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler, RestApiOptions
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.test_util import implementations
from tfsfast.util.run_cost import RunCostPolicy

IMPLS = implementations("tfsfast.server.v2._rest_infer_fast_path",
                        "tfsfast.server.v2._rest_infer_fast_path_py")
JSON = {b"content-type": b"application/json"}
HP2 = b'{"inputs":[{"name":"x","shape":[3,1],"datatype":"FP32","data":[1,2,5]}]}'


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The module whose ``RestInferFastPath`` is under test."""
    return importlib.import_module(request.param)


def _export_typed(export_dir: str) -> None:
    """A default signature of int64, int32 and float64 inputs: ``sum`` (float64) of all three,
    ``i32`` (int32) echoed."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        i64 = v1.placeholder(tf.int64, shape=[None], name="i64")
        i32 = v1.placeholder(tf.int32, shape=[None], name="i32")
        f64 = v1.placeholder(tf.float64, shape=[None], name="f64")
        total = tf.add_n([tf.cast(i64, tf.float64), tf.cast(i32, tf.float64), f64], name="sum")
        echo = tf.identity(i32, name="echo")
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            {"i64": info(i64), "i32": info(i32), "f64": info(f64)},
            {"sum": info(total), "i32": info(echo)}, "tensorflow/serving/predict")
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
                "serving_default": signature})
            builder.save()


def _export_mixed(export_dir: str) -> None:
    """A default signature of one float32 input and outputs of every kind the JSON answer
    writes: as they are (bool, int8, uint64) and converted or rendered (float16, bfloat16,
    uint16, strings)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        outputs = {
            "flag": tf.greater(x, 0.0), "i8": tf.cast(x, tf.int8), "u64": tf.cast(x, tf.uint64),
            "half": tf.cast(x, tf.float16), "bf16": tf.cast(x, tf.bfloat16),
            "u16": tf.cast(x, tf.uint16), "text": tf.strings.as_string(x),
        }
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            {"x": info(x)}, {alias: info(t) for alias, t in outputs.items()},
            "tensorflow/serving/predict")
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
                "serving_default": signature})
            builder.save()


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory,
         exported_models: dict[str, Path]) -> Iterator[ServerCore]:
    """half_plus_two ("m", version 3), the typed model ("typed") and the mixed one
    ("mixed")."""
    root = tmp_path_factory.mktemp("rest_infer_fast_path")
    shutil.copytree(exported_models["tf1"], root / "m" / "3")
    _export_typed(str(root / "typed" / "1"))
    _export_mixed(str(root / "mixed" / "1"))
    config = mc.parse_model_server_config("model_config_list {" + "".join(
        f' config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}'
        for name in ("m", "typed", "mixed")) + " }")
    serving = ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=0, max_num_load_retries=0,
        session_bundle_config=SessionBundleConfig(run_cost_policy=RunCostPolicy(float("inf")))))
    yield serving
    serving.stop()


def handler_bytes(handler: HttpRestApiHandler, path: bytes, body: bytes,
                  headers: dict[bytes, bytes] = JSON, keep_alive: bool = True) -> bytes:
    """What the general path writes for this request."""
    result = handler(HttpRequest("POST", path, headers, body, keep_alive))
    if not isinstance(result, HttpResponse):
        async def wait() -> HttpResponse:
            return await result

        result = asyncio.run(wait())
    return encode_response(result, keep_alive)


TYPED = json.dumps({"inputs": [
    {"name": "i64", "shape": [2], "datatype": "INT64", "data": [-9007199254740993, 7]},
    {"name": "i32", "shape": [2], "datatype": "INT32", "data": [2147483647, -2147483648]},
    {"name": "f64", "shape": [2], "datatype": "FP64", "data": [0.1, 1e-310]},
]}).encode()


MIXED = b'{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[-1.5,0,2.25,300]}]}'
# A request of each signature, so that the signatures' costs are measured.
WARM = ((b"/v2/models/m/infer", HP2), (b"/v2/models/typed/infer", TYPED),
        (b"/v2/models/mixed/infer", MIXED))


def both(core: ServerCore, impl: Any, path: bytes, body: bytes,
         keep_alive: bool = True, options: RestApiOptions | None = None
         ) -> tuple[bytes | None, bytes]:
    options = options or RestApiOptions()
    handler = HttpRestApiHandler(core, options)
    for warm_path, warm_body in WARM:
        handler_bytes(handler, warm_path, warm_body)  # the signatures' costs are measured
    fast = impl.RestInferFastPath(core.manager.handle_table.find, options)
    return fast.answer(path, body, keep_alive), handler_bytes(handler, path, body,
                                                              keep_alive=keep_alive)


@pytest.mark.parametrize(("path", "body"), [
    (b"/v2/models/m/infer", HP2),
    (b"/v2/models/m/versions/3/infer", HP2),
    (b"/v2/models/m/versions/003/infer", HP2),
    (b"/v2/models/m/infer", b' {\n "id" : "r-1" , "inputs" : [ { "data" : [ 1.5 , -2 , 3e2 ] ,'
                            b' "datatype" : "FP32" , "shape" : [ 3 , 1 ] , "name" : "x" } ] } '),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32",'
                            b'"data":[0.1,1e-7,3.4028234e38]}],"outputs":[{"name":"y"}]}'),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP32",'
                            b'"data":[-0,-0.0]}]}'),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","shape":[0,1],"datatype":"FP32",'
                            b'"data":[]}]}'),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP32",'
                            b'"data":[16777217,1.0000000596046448]}]}'),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","shape":[8],"datatype":"FP32","data":['
                            b'1e-46,-1.17549435e-38,0.30000000000000004,3.4028234663852886e38,'
                            b'123456789012345678901,18446744073709551615,-9223372036854775808,'
                            b'1E+2]}],"id":"a-b_c.d/e:f"}'),
    (b"/v2/models/typed/infer", TYPED),
    (b"/v2/models/typed/infer", TYPED.replace(b'"inputs"', b'"outputs": [{"name": "i32"}, '
                                                           b'{"name": "sum"}], "inputs"')),
    (b"/v2/models/typed/infer", TYPED.replace(b", 7]", b", -0]")
     .replace(b"[0.1, 1e-310]", b"[-0, 9223372036854775807]")),
    (b"/v2/models/typed/infer", TYPED.replace(b"[0.1, 1e-310]",
                                              b"[1.7976931348623157e308, 4.9e-324]")),
    (b"/v2/models/mixed/infer", MIXED),
    (b"/v2/models/mixed/infer", MIXED[:-1] + b',"outputs":[{"name":"text"},{"name":"u64"},'
                                             b'{"name":"half"},{"name":"flag"}]}'),
    (b"/v2/models/mixed/infer", MIXED.replace(b"[4]", b"[0]").replace(b"-1.5,0,2.25,300", b"")),
], ids=["plain", "version", "version-zeros", "spacing-id-order", "outputs-extremes",
        "negative-zero", "empty", "rounding", "float-texts", "typed", "typed-outputs",
        "typed-zeros-extremes", "typed-fp64-extremes", "mixed", "mixed-outputs",
        "mixed-empty"])
def test_answers_match_the_handler(impl: Any, core: ServerCore, path: bytes,
                                   body: bytes) -> None:
    fast, general = both(core, impl, path, body)
    assert general.startswith(b"HTTP/1.1 200 OK\r\n"), general
    assert fast == general


def test_connection_close_matches(impl: Any, core: ServerCore) -> None:
    fast, general = both(core, impl, b"/v2/models/m/infer", HP2, keep_alive=False)
    assert fast is not None and fast == general and b"Connection: close\r\n" in fast


def test_cors_headers_match(impl: Any, core: ServerCore) -> None:
    fast, general = both(core, impl, b"/v2/models/m/infer", HP2,
                         options=RestApiOptions(enable_cors_support=True))
    assert fast is not None and fast == general and b"Access-Control-Allow-Origin" in fast


def _input(**changes: Any) -> bytes:
    tensor: dict[str, Any] = {"name": "x", "shape": [3, 1], "datatype": "FP32",
                              "data": [1, 2, 5]}
    tensor.update(changes)
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(("path", "body"), [
    (b"/v2/models/m/infer?x=1", HP2),
    (b"/v2/models/%6D/infer", HP2),
    (b"/v2/models/nope/infer", HP2),
    (b"/v2/models/m/versions/4/infer", HP2),
    (b"/v2/models/m/versions/99999999999999999999/infer", HP2),
    (b"/v2/models/m/infer", _input(parameters={"binary_data_size": 12})),
    (b"/v2/models/m/infer", HP2[:-1] + b', "parameters": {"signature_name": ""}}'),
    (b"/v2/models/m/infer", _input(data=[[1], [2], [5]])),
    (b"/v2/models/m/infer", _input(data=[1, 2])),
    (b"/v2/models/m/infer", _input(datatype="FP64")),
    (b"/v2/models/m/infer", _input(datatype="BYTES", data=["a", "b", "c"])),
    (b"/v2/models/m/infer", _input(name="z")),
    (b"/v2/models/m/infer", _input(shape=[-3, 1])),
    (b"/v2/models/m/infer", _input(shape=[3] + [1] * 32)),
    (b"/v2/models/m/infer", _input(data=[1, 2, 1e400])),
    (b"/v2/models/m/infer", _input(data=[1, 2, 1e39])),
    (b"/v2/models/m/infer", HP2.replace(b"[1,2,5]", b"[1,2,NaN]")),
    (b"/v2/models/m/infer", HP2.replace(b"[1,2,5]", b"[1,2,05]")),
    (b"/v2/models/m/infer", HP2.replace(b"[1,2,5]", b"[1,2,true]")),
    (b"/v2/models/m/infer", HP2.replace(b'"x"', b'"\\u0078"')),
    (b"/v2/models/m/infer", HP2.replace(b'"x"', '"\u00e9"'.encode())),
    (b"/v2/models/m/infer", HP2 + b" trailing"),
    (b"/v2/models/m/infer", HP2[:-1] + b', "inputs": []}'),
    (b"/v2/models/m/infer", HP2[:-1] + b', "outputs": []}'),
    (b"/v2/models/m/infer", HP2[:-1] + b', "outputs": [{"name": "q"}]}'),
    (b"/v2/models/m/infer", HP2[:-1] + b', "outputs": [{"name": "y"}, {"name": "y"}]}'),
    (b"/v2/models/m/infer", HP2[:-1] + b', "id": 7}'),
    (b"/v2/models/m/infer", b"{}"),
    (b"/v2/models/m/infer", b""),
    (b"/v2/models/m/infer", b'{"inputs":[{"name":"x","name":"x","shape":[3,1],'
                            b'"datatype":"FP32","data":[1,2,5]}]}'),
    (b"/v2/models/m/infer", _input(data=[1.5] * 17000)),
    (b"/v2/models/typed/infer", TYPED.replace(b"2147483647", b"2147483648")),
    (b"/v2/models/typed/infer", TYPED.replace(b"-9007199254740993", b"9223372036854775808")),
    (b"/v2/models/typed/infer", TYPED.replace(b", 7]", b", 7.0]")),
    (b"/v2/models/typed/infer", TYPED.replace(b'{"name": "f64"', b'{"name": "i32"')),
], ids=["query", "percent", "unknown-model", "unknown-version", "huge-version",
        "input-parameters", "request-parameters", "nested-data", "count", "datatype", "bytes",
        "unknown-input", "negative-dim", "rank", "too-big", "fp32-overflow", "nan",
        "leading-zero", "bool", "escape", "non-ascii", "trailing", "inputs-twice",
        "no-outputs", "unknown-output", "output-twice", "numeric-id", "empty-object",
        "empty-body", "key-twice", "large-body", "int32-range", "int64-range", "float-for-int",
        "input-twice"])
def test_other_requests_are_the_handlers(impl: Any, core: ServerCore, path: bytes,
                                         body: bytes) -> None:
    fast, general = both(core, impl, path, body)
    assert fast is None, general


@pytest.mark.parametrize(("path", "request_body"), [
    (b"/v2/models/typed/infer", TYPED),
    (b"/v2/models/m/infer", HP2[:-1] + b',"outputs":[{"name":"y"}],"id":"7"}'),
], ids=["typed", "outputs-id"])
def test_random_corruptions_are_declined_or_answered_alike(impl: Any, core: ServerCore,
                                                          path: bytes,
                                                          request_body: bytes) -> None:
    options = RestApiOptions()
    handler = HttpRestApiHandler(core, options)
    for warm_path, warm_body in WARM:
        handler_bytes(handler, warm_path, warm_body)
    fast = impl.RestInferFastPath(core.manager.handle_table.find, options)
    rng = random.Random(5)
    taken = 0
    for _ in range(500):
        body = bytearray(request_body)
        for _ in range(rng.randint(1, 2)):
            body[rng.randrange(len(body))] = rng.choice(b'0123456789-.eE,[]{}":  x')
        answer = fast.answer(path, bytes(body), True)
        if answer is not None:
            taken += 1
            assert answer == handler_bytes(handler, path, bytes(body)), bytes(body)
    assert taken > 0


@pytest.mark.parametrize(("limits", "path", "body", "taken"), [
    # Integers longer than max_int_digits are doubles to the handler: an integer input's
    # values are then its to judge, a float input's are the same values.
    (CodecLimits(max_int_digits=5), b"/v2/models/typed/infer", TYPED, False),
    (CodecLimits(max_int_digits=5), b"/v2/models/m/infer",
     HP2.replace(b"[1,2,5]", b"[1234567,2,5]"), True),
    (CodecLimits(max_tensor_elements=2), b"/v2/models/m/infer", HP2, False),
    (CodecLimits(max_tensor_elements=3), b"/v2/models/m/infer", HP2, True),
    (CodecLimits(max_request_elements=5), b"/v2/models/typed/infer", TYPED, False),
    (CodecLimits(max_tensor_rank=1), b"/v2/models/m/infer", HP2, False),
], ids=["int-digits", "int-digits-float", "tensor-elements", "tensor-elements-at",
        "request-elements", "rank"])
def test_codec_limits_are_the_handlers(impl: Any, core: ServerCore, limits: CodecLimits,
                                       path: bytes, body: bytes, taken: bool) -> None:
    fast, general = both(core, impl, path, body, options=RestApiOptions(codec_limits=limits))
    if taken:
        assert fast == general and general.startswith(b"HTTP/1.1 200 OK\r\n")
    else:
        assert fast is None, general


def test_the_v1_fast_path_hands_v2_infers_over(core: ServerCore) -> None:
    """``RestFastPath`` offers a plain JSON POST that is not a /v1 predict to the V2 path, and
    declines a request with binary data, which the handler reads."""
    fast = rest_fast_path.for_core(core, RestApiOptions())
    handler = HttpRestApiHandler(core)
    handler_bytes(handler, b"/v2/models/m/infer", HP2)
    assert fast.answer("POST", b"/v2/models/m/infer", JSON, HP2, True) == handler_bytes(
        handler, b"/v2/models/m/infer", HP2)
    binary = {**JSON, b"inference-header-content-length": str(len(HP2)).encode()}
    assert fast.answer("POST", b"/v2/models/m/infer", binary, HP2, True) is None
