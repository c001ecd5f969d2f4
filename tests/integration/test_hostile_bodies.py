"""Hostile request bodies against a real server: each gets a 4xx with a clear message in the
request's format (gRPC: a client-error status, never INTERNAL or UNKNOWN), and the server answers
a normal request right after.

Every test runs against two servers: the compiled modules and their pure-Python twins
(``TFSFAST_NO_EXTENSIONS=1``), which must answer alike. Besides the known cases, bounded
property tests send arbitrary JSON, msgpack and bytes to every REST route and arbitrary bytes
and malformed requests to the PredictionService methods.
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.example import feature_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfsfast.servables.serialized_input import serialized_request_class
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/m:predict"
CLASSIFY = "/v1/models/m:classify"
REGRESS = "/v1/models/m:regress"
LIMIT = 1048576
CONFIGURATIONS = {"compiled": {}, "python": {"TFSFAST_NO_EXTENSIONS": "1"}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            exported_models: dict[str, Path]) -> Iterator[dict[str, ServerProcess]]:
    """Both configurations' servers, started and stopped side by side."""
    base = tmp_path_factory.mktemp("hostile") / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    running = {name: ServerProcess(["--model_name=m", f"--model_base_path={base}",
                                    f"--rest_api_max_body_bytes={LIMIT}"], env=env)
               for name, env in CONFIGURATIONS.items()}
    with ThreadPoolExecutor(len(running)) as pool:
        try:
            list(pool.map(ServerProcess.start, running.values()))
            yield running
        finally:
            list(pool.map(ServerProcess.stop, running.values()))


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def server(request: pytest.FixtureRequest, servers: dict[str, ServerProcess]) -> ServerProcess:
    return servers[request.param]


def still_serving(server: ServerProcess) -> None:
    assert server.json("POST", PREDICT, {"instances": [[2.0]]}) == (200, {"predictions": [[3.0]]})


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b'{"instances": [[1.0], [2.', 400, "JSON Parse error"),
    (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
     "JSON nesting depth exceeds the maximum of 100"),
    (b'{"x": ' + b"[" * 100_000 + b"}", 400, "JSON nesting depth exceeds the maximum of 100"),
    (b'{"instances": [[' + b"9" * 100_000 + b"]]}", 400, ""),
    (b'{"instances": [[1e999999]]}', 400, "Number too big"),
    (b'{"instances": [["\xff\xfe"]]}', 400, "is not of expected type: float"),
    (b'{"instances": [[{"b64": "AAAA"}]]}', 400, "is not of expected type: float"),
    (b'{"instances": "' + b"A" * 500_000 + b'"}', 400, "Expecting 'instances' to be an list"),
    (b"\x00\x01\x02 binary garbage", 400, "JSON Parse error"),
])
def test_hostile_json(server: ServerProcess, body: bytes, status: int, fragment: str) -> None:
    got, _, payload = server.request("POST", PREDICT, body)
    assert got == status
    message = json.loads(payload)["error"]
    assert fragment in message
    assert len(message) < 2048  # input is echoed truncated, never whole
    still_serving(server)


