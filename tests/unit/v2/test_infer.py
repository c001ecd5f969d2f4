"""An inference request bound to a signature: the checks, in order, and the tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.server.v2.infer import (
    InferRequest,
    RequestedOutput,
    RequestInput,
    ResponseOutput,
    bind_inputs,
    requested_aliases,
    response_outputs,
    signature_name,
)
from tfsfast.util.status import Code, ServingError


def _info(alias: str, dtype: DataType, shape: tuple[int, ...] | None = None) -> TensorInfo:
    return TensorInfo(alias, f"{alias}:0", dtype, shape)


SIGNATURE = Signature(
    "serving_default", "tensorflow/serving/predict",
    inputs={"a": _info("a", DataType.DT_FLOAT, (-1, 2)), "b": _info("b", DataType.DT_INT64),
            "s": _info("s", DataType.DT_STRING)},
    outputs={"total": _info("total", DataType.DT_FLOAT), "text": _info("text", DataType.DT_STRING),
             "positive": _info("positive", DataType.DT_BOOL),
             "z": _info("z", DataType.DT_COMPLEX64)})
WITH_DEFAULT = Signature(
    "defaults", "tensorflow/serving/predict",
    inputs={"x": _info("x", DataType.DT_FLOAT), "k": _info("k", DataType.DT_FLOAT)},
    outputs={"y": _info("y", DataType.DT_FLOAT)}, defaults={"k": np.float32(1.0)})
COMPLEX_IN = Signature("c", "tensorflow/serving/predict",
                       inputs={"c": _info("c", DataType.DT_COMPLEX128)},
                       outputs={"y": _info("y", DataType.DT_FLOAT)})
LIMITS = CodecLimits(max_tensor_rank=3, max_tensor_elements=100, max_request_elements=150)


def decode(tensor: RequestInput, dtype: DataType, count: int) -> np.ndarray:
    """A decoder of plain lists, as a transport's would be."""
    return np.array(tensor.data, dtype=to_numpy(dtype))


def refuse(tensor: RequestInput, dtype: DataType, count: int) -> np.ndarray:
    raise AssertionError(f"decoded {tensor.name} before the checks failed")


def _inputs(*specs: tuple[str, str, Sequence[int], Any]) -> list[RequestInput]:
    return [RequestInput(name, datatype, tuple(shape), data) for name, datatype, shape, data in
            specs]


VALID = _inputs(("a", "FP32", [2, 2], [1, 2, 3, 4]), ("b", "INT64", [2], [[5], [6]]),
                ("s", "BYTES", [2], [b"x", b"y"]))


def test_bind_inputs_reshapes_flat_and_nested_data() -> None:
    tensors = bind_inputs(SIGNATURE, VALID, decode, LIMITS)
    assert list(tensors) == ["a", "b", "s"]
    assert (tensors["a"].dtype, tensors["a"].tolist()) == (np.float32, [[1.0, 2.0], [3.0, 4.0]])
    assert (tensors["b"].dtype, tensors["b"].tolist()) == (np.int64, [5, 6])
    assert tensors["s"].tolist() == [b"x", b"y"]


def test_a_scalar_input() -> None:
    tensors = bind_inputs(WITH_DEFAULT, _inputs(("x", "FP32", [], [2.5])), decode, LIMITS)
    assert (tensors["x"].shape, tensors["x"].item()) == ((), 2.5)


def test_an_input_with_a_default_may_be_left_out() -> None:
    assert list(bind_inputs(WITH_DEFAULT, _inputs(("x", "FP32", [1], [1])), decode, LIMITS)) == [
        "x"]


def _bind_error(signature: Signature, inputs: list[RequestInput], limits: CodecLimits = LIMITS,
                decoder: Any = refuse) -> str:
    with pytest.raises(ServingError) as raised:
        bind_inputs(signature, inputs, decoder, limits)
    assert raised.value.code == Code.INVALID_ARGUMENT
    return raised.value.message


@pytest.mark.parametrize(("inputs", "message"), [
    (_inputs(("q", "FP32", [1], [1])),
     "Input 'q' is not an input of signature 'serving_default' (its inputs: a, b, s)"),
    (_inputs(("a", "INT32", [1, 2], [1, 2])),
     "Input 'a' has datatype INT32, but signature 'serving_default' expects FP32"),
    (_inputs(("a", "FLOAT", [1, 2], [1, 2])),
     "Input 'a' has datatype 'FLOAT', which is not a datatype of the Open Inference Protocol"),
    (_inputs(("a", "fp32", [1, 2], [1, 2])),
     "Input 'a' has datatype 'fp32', which is not a datatype of the Open Inference Protocol"),
    (_inputs(("a", "FP32", [2, -1], [])),
     "Input 'a' has shape [2, -1]: a dimension cannot be negative"),
    (_inputs(("a", "FP32", [1, 1, 1, 1], [1])),
     "Input 'a' has rank 4, which exceeds the maximum tensor rank of 3"),
    (_inputs(("a", "FP32", [101], [])),
     "Input 'a' has 101 elements, which exceeds the maximum of 100 elements per tensor"),
    (_inputs(("a", "FP32", [1 << 40, 1 << 40], [])),
     f"Input 'a' has {1 << 80} elements, which exceeds the maximum of 100 elements per tensor"),
])
def test_input_errors_come_before_decoding(inputs: list[RequestInput], message: str) -> None:
    assert _bind_error(SIGNATURE, inputs) == message


