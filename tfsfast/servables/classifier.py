"""Classification on a SavedModelBundle: TF Serving's ``classifier.cc``, transport-independent.

Entry point for both APIs: :func:`run_classify` (signature lookup and structure checks, one run,
result checks) returning a ``ClassificationResult``. The pieces are public for MultiInference:
:func:`pre_process_classification` (which aliases to feed and fetch) and
:func:`post_process_classification_result` (output checks, result proto).

Signature rules (TF Serving with ``--enable_signature_method_name_check`` off, its default): the
signature must have exactly one input, ``inputs`` (serialized tf.Examples), and one or two
outputs among ``classes`` (DT_STRING ``[batch, num_classes]``) and ``scores`` (DT_FLOAT
``[batch, num_classes]``); its ``method_name`` is not looked at, so TF2 exports whose
classification signatures are declared as predict signatures are served. With the check on,
``method_name`` must be ``tensorflow/serving/classify``. Errors and texts are TF Serving's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfsfast.runtime.dtypes import from_numpy
from tfsfast.runtime.signature import CLASSIFY_METHOD_NAME, Signature
from tfsfast.servables.predict_util import get_method_signature
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.serialized_input import InputLike, input_to_serialized_example_tensor
from tfsfast.util.status import invalid_argument as _invalid

CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"


def signature_debug_string(signature: Signature) -> str:
    """The SignatureDef in text format, as TF's ``DebugString`` prints it in messages."""
    from google.protobuf import text_format

    return text_format.MessageToString(signature.proto) if signature.proto is not None else ""


def shape_debug_string(array: np.ndarray) -> str:
    """TF's ``TensorShape::DebugString``: ``[2,3]``."""
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def dtype_name(array: np.ndarray) -> str:
    """TF's ``DataType_Name`` for an output array (``DT_FLOAT``)."""
    try:
        return from_numpy(array.dtype).name
    except KeyError:
        return str(array.dtype)


def get_classification_signature(bundle: SavedModelBundle, signature_name: str,
                                 enforce_method_name: bool = False) -> Signature:
    """The signature to classify with (``GetClassificationSignatureDef``)."""
    return get_method_signature(bundle, signature_name, enforce_method_name, CLASSIFY_METHOD_NAME,
                                "classification", pre_process_classification)


def pre_process_classification(signature: Signature, enforce_method_name: bool = False
                               ) -> tuple[str, list[str]]:
    """(input alias, output aliases to fetch: ``classes`` then ``scores``), or the error."""
    if enforce_method_name and signature.method_name != CLASSIFY_METHOD_NAME:
        raise _invalid(f"Expected classification signature method_name to be "
                       f"{CLASSIFY_METHOD_NAME}. Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise _invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise _invalid("No classification inputs found in SignatureDef: "
                       + signature_debug_string(signature))
    outputs = [a for a in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES)
               if a in signature.outputs]
    if not outputs:
        raise _invalid(f'Expected classification signature outputs to contain at least one of '
                       f'"{CLASSIFY_OUTPUT_CLASSES}" or "{CLASSIFY_OUTPUT_SCORES}". Signature '
                       f'was: {signature_debug_string(signature)}')
    return CLASSIFY_INPUTS, outputs


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        # A proto string must be UTF-8; TF Serving would send the raw bytes.
        return value.decode("utf-8", "replace")
    return str(value)


def post_process_classification_result(signature: Signature, num_examples: int,
                                       outputs: Mapping[str, np.ndarray],
                                       result: Any = None) -> Any:
    """Checks the ``classes``/``scores`` outputs and fills a ``ClassificationResult``."""
    from tensorflow_serving.apis import classification_pb2

    if result is None:
        result = classification_pb2.ClassificationResult()
    classes = outputs.get(CLASSIFY_OUTPUT_CLASSES) if (
        CLASSIFY_OUTPUT_CLASSES in signature.outputs) else None
    scores = outputs.get(CLASSIFY_OUTPUT_SCORES) if (
        CLASSIFY_OUTPUT_SCORES in signature.outputs) else None
    if classes is not None:
        if classes.ndim != 2:
            raise _invalid("Expected Tensor shape: [batch_size num_classes] but got "
                           + shape_debug_string(classes))
        if classes.dtype.kind not in "OSU":
            raise _invalid(f"Expected classes Tensor of DT_STRING. Got: {dtype_name(classes)}")
        if classes.shape[0] != num_examples:
            raise _invalid(f"Expected classes output batch size of {num_examples}. Got: "
                           f"{classes.shape[0]}")
    if scores is not None:
        if scores.ndim != 2:
            raise _invalid("Expected Tensor shape: [batch_size num_classes] but got "
                           + shape_debug_string(scores))
        if scores.dtype != np.float32:
            raise _invalid(f"Expected scores Tensor of DT_FLOAT. Got: {dtype_name(scores)}")
        if scores.shape[0] != num_examples:
            raise _invalid(f"Expected scores output batch size of {num_examples}. Got: "
                           f"{scores.shape[0]}")
    num_classes = 0
    if classes is not None and scores is not None:
        if classes.shape[1] != scores.shape[1]:
            raise _invalid(f"Tensors class and score should match in dim_size(1). Got "
                           f"{classes.shape[1]} vs. {scores.shape[1]}")
        num_classes = classes.shape[1]
    elif classes is not None:
        num_classes = classes.shape[1]
    elif scores is not None:
        num_classes = scores.shape[1]
    class_rows = classes.tolist() if classes is not None else None
    score_rows = scores.tolist() if scores is not None else None
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            cls = classifications.classes.add()
            if class_rows is not None:
                cls.label = _label(class_rows[i][c])
            if score_rows is not None:
                cls.score = score_rows[i][c]
    return result


def run_classify(bundle: SavedModelBundle, signature_name: str, input_like: InputLike, *,
                 enforce_method_name: bool = False, timeout_in_ms: int = 0) -> Any:
    """Classifies the examples of ``input_like`` (an ``Input`` proto, its serialized form, a
    SerializedInput, or a list of serialized tf.Examples) with one run of the signature.

    Returns a ``ClassificationResult``; raises ``ServingError`` with TF Serving's code and text.
    """
    signature = get_classification_signature(bundle, signature_name, enforce_method_name)
    input_alias, output_aliases = pre_process_classification(signature, enforce_method_name)
    examples = input_to_serialized_example_tensor(input_like)
    outputs = bundle.run(signature.key, {input_alias: examples}, output_aliases, timeout_in_ms)
    return post_process_classification_result(signature, len(examples), outputs)