def _raw_exchange(server: ServerProcess, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request on a fresh connection; the answer (the server closes after an error)."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert int(headers[b"Content-Length"]) == len(body)
    return int(lines[0].split(b" ")[1]), headers, body


@pytest.mark.parametrize(("extra", "content_type"), [
    (b"", b"application/json"),
    (b"Content-Type: application/msgpack\r\n", b"application/msgpack"),
    (b"Accept: application/msgpack\r\n", b"application/msgpack"),
])
def test_body_over_the_limit(server: ServerProcess, extra: bytes, content_type: bytes) -> None:
    """Refused from the Content-Length alone, before the body is read; in the format the
    request's headers ask for."""
    status, headers, body = _raw_exchange(
        server, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n" + extra
        + b"Content-Length: %d\r\n\r\n" % (2 << 20))
    assert (status, headers[b"Content-Type"]) == (413, content_type)
    error = (msgpack.unpackb(body) if content_type == b"application/msgpack"
             else json.loads(body))["error"]
    assert error == (f"Request body exceeds the maximum of {LIMIT} bytes "
                     "(flag --rest_api_max_body_bytes)")
    still_serving(server)


def test_claimed_content_length_is_not_believed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 99999999999\r\n\r\n{")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 ")
    still_serving(server)


@pytest.mark.parametrize("path", [PREDICT, CLASSIFY])
@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_gzip_bomb(server: ServerProcess, path: str, content_type: str) -> None:
    """A body that inflates past the limit is too large, as one sent that large (413)."""
    bomb = gzip.compress(b" " * (64 << 20))
    got, headers, payload = server.request(
        "POST", path, bomb, headers={"Content-Encoding": "gzip", "Content-Type": content_type})
    assert (got, headers["Content-Type"]) == (413, content_type)
    error = (msgpack.unpackb(payload) if content_type == "application/msgpack"
             else json.loads(payload))["error"]
    assert error == (f"Decompressed request body exceeds the maximum of {LIMIT} bytes "
                     "(flag --rest_api_max_body_bytes)")
    still_serving(server)


def test_truncated_gzip(server: ServerProcess) -> None:
    body = gzip.compress(b'{"instances": [[2.0]]}')[:-9]
    got, _, payload = server.request("POST", PREDICT, body, headers={"Content-Encoding": "gzip"})
    assert (got, json.loads(payload)) == (400, {
        "error": f"Failed to decompress gzip body: the gzip stream is truncated "
                 f"({len(body)} bytes)"})
    still_serving(server)


def test_malformed_http(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(b"\x16\x03\x01 TLS hello to a plain HTTP port\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ")
    still_serving(server)


MSGPACK = {"Content-Type": "application/msgpack"}


def _msgpack_error(server: ServerProcess, body: bytes, path: str = PREDICT) -> tuple[int, str]:
    got, headers, payload = server.request("POST", path, body, headers=MSGPACK)
    assert headers["Content-Type"] == "application/msgpack"
    return got, msgpack.unpackb(payload)["error"]


@pytest.mark.parametrize(("body", "fragment"), [
    (b"\x81\xa9instances\x93\x91\xca", "truncated"),
    (b"\x81\xa6inputs" + b"\x91" * 100_000 + b"\x00", "nesting depth exceeds the maximum"),
    # An array header claiming 10^9 elements, with none behind it.
    (b"\x81\xa9instances\xdd" + (10**9).to_bytes(4, "big"), "msgpack"),
    # A tensor map whose shape claims 10^9 x 10^9 elements over 4 bytes of data.
    (b"\x81\xa6inputs\x83\xa5dtype\xa7float32\xa5shape\x92\xce" + (10**9).to_bytes(4, "big")
     + b"\xce" + (10**9).to_bytes(4, "big") + b"\xa4data\xc4\x04\x00\x00\x00\x00", ""),
    (b"\x81\xa6inputs\x83\xa5dtype\xa5int64\xa5shape\x92\x01\x01\xa4data\xc4\x08" + b"\0" * 8,
     "float32"),
    (b"\xc1", "msgpack"),
])
def test_hostile_msgpack(server: ServerProcess, body: bytes, fragment: str) -> None:
    status, message = _msgpack_error(server, body)
    assert status == 400
    assert fragment in message
    still_serving(server)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, strict_types=True)


@pytest.mark.parametrize("path", [CLASSIFY, REGRESS])
@pytest.mark.parametrize(("body", "message"), [
    # Example and context maps whose keys are not strings.
    (_pack({"examples": [{1: 2.0}]}), "msgpack map keys must be strings, found int"),
    (_pack({"examples": [{1.5: 2.0}]}), "msgpack map keys must be strings, found float"),
    (_pack({"examples": [{float("nan"): 2.0}]}), "msgpack map keys must be strings, found float"),
    (_pack({"examples": [{None: 2.0}]}), "msgpack map keys must be strings, found nil"),
    (b"\x81\xa8examples\x91\x81\x91\x01\x01", "msgpack map keys must be strings, found array"),
    (b"\x81\xa8examples\x91\x81\x80\x01", "msgpack map keys must be strings, found map"),
    (_pack({"context": {7: 1}, "examples": [{}]}), "msgpack map keys must be strings, found int"),
    # 10^5 levels deep.
    (b"\x81\xa8examples" + b"\x91" * 100_000 + b"\x00",
     "msgpack nesting depth exceeds the maximum of 100"),
    # An ext value in a feature.
    (_pack({"examples": [{"x": msgpack.ExtType(5, b"ab")}]}),
     "Feature: x has element with unexpected msgpack type: ext"),
])
def test_hostile_msgpack_examples(server: ServerProcess, path: str, body: bytes,
                                  message: str) -> None:
    assert _msgpack_error(server, body, path) == (400, message)
    still_serving(server)


def test_hostile_json_examples(server: ServerProcess) -> None:
    """A feature named by bytes that are not UTF-8 (a proto string cannot hold them)."""
    got, _, payload = server.request("POST", REGRESS, b'{"examples": [{"\xff": 1}]}')
    assert (got, json.loads(payload)) == (400, {"error": 'Feature name "\ufffd" is not valid '
                                                         'UTF-8'})
    still_serving(server)


# --- arbitrary REST bodies -------------------------------------------------------------------

# Bounded: both servers, a few dozen requests each per property.
REAL_SERVER = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUTES = st.sampled_from([PREDICT, CLASSIFY, REGRESS])
SIGNATURES = st.sampled_from(["serving_default", "classify_x_to_y", "regress_x_to_y", "x"])
NAMES = st.sampled_from(["x", "instances", "inputs", "examples", "context", "signature_name",
                         "b64"]) | st.text(max_size=3)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 66), 1 << 66) | st.floats()
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=10)
MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=5) | st.binary(max_size=6)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=3)),
    lambda inner: (st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3)
                   | st.dictionaries(st.integers(-9, 9) | st.floats() | st.none()
                                     | st.binary(max_size=2), inner, max_size=2)),
    max_leaves=10)


