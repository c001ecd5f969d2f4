"""Running a Predict on a SavedModelBundle: signature resolution and request checks.

Shared by the REST and gRPC APIs so both resolve signatures and report errors identically
(TF Serving's ``predict_util.cc``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tfsfast.runtime.signature import (
    CLASSIFY_METHOD_NAME,
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    PREDICT_METHOD_NAME,
    REGRESS_METHOD_NAME,
    Signature,
)
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.util.status import Code, ServingError, invalid_argument

VALID_PREDICT_METHODS = (PREDICT_METHOD_NAME, CLASSIFY_METHOD_NAME, REGRESS_METHOD_NAME)


def resolve_signature_name(signature_name: str) -> str:
    return signature_name or DEFAULT_SERVING_SIGNATURE_DEF_KEY


def get_predict_signature(bundle: SavedModelBundle, signature_name: str,
                          enforce_method_name: bool = False) -> Signature:
    """The signature to predict with; FAILED_PRECONDITION (gRPC's text) when there is none."""
    name = resolve_signature_name(signature_name)
    signature = bundle.signatures.get(name)
    if signature is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    check_method_name(signature, enforce_method_name)
    return signature


def get_method_signature(bundle: SavedModelBundle, signature_name: str, enforce_method_name: bool,
                         method_name: str, kind: str,
                         pre_process: Callable[[Signature], object]) -> Signature:
    """TF Serving's ``Get{Classification,Regression}SignatureDef``: the signature named (the
    default when empty), INVALID_ARGUMENT when there is none; with ``enforce_method_name`` its
    method must be ``method_name`` (named ``kind`` in the message), else it must pass
    ``pre_process`` (which raises the error)."""
    name = resolve_signature_name(signature_name)
    signature = bundle.signatures.get(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {name}")
    if enforce_method_name:
        if signature.method_name != method_name:
            raise invalid_argument(f"Expected {kind} signature method_name to be "
                                   f"{method_name}. Was: {signature.method_name}")
    else:
        pre_process(signature)
    return signature


def check_method_name(signature: Signature, enforce_method_name: bool) -> None:
    if enforce_method_name and signature.method_name not in VALID_PREDICT_METHODS:
        raise ServingError(
            Code.INTERNAL,
            "Expected prediction signature method_name to be one of {"
            + ", ".join(VALID_PREDICT_METHODS) + "}. Was: " + signature.method_name)


def check_inputs_match_signature(signature: Signature, inputs: Mapping[str, object]) -> None:
    """The request must name exactly the signature's inputs (TF Serving's message)."""
    if len(inputs) == len(signature.inputs) and all(a in signature.inputs for a in inputs):
        return
    sent = sorted(inputs)
    wanted = sorted(signature.inputs)
    extra = [a for a in sent if a not in signature.inputs]
    missing = [a for a in wanted if a not in inputs]
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(wanted)} "
        f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). "
        f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")


def resolve_output_filter(signature: Signature, output_filter: Sequence[str]) -> list[str] | None:
    """Validates a gRPC ``output_filter``; None (all outputs) when empty."""
    if not output_filter:
        return None
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def run_predict(bundle: SavedModelBundle, signature: Signature, inputs: Mapping[str, np.ndarray],
                output_aliases: Sequence[str] | None = None,
                timeout_in_ms: int = 0) -> dict[str, np.ndarray]:
    """Runs ``signature`` on inputs that were checked against it."""
    return bundle.run(signature.key, inputs, output_aliases, timeout_in_ms)
