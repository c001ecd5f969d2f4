"""Every call of every client against a real tfsfast server: results, errors, deadlines and
kept-alive connections, the same through RestClient (msgpack and JSON), GrpcClient and their
asyncio twins."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tfsfast.client import (
    Code,
    ModelMetadata,
    ModelVersionStatus,
    RequestError,
    SignatureDef,
    TensorInfo,
)
from tfsfast.testing.server_process import ServerProcess

from .clients import CLIENTS, CountingProxy, connect

pytestmark = pytest.mark.integration

X = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)


@pytest.fixture(params=CLIENTS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(kind: str, server: ServerProcess) -> Iterator[Any]:
    c = connect(kind, f"localhost:{server.rest_port}", f"localhost:{server.grpc_port}")
    yield c
    c.close()


def test_predict_answers_the_one_output_as_an_array(kind: str, client: Any) -> None:
    y = client.predict("half_plus_two", {"x": X})
    # JSON carries no dtype: numbers come back as numpy reads them (float64).
    assert y.dtype == (np.float64 if kind.endswith("json") else np.float32)
    np.testing.assert_array_equal(y, [[2.5], [3.0], [4.5]])
    np.testing.assert_array_equal(
        client.predict("half_plus_two", {"x": np.float32([[4.0]])}, version=123,
                       signature_name="serving_default"), [[4.0]])


def test_predict_answers_several_outputs_by_alias(kind: str, client: Any) -> None:
    outputs = client.predict("multi_io", {
        "a": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
        "b": np.array([10, -1], np.int64),
        "s": np.array([b"x", "\u00e9t\u00e9".encode()], dtype=object)})
    assert sorted(outputs) == ["positive", "s_bytes", "text", "total"]
    np.testing.assert_array_equal(outputs["total"], [13.0, 6.0])
    np.testing.assert_array_equal(outputs["positive"], [True, False])
    assert outputs["positive"].dtype == np.bool_
    for alias in ("s_bytes", "text"):
        assert outputs[alias].dtype == object
        assert outputs[alias].tolist() == [b"x", "\u00e9t\u00e9".encode()]


def test_predict_scalars_and_str_inputs(client: Any) -> None:
    y = client.predict("multi_io", {"x": np.float32(3.0)}, signature_name="scalar")
    assert y.shape == () and float(y) == 6.0
    outputs = client.predict("multi_io", {"a": np.float32([[0.5, 0.5]]),
                                          "b": np.array([2]), "s": np.array(["text"])})
    assert outputs["text"].tolist() == [b"text"] and outputs["total"].tolist() == [3.0]


def test_predict_large_strided_and_big_endian_arrays(client: Any) -> None:
    """Inputs over a megabyte (sent beside the request head, read in many pieces), a strided
    view and a big-endian array: each is sent as the values it holds."""
    x = np.arange(600_000, dtype=np.float32).reshape(-1, 1)
    np.testing.assert_array_equal(client.predict("half_plus_two", {"x": x[::2]}),
                                  x[::2] * 0.5 + 2)
    big_endian = np.array([[1.0], [-4.0]], dtype=">f4")
    np.testing.assert_array_equal(client.predict("half_plus_two", {"x": big_endian}),
                                  [[2.5], [0.0]])


def test_classify(client: Any) -> None:
    assert client.classify("half_plus_two", [{"x": 2.0}, {"x": [4.0]}],
                           signature_name="classify_x_to_y") == [[("", 3.0)], [("", 4.0)]]


def test_regress(client: Any) -> None:
    assert client.regress("half_plus_two", [{"x": 2.0}, {"x": np.float32(-2.0)}],
                          signature_name="regress_x_to_y") == [3.0, 1.0]
    # The features of the context go into every example.
    assert client.regress("half_plus_two", [{}, {}], context={"x": 6.0},
                          signature_name="regress_x_to_y", version=123) == [5.0, 5.0]


def test_model_status(client: Any) -> None:
    expected = [ModelVersionStatus(123, "AVAILABLE", Code.OK, "")]
    assert client.model_status("half_plus_two") == expected
    assert client.model_status("half_plus_two", version=123) == expected


def test_model_metadata(client: Any) -> None:
    metadata = client.model_metadata("half_plus_two")
    assert isinstance(metadata, ModelMetadata)
    assert (metadata.name, metadata.version) == ("half_plus_two", 123)
    assert sorted(metadata.signature_defs) == ["classify_x_to_y", "regress_x_to_y",
                                               "serving_default"]
    assert metadata.signature_defs["serving_default"] == SignatureDef(
        "tensorflow/serving/predict", {"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))},
        {"y": TensorInfo("y:0", "DT_FLOAT", (-1, 1))})
    assert metadata.signature_defs["classify_x_to_y"].method_name == (
        "tensorflow/serving/classify")
    assert client.model_metadata("half_plus_two", version=123) == metadata


def raised(call: Any, *args: Any, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as e:
        call(*args, **kwargs)
    return e.value


def test_an_unknown_model_is_not_found(kind: str, client: Any) -> None:
    http_status = None if kind.endswith("grpc") else 404
    for call, args in [(client.predict, ({"x": X},)), (client.model_metadata, ()),
                       (client.regress, ([{"x": 1.0}],))]:
        e = raised(call, "no_such_model", *args)
        assert (e.code, e.message, e.http_status) == (
            Code.NOT_FOUND, "Servable not found for request: Latest(no_such_model)", http_status)
    e = raised(client.predict, "half_plus_two", {"x": X}, version=7)
    assert (e.code, e.message) == (
        Code.NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 7)")
    e = raised(client.model_status, "no_such_model")
    assert (e.code, e.message) == (
        Code.NOT_FOUND, "Could not find any versions of model no_such_model")


# The server's words for an input the signature does not have, by API.
UNKNOWN_INPUT = {
    "msgpack": "Missing named input: x in 'inputs' map.",
    "json": "Missing named input: x in 'inputs' object.",
    "grpc": "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.",
}


def test_bad_input_is_an_invalid_argument_and_the_server_keeps_serving(
        kind: str, client: Any) -> None:
    http_status = None if kind.endswith("grpc") else 400
    e = raised(client.predict, "half_plus_two", {"z": X})
    assert (e.code, e.message, e.http_status) == (
        Code.INVALID_ARGUMENT, UNKNOWN_INPUT[kind.split("-")[-1]], http_status)
    e = raised(client.predict, "half_plus_two", {"x": [["text"]]})
    assert e.code == Code.INVALID_ARGUMENT and e.http_status == http_status
    y = client.predict("half_plus_two", {"x": np.float32([[2.0]])})
    np.testing.assert_array_equal(y, [[3.0]])


def test_arguments_the_api_cannot_carry_are_refused_before_sending(client: Any) -> None:
    with pytest.raises(ValueError, match="give a version or a version label, not both"):
        client.predict("half_plus_two", {"x": X}, version=1, version_label="stable")
    with pytest.raises(ValueError, match="inputs must be a mapping input alias -> array"):
        client.predict("half_plus_two", [X])
    with pytest.raises(ValueError, match="feature 'x' mixes float_list and int64_list values"):
        client.regress("half_plus_two", [{"x": [1.0, 2]}])
    with pytest.raises(ValueError, match="feature 'x': a value of type dict is not bytes, str, "
                                         "float, int or bool"):
        client.classify("half_plus_two", [{"x": {}}])


def test_a_deadline_that_passes_raises_deadline_exceeded(kind: str, silent_port: int) -> None:
    target = f"127.0.0.1:{silent_port}"
    client = connect(kind, target, target, timeout=0.2)
    try:
        e = raised(client.predict, "half_plus_two", {"x": X})
        assert (e.code, e.message, e.http_status) == (
            Code.DEADLINE_EXCEEDED, "Deadline Exceeded", None)
        # A call's own timeout wins over the client's.
        e = raised(client.model_status, "half_plus_two", timeout=0.1)
        assert e.code == Code.DEADLINE_EXCEEDED
    finally:
        client.close()


def test_calls_share_one_kept_alive_connection(kind: str, server: ServerProcess) -> None:
    rest, grpc = CountingProxy(server.rest_port), CountingProxy(server.grpc_port)
    client = connect(kind, f"127.0.0.1:{rest.port}", f"127.0.0.1:{grpc.port}")
    try:
        for i in range(10):
            np.testing.assert_array_equal(
                client.predict("half_plus_two", {"x": np.float32([[i]])}), [[i / 2 + 2]])
        assert client.regress("half_plus_two", [{"x": 2.0}],
                              signature_name="regress_x_to_y") == [3.0]
        assert client.model_status("half_plus_two")[0].state == "AVAILABLE"
        assert (rest.accepted, grpc.accepted) == ((1, 0) if "rest" in kind else (0, 1))
    finally:
        client.close()
        rest.close()
        grpc.close()


def test_a_connection_refused_is_unavailable(kind: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        client = connect(kind, target, target, timeout=2)
        try:
            e = raised(client.model_status, "half_plus_two")
        finally:
            client.close()
    assert e.code == Code.UNAVAILABLE and e.http_status is None