def _with_signature(doc: Any, signature: str | None) -> Any:
    return {**doc, "signature_name": signature} if signature and isinstance(doc, dict) else doc


def _contract(server: ServerProcess, path: str, body: bytes, headers: dict[str, str],
              msgpack_out: bool) -> None:
    got, answer_headers, payload = server.request("POST", path, body, headers=headers)
    assert got < 500, (got, payload[:300])
    assert answer_headers["Content-Type"] == (
        "application/msgpack" if msgpack_out else "application/json"), payload[:300]
    if got != 200:
        error = (msgpack.unpackb(payload) if msgpack_out else json.loads(payload))["error"]
        assert isinstance(error, str) and error
    still_serving(server)


@REAL_SERVER
@given(path=ROUTES, doc=st.dictionaries(NAMES, JSON_VALUES, max_size=3) | JSON_VALUES,
       signature=st.none() | SIGNATURES, gzipped=st.booleans())
def test_any_json_body(server: ServerProcess, path: str, doc: Any, signature: str | None,
                       gzipped: bool) -> None:
    body = json.dumps(_with_signature(doc, signature)).encode()
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    _contract(server, path, gzip.compress(body) if gzipped else body, headers, False)


@REAL_SERVER
@given(path=ROUTES, doc=st.dictionaries(NAMES, MSGPACK_VALUES, max_size=3) | MSGPACK_VALUES,
       signature=st.none() | SIGNATURES, gzipped=st.booleans())
def test_any_msgpack_body(server: ServerProcess, path: str, doc: Any, signature: str | None,
                          gzipped: bool) -> None:
    body = msgpack.packb(_with_signature(doc, signature))
    headers = {"Content-Type": "application/msgpack"}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    _contract(server, path, body, headers, True)


