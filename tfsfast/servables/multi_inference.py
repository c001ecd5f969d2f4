"""MultiInference on a SavedModelBundle: TF Serving's ``multi_inference.cc``.

Several classify/regress tasks of one model over the same tf.Examples. Checks, in TF Serving's
order and with its texts (all INVALID_ARGUMENT unless noted): a task with an empty model name,
tasks naming different models, a signature evaluated twice, a signature the model lacks, a
``method_name`` other than classify/regress (UNIMPLEMENTED), and each signature's structure (as
for Classify/Regress). Results come back in task order, each with its ``model_spec`` (name,
resolved signature name, served version).

Like TF Serving, the union of every task's output tensors is fetched in one run (one
``Session::Run``), through a signature merged from the tasks' signatures (``_run_tasks``), and
the serialized examples are fed to every distinct input tensor of the tasks' signatures
(``input_tensor_name_set``): each signature of a TF2 export reads its own placeholder, while a
TF1 export's signatures usually share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tfsfast.runtime.signature import (
    CLASSIFY_METHOD_NAME,
    REGRESS_METHOD_NAME,
    Signature,
    TensorInfo,
)
from tfsfast.servables import classifier, regressor
from tfsfast.servables.predict_util import resolve_signature_name
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.serialized_input import InputLike, input_to_serialized_example_tensor
from tfsfast.util.status import Code, ServingError


@dataclass(frozen=True)
class InferenceTask:
    """One task of a MultiInferenceRequest: the model spec's name and signature, the method."""

    model_name: str
    signature_name: str
    method_name: str


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def _plan(bundle: SavedModelBundle, tasks: Sequence[InferenceTask], enforce_method_name: bool
          ) -> list[tuple[InferenceTask, Signature, str, list[str]]]:
    model_name = ""
    seen: set[str] = set()
    plan = []
    for task in tasks:
        if not task.model_name:
            raise _invalid("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_name
        elif model_name != task.model_name:
            raise _invalid("All ModelSpecs in a MultiInferenceRequest must access the same "
                           "model name.")
        name = resolve_signature_name(task.signature_name)
        if name in seen:
            raise _invalid(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = bundle.signatures.get(name)
        if signature is None:
            raise _invalid(f"Requested signature not found in model graph: {name}")
        if task.method_name == CLASSIFY_METHOD_NAME:
            input_alias, outputs = classifier.pre_process_classification(
                signature, enforce_method_name)
        elif task.method_name == REGRESS_METHOD_NAME:
            input_alias, outputs = regressor.pre_process_regression(
                signature, enforce_method_name)
        else:
            raise ServingError(Code.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {task.method_name}")
        plan.append((task, signature, input_alias, outputs))
    return plan


def _merged_signature(plan: Sequence[tuple[InferenceTask, Signature, str, list[str]]]
                      ) -> Signature:
    """One signature over the tasks' distinct input tensors and every task's outputs, each
    named ``<task index>/<alias>``; an input tensor several tasks read is named after the first.
    """
    inputs: dict[str, TensorInfo] = {}
    input_tensors: set[str] = set()
    outputs = {}
    for i, (_, signature, input_alias, aliases) in enumerate(plan):
        info = signature.inputs[input_alias]
        if info.tensor_name not in input_tensors:
            # TensorFlow refuses a tensor fed twice in one run.
            input_tensors.add(info.tensor_name)
            inputs[f"{i}/{input_alias}"] = replace(info, alias=f"{i}/{input_alias}")
        for alias in aliases:
            info = signature.outputs[alias]
            outputs[f"{i}/{alias}"] = TensorInfo(f"{i}/{alias}", info.tensor_name, info.dtype,
                                                 info.shape)
    key = "\0multi_inference:" + ",".join(f"{s.key}[{','.join(a)}]" for _, s, _, a in plan)
    return Signature(key, "", inputs, outputs)


def _run_tasks(bundle: SavedModelBundle, plan: Sequence[tuple[InferenceTask, Signature, str,
                                                              list[str]]],
               examples: Any, timeout_in_ms: int) -> list[dict[str, Any]]:
    """Each task's outputs, from ONE run that feeds the examples to every input tensor of the
    tasks and fetches the union of their outputs (as TF Serving does); a runtime without ad-hoc
    signatures (TFLite) runs each task instead."""
    run_signature = getattr(getattr(bundle, "session", None), "run_signature", None)
    if run_signature is None:
        return [bundle.run(signature.key, {input_alias: examples}, outputs, timeout_in_ms)
                for _, signature, input_alias, outputs in plan]
    signature = _merged_signature(plan)
    merged = run_signature(signature, dict.fromkeys(signature.inputs, examples), None,
                           timeout_in_ms)
    return [{alias: merged[f"{i}/{alias}"] for alias in aliases}
            for i, (_, _, _, aliases) in enumerate(plan)]


def run_multi_inference(bundle: SavedModelBundle, tasks: Sequence[InferenceTask],
                        input_like: InputLike, *, servable_version: int | None = None,
                        enforce_method_name: bool = False, timeout_in_ms: int = 0) -> Any:
    """Runs every task on the examples of ``input_like``; returns a ``MultiInferenceResponse``.
    """
    from tensorflow_serving.apis import inference_pb2

    plan = _plan(bundle, tasks, enforce_method_name)
    examples = input_to_serialized_example_tensor(input_like)
    outputs = _run_tasks(bundle, plan, examples, timeout_in_ms)
    response = inference_pb2.MultiInferenceResponse()
    for (task, signature, _, _), task_outputs in zip(plan, outputs, strict=True):
        result = response.results.add()
        spec = result.model_spec
        spec.name = task.model_name
        spec.signature_name = signature.key
        if servable_version is not None:
            spec.version.value = servable_version
        if task.method_name == CLASSIFY_METHOD_NAME:
            classifier.post_process_classification_result(
                signature, len(examples), task_outputs, result.classification_result)
        else:
            regressor.post_process_regression_result(
                signature, len(examples), task_outputs, result.regression_result)
    return response
