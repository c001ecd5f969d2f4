"""Regression on a SavedModelBundle: TF Serving's ``regressor.cc``, transport-independent.

Entry point for both APIs: :func:`run_regress` returning a ``RegressionResult``;
:func:`pre_process_regression` and :func:`post_process_regression_result` serve MultiInference.

Signature rules (method-name check off, TF Serving's default): exactly one input, ``inputs``
(serialized tf.Examples), and one output, ``outputs``, DT_FLOAT shaped ``[batch]`` or
``[batch, 1]``. With ``--enable_signature_method_name_check`` the ``method_name`` must be
``tensorflow/serving/regress``. Errors and texts are TF Serving's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfsfast.runtime.signature import REGRESS_METHOD_NAME, Signature
from tfsfast.servables.classifier import dtype_name, shape_debug_string, signature_debug_string
from tfsfast.servables.predict_util import get_method_signature
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.servables.serialized_input import InputLike, input_to_serialized_example_tensor
from tfsfast.util.status import Code, ServingError
from tfsfast.util.status import invalid_argument as _invalid

REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


def get_regression_signature(bundle: SavedModelBundle, signature_name: str,
                             enforce_method_name: bool = False) -> Signature:
    """The signature to regress with (``GetRegressionSignatureDef``)."""
    return get_method_signature(bundle, signature_name, enforce_method_name, REGRESS_METHOD_NAME,
                                "regression", pre_process_regression)


def pre_process_regression(signature: Signature, enforce_method_name: bool = False
                           ) -> tuple[str, list[str]]:
    """(input alias, [output alias]), or the error."""
    if enforce_method_name and signature.method_name != REGRESS_METHOD_NAME:
        raise _invalid(f"Expected regression signature method_name to be {REGRESS_METHOD_NAME}. "
                       f"Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise _invalid("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise _invalid("No regression inputs found in SignatureDef: "
                       + signature_debug_string(signature))
    if REGRESS_OUTPUTS not in signature.outputs:
        raise _invalid("No regression outputs found in SignatureDef: "
                       + signature_debug_string(signature))
    return REGRESS_INPUTS, [REGRESS_OUTPUTS]


def post_process_regression_result(signature: Signature, num_examples: int,
                                   outputs: Mapping[str, np.ndarray], result: Any = None) -> Any:
    """Checks the ``outputs`` tensor and fills a ``RegressionResult``."""
    from tensorflow_serving.apis import regression_pb2

    if REGRESS_OUTPUTS not in signature.outputs:
        raise ServingError(Code.FAILED_PRECONDITION, "No regression outputs found in "
                           "SignatureDef: " + signature_debug_string(signature))
    output = outputs.get(REGRESS_OUTPUTS)
    if output is None:
        raise _invalid(f"Could not find output tensor "
                       f"'{signature.outputs[REGRESS_OUTPUTS].tensor_name}'")
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise _invalid("Expected output Tensor shape to be either [batch_size] or "
                       "[batch_size, 1] but got " + shape_debug_string(output))
    if output.shape[0] != num_examples:
        raise _invalid(f"Input batch size did not match output batch size: {num_examples} vs. "
                       f"{output.shape[0]}")
    if output.dtype != np.float32:
        raise _invalid(f"Expected output Tensor of DT_FLOAT.  Got: {dtype_name(output)}")
    if output.size != num_examples:
        raise _invalid(f"Expected output batch size to be {num_examples}.  Got: {output.size}")
    if result is None:
        result = regression_pb2.RegressionResult()
    for value in output.ravel().tolist():
        result.regressions.add().value = value
    return result


def run_regress(bundle: SavedModelBundle, signature_name: str, input_like: InputLike, *,
                enforce_method_name: bool = False, timeout_in_ms: int = 0) -> Any:
    """Regresses the examples of ``input_like`` (as in ``classifier.run_classify``) with one run.

    Returns a ``RegressionResult``; raises ``ServingError`` with TF Serving's code and text.
    """
    signature = get_regression_signature(bundle, signature_name, enforce_method_name)
    input_alias, output_aliases = pre_process_regression(signature, enforce_method_name)
    examples = input_to_serialized_example_tensor(input_like)
    outputs = bundle.run(signature.key, {input_alias: examples}, output_aliases, timeout_in_ms)
    return post_process_regression_result(signature, len(examples), outputs)
