"""``predict_signatures``: predict's signature step, compiled and its twin (one source)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import (
    CLASSIFY_METHOD_NAME,
    PREDICT_METHOD_NAME,
    Signature,
    TensorInfo,
)
from tfsfast.testing.test_util import implementations
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.server.predict._predict_signatures",
                        "tfsfast.server.predict._predict_signatures_py")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(request.param)


def _info(alias: str, dtype: DataType = DataType.DT_FLOAT) -> TensorInfo:
    return TensorInfo(alias, f"{alias}:0", dtype, (-1,))


class Batching:
    """A batching session's ``batcher`` lookup: ``serving_default`` is batched."""

    def batcher(self, key: str) -> Any:
        return f"batcher of {key}" if key == "serving_default" else None


class Bundle:
    """A servable with a two-input signature, one without inputs and a classify one."""

    def __init__(self, batching: Any = None) -> None:
        self.signatures = {
            "serving_default": Signature("serving_default", PREDICT_METHOD_NAME,
                                         {"a": _info("a"), "b": _info("b", DataType.DT_INT64)},
                                         {"y": _info("y"), "z": _info("z", DataType.DT_STRING)}),
            "empty": Signature("empty", PREDICT_METHOD_NAME, {}, {"y": _info("y")}),
            "classes": Signature("classes", CLASSIFY_METHOD_NAME, {"a": _info("a")},
                                 {"y": _info("y")}),
            "weird": Signature("weird", "tensorflow/serving/other", {"a": _info("a")},
                               {"y": _info("y")}),
        }
        self.batching_session = batching

    def run(self, *args: Any) -> Any:
        raise AssertionError("not run here")

    def run_inline(self, *args: Any) -> Any:
        raise AssertionError("not run here")


def error(call: Any, *args: Any) -> tuple[Code, str]:
    with pytest.raises(ServingError) as caught:
        call(*args)
    return caught.value.code, caught.value.message


def test_input_dtypes_are_the_rest_codecs_and_cached(impl: Any) -> None:
    signatures = impl.BundleSignatures(Bundle(), "id", False)
    dtypes = signatures("serving_default")
    assert dtypes == {"a": DataType.DT_FLOAT, "b": DataType.DT_INT64}
    assert signatures("serving_default") is dtypes  # the compiled codecs key on the dict


@pytest.mark.parametrize(("name", "expected"), [
    ("nope", 'Serving signature name: "nope" not found in signature def'),
    ("empty", "Failed to get input map for signature: empty"),
])
def test_input_dtypes_errors_are_tf_servings(impl: Any, name: str, expected: str) -> None:
    signatures = impl.BundleSignatures(Bundle(), "id", False)
    assert error(signatures, name) == (Code.INVALID_ARGUMENT, expected)


def test_default_signature_without_inputs_is_called_default(impl: Any) -> None:
    bundle = Bundle()
    bundle.signatures["serving_default"] = bundle.signatures["empty"]
    signatures = impl.BundleSignatures(bundle, "id", False)
    assert error(signatures, "serving_default") == (
        Code.INVALID_ARGUMENT, "Failed to get input map for signature: DEFAULT")


def test_get_resolves_the_default_and_keeps_what_requests_need(impl: Any) -> None:
    bundle = Bundle(Batching())
    signatures = impl.BundleSignatures(bundle, "id", False)
    found = signatures.get("")
    assert found.key == "serving_default"
    assert found.signature is bundle.signatures["serving_default"]
    assert found.output_dtypes == {"y": DataType.DT_FLOAT, "z": DataType.DT_STRING}
    assert found.order == ["y", "z"]
    assert found.batcher == "batcher of serving_default"
    assert found.cost is None
    assert signatures.get("") is found
    assert signatures.get("serving_default") is not found  # cached by the name as sent
    assert signatures.batching is not None


def test_get_errors_are_get_predict_signatures(impl: Any) -> None:
    signatures = impl.BundleSignatures(Bundle(), "id", True)
    assert error(signatures.get, "nope") == (
        Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    assert error(signatures.get, "weird") == (
        Code.INTERNAL, "Expected prediction signature method_name to be one of {"
        "tensorflow/serving/predict, tensorflow/serving/classify, tensorflow/serving/regress}. "
        "Was: tensorflow/serving/other")
    assert signatures.get("classes").key == "classes"
    lenient = impl.BundleSignatures(Bundle(), "id", False)
    assert lenient.get("weird").key == "weird"


def test_a_servable_without_run_inline_has_no_batching(impl: Any) -> None:
    class Plain:
        signatures: dict[str, Any] = {}
        batching_session = Batching()

    servable = impl.BundleSignatures(Plain(), "id", False)
    assert servable.run is None and servable.run_inline is None and servable.batching is None


def test_decode_inputs_checks_as_tf_serving(impl: Any) -> None:
    found = impl.BundleSignatures(Bundle(), "id", False).get("")
    decoded: list[tuple[Any, str, list[int]]] = []

    def decode(data: Any, alias: str, budget: list[int]) -> Any:
        decoded.append((data, alias, budget))
        return np.asarray([data])

    arrays = found.decode_inputs({"a": 1.0, "b": 2}, decode)
    assert {alias: a.tolist() for alias, a in arrays.items()} == {"a": [1.0], "b": [2]}
    assert decoded[0][2] is decoded[1][2]  # one budget per request
    assert error(found.decode_inputs, {"a": 1.0}, decode) == (
        Code.INVALID_ARGUMENT,
        "input size does not match signature: 1!=2 len({a}) != len({a,b}). Sent extra: {}. "
        "Missing but required: {b}.")
    assert error(found.decode_inputs, {"a": 1.0, "c": 2}, decode) == (
        Code.INVALID_ARGUMENT,
        "input tensor alias not found in signature: c. Inputs expected to be in the set {a,b}.")


def test_output_aliases(impl: Any) -> None:
    found = impl.BundleSignatures(Bundle(), "id", False).get("")
    assert found.output_aliases([]) is None
    assert found.output_aliases(["z", "y"]) == ["z", "y"]
    assert error(found.output_aliases, ["y", "y"]) == (
        Code.INVALID_ARGUMENT, "duplicate output tensor alias: y")
    assert error(found.output_aliases, ["w"]) == (
        Code.INVALID_ARGUMENT,
        "output tensor alias not found in signature: w Outputs expected to be in the set {y,z}.")


def test_signature_cache_is_per_servable_and_bounded(impl: Any) -> None:
    cache = impl.SignatureCache(False)
    bundles = [Bundle() for _ in range(impl.MAX_BUNDLES + 1)]
    first = cache.of(bundles[0], "v1")
    assert cache.of(bundles[0], "v1") is first
    assert first.bundle is bundles[0] and first.servable_id == "v1"
    assert cache.of(bundles[1], "v2") is not first
    for bundle in bundles[2:]:
        cache.of(bundle, "v")
    # Past MAX_BUNDLES the cache starts over: the first servable gets a new entry.
    assert cache.of(bundles[0], "v1") is not first
