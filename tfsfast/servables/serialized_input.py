"""Classify/regress input: tf.Examples as the serialized string tensor of a signature's ``inputs``.

TF Serving's ``InputToSerializedExampleTensor`` (``servables/tensorflow/util.cc``): the
``Input`` proto is re-read as a *SerializedInput* — the same wire format with every Example kept
as raw bytes — so examples are never parsed in the server, only handed to the graph's
``parse_example``. With ``example_list_with_context`` each element is the context's bytes
followed by the example's (concatenated serializations merge, so the example wins on a feature
both have). An input without examples is INVALID_ARGUMENT ``Input is empty.``.

Transport-independent: gRPC parses its request bytes straight into the serialized form
(:func:`serialized_request_class`); REST, which builds Examples from JSON, can pass them as a
list of serialized Examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tfsfast.util.status import Code, ServingError

__all__ = [
    "InputLike",
    "input_to_serialized_example_tensor",
    "serialized_input_class",
    "serialized_request_class",
]

# An ``Input`` or ``SerializedInput`` message, the serialized bytes of either, or serialized
# tf.Examples (context already merged in).
InputLike = Any

_CLASSES: dict[str, Any] = {}


def _build_classes() -> None:
    from google.protobuf import descriptor_pb2, message_factory
    from tensorflow_serving.apis import model_pb2

    from tfsfast.util.descriptor_pools import pool_with

    fdp = descriptor_pb2.FieldDescriptorProto
    pool, model_file = pool_with(model_pb2.DESCRIPTOR)
    f = descriptor_pb2.FileDescriptorProto(
        name="tfsfast/serialized_input.proto", package="tfsfast.wire", syntax="proto3",
        dependency=[model_file.name])

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            entry = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = type_name

    opt, rep = fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED
    msg, byt, string = fdp.TYPE_MESSAGE, fdp.TYPE_BYTES, fdp.TYPE_STRING
    message("SerializedExampleList", ("examples", 1, byt, rep, ""))
    message("SerializedExampleListWithContext", ("examples", 1, byt, rep, ""),
            ("context", 2, byt, opt, ""))
    message("SerializedInput",
            ("example_list", 1, msg, opt, ".tfsfast.wire.SerializedExampleList"),
            ("example_list_with_context", 2, msg, opt,
             ".tfsfast.wire.SerializedExampleListWithContext"))
    f.message_type[-1].oneof_decl.add(name="kind")
    for field in f.message_type[-1].field:  # both fields belong to the oneof
        field.oneof_index = 0
    # ClassificationRequest / RegressionRequest: {model_spec = 1, input = 2}.
    message("SerializedRequest",
            ("model_spec", 1, msg, opt, ".tensorflow.serving.ModelSpec"),
            ("input", 2, msg, opt, ".tfsfast.wire.SerializedInput"))
    # MultiInferenceRequest: {repeated InferenceTask tasks = 1, input = 2}.
    message("InferenceTask",
            ("model_spec", 1, msg, opt, ".tensorflow.serving.ModelSpec"),
            ("method_name", 2, string, opt, ""))
    message("SerializedMultiInferenceRequest",
            ("tasks", 1, msg, rep, ".tfsfast.wire.InferenceTask"),
            ("input", 2, msg, opt, ".tfsfast.wire.SerializedInput"))
    pool.Add(f)
    for name in ("SerializedInput", "SerializedRequest", "SerializedMultiInferenceRequest"):
        _CLASSES[name] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tfsfast.wire.{name}"))


def _cls(name: str) -> Any:
    if not _CLASSES:
        _build_classes()
    return _CLASSES[name]


def serialized_input_class() -> Any:
    """The SerializedInput message class (``Input`` with Examples kept as bytes)."""
    return _cls("SerializedInput")


def serialized_request_class(kind: str = "single") -> Any:
    """Message class that parses a Classification/RegressionRequest (``"single"``) or a
    MultiInferenceRequest (``"multi"``) with its ``input`` as a SerializedInput."""
    return _cls("SerializedRequest" if kind == "single" else "SerializedMultiInferenceRequest")


def _examples(serialized_input: Any) -> list[bytes]:
    kind = serialized_input.WhichOneof("kind")
    if kind == "example_list":
        return list(serialized_input.example_list.examples)
    if kind == "example_list_with_context":
        with_context = serialized_input.example_list_with_context
        context = with_context.context
        return [context + example for example in with_context.examples]
    return []


def input_to_serialized_example_tensor(input_like: InputLike) -> np.ndarray:
    """A 1-D object array of serialized tf.Examples, one per example; ``Input is empty.`` if none.
    """
    if isinstance(input_like, (bytes, bytearray, memoryview)):
        examples = _examples(serialized_input_class().FromString(bytes(input_like)))
    elif isinstance(input_like, Sequence):
        examples = [bytes(e) for e in input_like]
    elif input_like.DESCRIPTOR.full_name == "tfsfast.wire.SerializedInput":
        examples = _examples(input_like)
    else:  # a tensorflow.serving.Input: re-read its bytes, as TF Serving does
        examples = _examples(serialized_input_class().FromString(
            input_like.SerializeToString()))
    if not examples:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    out = np.empty(len(examples), dtype=object)
    out[:] = examples
    return out
