"""Classifier, regressor and serialized input on fake bundles: every structure and output check."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.servables import classifier, regressor
from tfsfast.servables.multi_inference import InferenceTask, run_multi_inference
from tfsfast.servables.serialized_input import (
    input_to_serialized_example_tensor,
    serialized_input_class,
)
from tfsfast.util.status import Code, ServingError


def _info(alias: str, dtype: DataType = DataType.DT_FLOAT) -> TensorInfo:
    return TensorInfo(alias, f"{alias}:0", dtype, (-1, 1))


def signature(key: str, inputs: tuple[str, ...], outputs: tuple[str, ...],
              method: str = "tensorflow/serving/predict") -> Signature:
    from tensorflow.core.protobuf import meta_graph_pb2

    proto = meta_graph_pb2.SignatureDef(method_name=method)
    for a in inputs:
        proto.inputs[a].name = f"{a}:0"
    for a in outputs:
        proto.outputs[a].name = f"{a}:0"
    return Signature(key, method, {a: _info(a, DataType.DT_STRING) for a in inputs},
                     {a: _info(a) for a in outputs}, proto)


class FakeBundle:
    """Signatures by key; ``run`` answers the arrays in ``outputs`` and records its calls."""

    def __init__(self, *signatures: Signature, outputs: dict[str, Any] | None = None) -> None:
        self.signatures = {s.key: s for s in signatures}
        self.outputs = outputs or {}
        self.calls: list[tuple[str, Any, Any]] = []

    def run(self, key: str, inputs: dict[str, Any], aliases: Any = None,
            timeout_in_ms: int = 0) -> dict[str, Any]:
        self.calls.append((key, inputs, aliases))
        return {a: self.outputs[a] for a in (aliases or self.signatures[key].outputs)}


EXAMPLES = [b"e1", b"e2"]


def error(fn, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as e:
        fn(*args, **kwargs)
    return e.value


def test_classify_labels_and_scores() -> None:
    bundle = FakeBundle(signature("c", ("inputs",), ("classes", "scores")), outputs={
        "classes": np.array([[b"a", b"b"], [b"c", b"\xff"]], dtype=object),
        "scores": np.array([[0.1, 0.9], [0.5, 0.5]], np.float32)})
    result = classifier.run_classify(bundle, "c", EXAMPLES)
    assert [[(c.label, round(c.score, 3)) for c in cs.classes]
            for cs in result.classifications] == [[("a", 0.1), ("b", 0.9)],
                                                  [("c", 0.5), ("\ufffd", 0.5)]]
    key, inputs, aliases = bundle.calls[0]
    assert key == "c" and aliases == ["classes", "scores"]
    assert inputs["inputs"].tolist() == EXAMPLES


@pytest.mark.parametrize(("outputs", "message"), [
    ({"scores": np.zeros(2, np.float32)}, "Expected Tensor shape: [batch_size num_classes] but "
                                          "got [2]"),
    ({"scores": np.zeros((2, 1), np.float64)}, "Expected scores Tensor of DT_FLOAT. Got: "
                                               "DT_DOUBLE"),
    ({"scores": np.zeros((3, 1), np.float32)}, "Expected scores output batch size of 2. Got: 3"),
])
def test_classify_output_checks(outputs, message) -> None:
    bundle = FakeBundle(signature("c", ("inputs",), ("scores",)), outputs=outputs)
    e = error(classifier.run_classify, bundle, "c", EXAMPLES)
    assert (e.code, e.message) == (Code.INVALID_ARGUMENT, message)


def test_classify_classes_checks() -> None:
    sig = signature("c", ("inputs",), ("classes", "scores"))
    bundle = FakeBundle(sig, outputs={"classes": np.zeros((2, 1), np.int32),
                                      "scores": np.zeros((2, 1), np.float32)})
    assert error(classifier.run_classify, bundle, "c", EXAMPLES).message == (
        "Expected classes Tensor of DT_STRING. Got: DT_INT32")
    bundle.outputs = {"classes": np.array([[b"a", b"b"]] * 2, dtype=object),
                      "scores": np.zeros((2, 1), np.float32)}
    assert error(classifier.run_classify, bundle, "c", EXAMPLES).message == (
        "Tensors class and score should match in dim_size(1). Got 2 vs. 1")


@pytest.mark.parametrize(("sig", "message"), [
    (signature("c", ("inputs", "b"), ("scores",)), "Expected one input Tensor."),
    (signature("c", ("inputs",), ("scores", "classes", "x")),
     "Expected one or two output Tensors, found 3"),
])
def test_classify_signature_structure(sig, message) -> None:
    e = error(classifier.run_classify, FakeBundle(sig), "c", EXAMPLES)
    assert (e.code, e.message) == (Code.INVALID_ARGUMENT, message)


def test_method_name_check_only_with_the_flag() -> None:
    bundle = FakeBundle(signature("c", ("inputs",), ("scores",)),
                        outputs={"scores": np.zeros((2, 1), np.float32)})
    assert len(classifier.run_classify(bundle, "c", EXAMPLES).classifications) == 2
    e = error(classifier.run_classify, bundle, "c", EXAMPLES, enforce_method_name=True)
    assert e.message == ("Expected classification signature method_name to be "
                         "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    e = error(regressor.run_regress, FakeBundle(signature("r", ("inputs",), ("outputs",))), "r",
              EXAMPLES, enforce_method_name=True)
    assert e.message == ("Expected regression signature method_name to be "
                         "tensorflow/serving/regress. Was: tensorflow/serving/predict")


@pytest.mark.parametrize(("output", "message"), [
    (np.zeros((2, 2), np.float32), "Expected output Tensor shape to be either [batch_size] or "
                                   "[batch_size, 1] but got [2,2]"),
    (np.zeros(3, np.float32), "Input batch size did not match output batch size: 2 vs. 3"),
    (np.zeros(2, np.int64), "Expected output Tensor of DT_FLOAT.  Got: DT_INT64"),
])
def test_regress_output_checks(output, message) -> None:
    bundle = FakeBundle(signature("r", ("inputs",), ("outputs",)), outputs={"outputs": output})
    e = error(regressor.run_regress, bundle, "r", EXAMPLES)
    assert (e.code, e.message) == (Code.INVALID_ARGUMENT, message)


def test_regress_values_and_structure() -> None:
    bundle = FakeBundle(signature("r", ("inputs",), ("outputs",)),
                        outputs={"outputs": np.array([[1.5], [2.5]], np.float32)})
    assert [r.value for r in regressor.run_regress(bundle, "r", EXAMPLES).regressions] == [
        1.5, 2.5]
    e = error(regressor.run_regress, FakeBundle(signature("r", ("inputs",), ("y", "z"))), "r",
              EXAMPLES)
    assert e.message == "Expected one output Tensor."
    e = error(regressor.run_regress, FakeBundle(signature("r", ("x",), ("outputs",))), "r",
              EXAMPLES)
    assert e.message.startswith("No regression inputs found in SignatureDef: ")


def test_multi_inference_runs_each_task_on_the_same_examples() -> None:
    """A session without ad-hoc signatures (TFLite, this fake) runs each task on one tensor."""
    bundle = FakeBundle(signature("r", ("inputs",), ("outputs",)),
                        signature("c", ("inputs",), ("scores",)),
                        outputs={"outputs": np.array([3.0, 4.0], np.float32),
                                 "scores": np.array([[3.0], [4.0]], np.float32)})
    response = run_multi_inference(bundle, [
        InferenceTask("m", "r", "tensorflow/serving/regress"),
        InferenceTask("m", "c", "tensorflow/serving/classify")], EXAMPLES, servable_version=9)
    assert [r.model_spec.version.value for r in response.results] == [9, 9]
    assert response.results[0].regression_result.regressions[1].value == 4.0
    assert bundle.calls[0][1]["inputs"] is bundle.calls[1][1]["inputs"]


def test_multi_inference_over_different_input_tensors_runs_every_task() -> None:
    """TF2 exports give each signature its own input tensor: TF Serving feeds the examples to
    each (it dropped the "Input tensor must be the same for all Signatures." rule)."""
    other = signature("c", ("inputs",), ("scores",))
    other.inputs["inputs"] = TensorInfo("inputs", "other:0", DataType.DT_STRING, None)
    bundle = FakeBundle(signature("r", ("inputs",), ("outputs",)), other,
                        outputs={"outputs": np.array([3.0, 4.0], np.float32),
                                 "scores": np.array([[3.0], [4.0]], np.float32)})
    response = run_multi_inference(bundle, [
        InferenceTask("m", "r", "tensorflow/serving/regress"),
        InferenceTask("m", "c", "tensorflow/serving/classify")], EXAMPLES)
    assert response.results[0].regression_result.regressions[1].value == 4.0
    assert response.results[1].classification_result.classifications[1].classes[0].score == 4.0
    assert [list(inputs["inputs"]) for _, inputs, _ in bundle.calls] == [EXAMPLES, EXAMPLES]


def test_serialized_input_keeps_example_bytes_and_merges_context() -> None:
    from tensorflow_serving.apis import input_pb2

    proto = input_pb2.Input()
    ctx = proto.example_list_with_context.context
    ctx.features.feature["c"].int64_list.value.append(1)
    ex = proto.example_list_with_context.examples.add()
    ex.features.feature["x"].float_list.value.append(2.0)
    tensor = input_to_serialized_example_tensor(proto)
    assert tensor.tolist() == [ctx.SerializeToString() + ex.SerializeToString()]
    from_bytes = input_to_serialized_example_tensor(proto.SerializeToString())
    assert from_bytes.tolist() == tensor.tolist()
    serialized = serialized_input_class().FromString(proto.SerializeToString())
    assert input_to_serialized_example_tensor(serialized).tolist() == tensor.tolist()
    for empty in (input_pb2.Input(), [], b""):
        e = error(input_to_serialized_example_tensor, empty)
        assert (e.code, e.message) == (Code.INVALID_ARGUMENT, "Input is empty.")