@REAL_SERVER
@given(path=ROUTES, body=st.binary(max_size=100), msgpack_in=st.booleans(), gzipped=st.booleans())
def test_any_bytes_body(server: ServerProcess, path: str, body: bytes, msgpack_in: bool,
                        gzipped: bool) -> None:
    headers = {"Content-Type": "application/msgpack"} if msgpack_in else {}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    _contract(server, path, body, headers, msgpack_in)


# --- gRPC: arbitrary bytes and malformed requests --------------------------------------------

SERVICE = "/tensorflow.serving.PredictionService/"
# Statuses that say the request was wrong (or, for a request that happens to be well formed,
# that it ran); never INTERNAL, UNKNOWN, or a transport failure.
CLIENT_ERRORS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                 grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.UNIMPLEMENTED}
REQUESTS = {"Predict": predict_pb2.PredictRequest,
            "Classify": classification_pb2.ClassificationRequest,
            "Regress": regression_pb2.RegressionRequest,
            "MultiInference": inference_pb2.MultiInferenceRequest}
# How much of a request must parse: a PredictRequest whole; the others with their tf.Examples as
# bytes, which only the model's ParseExample reads (as in TF Serving).
FRAMING = {"Predict": predict_pb2.PredictRequest,
           "Classify": serialized_request_class("single"),
           "Regress": serialized_request_class("single"),
           "MultiInference": serialized_request_class("multi")}


def _good_requests() -> dict[str, bytes]:
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "m"
    x = predict.inputs["x"]
    x.dtype = 1  # DT_FLOAT
    x.tensor_shape.dim.add().size = 1
    x.tensor_shape.dim.add().size = 1
    x.float_val.append(2.0)
    out = {"Predict": predict.SerializeToString()}
    for method, cls, signature in (("Classify", classification_pb2.ClassificationRequest,
                                    "classify_x_to_y"),
                                   ("Regress", regression_pb2.RegressionRequest,
                                    "regress_x_to_y")):
        request = cls()
        request.model_spec.name = "m"
        request.model_spec.signature_name = signature
        example = request.input.example_list_with_context.examples.add()
        example.features.feature["x"].float_list.value.append(2.0)
        request.input.example_list_with_context.context.features.feature[
            "c"].bytes_list.value.append(b"\xff")
        out[method] = request.SerializeToString()
    multi = inference_pb2.MultiInferenceRequest()
    task = multi.tasks.add()
    task.model_spec.name = "m"
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    out["MultiInference"] = multi.SerializeToString()
    return out


GOOD = _good_requests()


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


def _call(channel: grpc.Channel, method: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    """``body`` as the request, sent as it is (no serializer)."""
    try:
        channel.unary_unary(SERVICE + method)(body, timeout=30)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _grpc_contract(channel: grpc.Channel, method: str, body: bytes) -> None:
    code, details = _call(channel, method, body)
    assert code in CLIENT_ERRORS, (code, details, body)
    try:
        FRAMING[method].FromString(body)
    except DecodeError:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details, body)
    assert _call(channel, "Predict", GOOD["Predict"]) == (grpc.StatusCode.OK, "")


def test_good_grpc_requests_answer(channel: grpc.Channel) -> None:
    """The seeds of the properties below are good requests (so mutating them gets far)."""
    for method, body in GOOD.items():
        assert _call(channel, method, body) == (grpc.StatusCode.OK, ""), method


@pytest.mark.parametrize(("method", "body", "details"), [
    ("Predict", b"\xff\xff", "Could not parse the request as a tensorflow.serving.PredictRequest"),
    # A tf.Example whose feature name claims more bytes than there are: TensorFlow quotes the
    # bytes, which are not UTF-8, in its error.
    ("Classify", b"\n\x14\n\x01m\x1a\x0fclassify_x_to_y\x12\x15\n\x13\n\x11\n\x0f\n\r\n\xfdx"
                 b"\x12\x08\x12\x06\n\x04\x00\x00\x00@", "Could not parse example input, value: "),
])
def test_malformed_grpc_requests(channel: grpc.Channel, method: str, body: bytes,
                                 details: str) -> None:
    code, got = _call(channel, method, body)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.startswith(details)
    assert _call(channel, "Predict", GOOD["Predict"]) == (grpc.StatusCode.OK, "")