def test_the_request_limit_counts_every_input() -> None:
    inputs = _inputs(("a", "FP32", [50, 2], [0] * 100), ("b", "INT64", [51], []))
    with pytest.raises(ServingError) as raised:
        bind_inputs(SIGNATURE, inputs, decode, LIMITS)
    assert raised.value.message == (
        "Request has more than 150 tensor elements, the maximum per request")


def test_an_input_given_twice() -> None:
    inputs = _inputs(("b", "INT64", [1], [1]), ("b", "INT64", [1], [2]))
    assert _bind_error(SIGNATURE, inputs, decoder=decode) == "Input 'b' is given more than once"


def test_data_with_another_element_count_than_the_shape() -> None:
    inputs = _inputs(("a", "FP32", [2, 2], [1, 2, 3]))
    assert _bind_error(SIGNATURE, inputs, decoder=decode) == (
        "Input 'a' has shape [2, 2], 4 elements, but its data has 3 elements")


def test_missing_inputs_are_named() -> None:
    inputs = _inputs(("b", "INT64", [1], [1]))
    assert _bind_error(SIGNATURE, inputs, decoder=decode) == (
        "Signature 'serving_default' needs input(s) the request does not give: a, s")
    assert _bind_error(WITH_DEFAULT, [], decoder=decode) == (
        "Signature 'defaults' needs input(s) the request does not give: x")


def test_an_input_dtype_the_protocol_cannot_carry() -> None:
    assert _bind_error(COMPLEX_IN, _inputs(("c", "FP64", [1], [1]))) == (
        "Input 'c' of signature 'c' has dtype complex128, which the Open Inference Protocol "
        "cannot carry")


def test_a_decoder_error_propagates() -> None:
    def failing(tensor: RequestInput, dtype: DataType, count: int) -> np.ndarray:
        raise ServingError(Code.INVALID_ARGUMENT, "bad data")

    assert _bind_error(SIGNATURE, VALID, decoder=failing) == "bad data"


@pytest.mark.parametrize(("parameters", "name"), [({}, ""), ({"signature_name": "x"}, "x")])
def test_signature_name(parameters: dict[str, Any], name: str) -> None:
    assert signature_name(InferRequest([], parameters=parameters)) == name


def test_signature_name_must_be_a_string() -> None:
    with pytest.raises(ServingError) as raised:
        signature_name(InferRequest([], parameters={"signature_name": 3}))
    assert (raised.value.code, raised.value.message) == (
        Code.INVALID_ARGUMENT, "Parameter 'signature_name' must be a string")


CARRIED = Signature("ok", "tensorflow/serving/predict", inputs={},
                    outputs={"y": _info("y", DataType.DT_FLOAT),
                             "t": _info("t", DataType.DT_STRING)})


@pytest.mark.parametrize(("outputs", "aliases"), [
    (None, ["t", "y"]), ([], ["t", "y"]),
    ([RequestedOutput("y")], ["y"]), ([RequestedOutput("y"), RequestedOutput("t")], ["y", "t"]),
])
def test_requested_aliases(outputs: list[RequestedOutput] | None, aliases: list[str]) -> None:
    assert requested_aliases(CARRIED, outputs) == aliases


@pytest.mark.parametrize(("outputs", "message"), [
    ([RequestedOutput("q")],
     "Output 'q' is not an output of signature 'serving_default' (its outputs: positive, text, "
     "total, z)"),
    ([RequestedOutput("text"), RequestedOutput("text")],
     "Output 'text' is requested more than once"),
    ([RequestedOutput("z")],
     "Output 'z' of signature 'serving_default' has dtype complex64, which the Open Inference "
     "Protocol cannot carry"),
    (None,
     "Output 'z' of signature 'serving_default' has dtype complex64, which the Open Inference "
     "Protocol cannot carry"),
])
def test_requested_output_errors(outputs: list[RequestedOutput] | None, message: str) -> None:
    with pytest.raises(ServingError) as raised:
        requested_aliases(SIGNATURE, outputs)
    assert (raised.value.code, raised.value.message) == (Code.INVALID_ARGUMENT, message)


def test_response_outputs_in_the_order_asked() -> None:
    total = np.array([1.5], np.float32)
    text = np.array([[b"a"]], object)
    answer = response_outputs(SIGNATURE, {"total": total, "text": text, "positive": total},
                              ["text", "total"])
    assert answer == [ResponseOutput("text", "BYTES", DataType.DT_STRING, text),
                      ResponseOutput("total", "FP32", DataType.DT_FLOAT, total)]
    assert [o.shape for o in answer] == [(1, 1), (1,)]