@REAL_SERVER
@given(method=st.sampled_from(sorted(REQUESTS)), body=st.binary(max_size=120))
def test_any_bytes_to_grpc(channel: grpc.Channel, method: str, body: bytes) -> None:
    _grpc_contract(channel, method, body)


@REAL_SERVER
@given(method=st.sampled_from(sorted(REQUESTS)),
       edits=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.integers(1, 120))
def test_mutated_grpc_requests(channel: grpc.Channel, method: str,
                               edits: list[tuple[int, int]], cut: int) -> None:
    body = bytearray(GOOD[method])
    for i, byte in edits:
        if i < len(body):
            body[i] = byte
    _grpc_contract(channel, method, bytes(body[:cut]))


def _tensor(dtype: int, dims: list[int], unknown_rank: bool, floats: list[float],
            ints: list[int], strings: list[bytes], content: bytes) -> Any:
    tensor = tensor_pb2.TensorProto(dtype=dtype, float_val=floats, int_val=ints,
                                    string_val=strings, tensor_content=content)
    tensor.tensor_shape.unknown_rank = unknown_rank
    for size in dims:
        tensor.tensor_shape.dim.add().size = size
    return tensor


TENSORS = st.builds(
    _tensor, st.integers(0, 30) | st.integers(-5, 1000),
    st.lists(st.integers(-3, 4) | st.integers(-(1 << 63), (1 << 63) - 1), max_size=4),
    st.booleans(), st.lists(st.floats(width=32), max_size=4),
    st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=4),
    st.lists(st.binary(max_size=4), max_size=3), st.binary(max_size=16))


@REAL_SERVER
@given(inputs=st.dictionaries(st.sampled_from(["x", "y", ""]), TENSORS, max_size=2),
       signature=st.sampled_from(["", "serving_default", "classify_x_to_y", "nope"]),
       output_filter=st.lists(st.sampled_from(["y", "z", ""]), max_size=2))
def test_malformed_predict_requests(channel: grpc.Channel, inputs: dict[str, Any],
                                    signature: str, output_filter: list[str]) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature
    request.output_filter.extend(output_filter)
    for alias, tensor in inputs.items():
        request.inputs[alias].CopyFrom(tensor)
    _grpc_contract(channel, "Predict", request.SerializeToString())


FEATURES = st.dictionaries(
    st.sampled_from(["x", "y", ""]),
    st.one_of(st.builds(lambda v: feature_pb2.Feature(float_list={"value": v}),
                        st.lists(st.floats(width=32), max_size=3)),
              st.builds(lambda v: feature_pb2.Feature(int64_list={"value": v}),
                        st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=3)),
              st.builds(lambda v: feature_pb2.Feature(bytes_list={"value": v}),
                        st.lists(st.binary(max_size=3), max_size=3)),
              st.just(feature_pb2.Feature())),
    max_size=2)


@REAL_SERVER
@given(method=st.sampled_from(["Classify", "Regress"]),
       examples=st.lists(FEATURES, max_size=3), context=st.none() | FEATURES,
       signature=st.sampled_from(["", "classify_x_to_y", "regress_x_to_y", "nope"]))
def test_malformed_classify_and_regress_requests(channel: grpc.Channel, method: str,
                                                 examples: list[dict[str, Any]],
                                                 context: dict[str, Any] | None,
                                                 signature: str) -> None:
    request = REQUESTS[method]()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature
    target = (request.input.example_list if context is None
              else request.input.example_list_with_context)
    for features in examples:
        example = target.examples.add()
        for name, feature in features.items():
            example.features.feature[name].CopyFrom(feature)
    if context is not None:
        for name, feature in context.items():
            request.input.example_list_with_context.context.features.feature[name].CopyFrom(
                feature)
    _grpc_contract(channel, method, request.SerializeToString())
