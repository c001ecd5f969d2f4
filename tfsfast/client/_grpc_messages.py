"""TF Serving's gRPC messages, written and read without protobuf's runtime or TF's modules.

The methods' request messages are built as bytes and their responses read from bytes, field by
field, straight into numpy arrays and the ``results`` types: the gRPC clients pass bytes to
grpcio's generic calls (no serializer). TensorProtos go through the server's compiled codec
(``_tensor_codec``); every other message here is small, with the field numbers of TF Serving's
``.proto`` files (``tensorflow_serving/apis``, ``tensorflow/core/protobuf/meta_graph.proto``,
``tensorflow/core/example``), which the client's tests check against the official stubs.

Writing protobuf needs no generated code for messages this small, and reading them without
building message objects is what makes the client cheap; generated modules would bring the
protobuf runtime and, for ``SignatureDef``, most of TensorFlow's framework protos with them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from tfsfast.client import _tensor_codec
from tfsfast.client._examples import BYTES, FLOAT, INT64, Example, Feature, normalize_examples
from tfsfast.client.errors import Code, RequestError
from tfsfast.client.results import ModelMetadata, ModelVersionStatus, SignatureDef, TensorInfo
from tfsfast.util.proto_wire import (
    LEN,
    VARINT,
    WireError,
    as_float32,
    as_int64,
    field_bytes,
    field_string,
    field_varint,
    fields,
    varint,
)

__all__ = [
    "CLASSIFY",
    "GET_MODEL_METADATA",
    "GET_MODEL_STATUS",
    "PREDICT",
    "REGRESS",
    "classification_request",
    "model_metadata_request",
    "model_status_request",
    "predict_request",
    "read_classification_response",
    "read_model_metadata_response",
    "read_model_status_response",
    "read_predict_response",
    "read_regression_response",
    "regression_request",
]

PREDICT = "/tensorflow.serving.PredictionService/Predict"
CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
REGRESS = "/tensorflow.serving.PredictionService/Regress"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

# ModelVersionStatus.State (get_model_status.proto).
_STATES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING",
           50: "END"}


def _malformed(what: str, e: Exception) -> RequestError:
    return RequestError(Code.INTERNAL, f"malformed {what} from the server: {e}")


# --- requests -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def model_spec(name: str, version: int | None = None, version_label: str | None = None,
               signature_name: str | None = None) -> bytes:
    """A serialized ``ModelSpec`` (``version`` is an ``Int64Value`` wrapper: present, even when
    0, whenever it is given). Cached: a client asks for the same few specs again and again."""
    if version is not None and version_label is not None:
        raise ValueError("give a version or a version label, not both")
    spec = field_string(1, name)
    if version is not None:
        spec += field_bytes(2, field_varint(1, int(version)))
    if signature_name:
        spec += field_string(3, signature_name)
    if version_label is not None:
        spec += field_string(4, version_label, skip_default=False)
    return spec


def predict_request(spec: bytes, inputs: Mapping[str, Any],
                    output_filter: Sequence[str] | None) -> bytes:
    """A serialized ``PredictRequest``: ``inputs`` alias -> array-like (see
    ``_tensor_codec.encode_tensor``), ``output_filter`` the aliases to answer (None: all)."""
    if not isinstance(inputs, Mapping):
        raise ValueError("inputs must be a mapping input alias -> array")
    parts = [field_bytes(1, spec)]
    for alias, value in inputs.items():
        entry = field_string(1, alias) + field_bytes(2, _tensor_codec.encode_tensor(value))
        parts.append(field_bytes(2, entry))
    if output_filter is not None:
        if isinstance(output_filter, str):
            raise ValueError("output_filter must be a sequence of output aliases")
        parts.extend(field_string(3, alias, skip_default=False) for alias in output_filter)
    return b"".join(parts)


def _feature(kind: str, values: list[Any]) -> bytes:
    """A serialized ``tf.Feature`` (packed floats and int64s, as protobuf writes them)."""
    if kind == BYTES:
        payload = b"".join(field_bytes(1, v.encode() if type(v) is str else v) for v in values)
        return field_bytes(1, payload)
    if kind == FLOAT:
        return field_bytes(2, field_bytes(1, struct.pack(f"<{len(values)}f", *values)))
    if kind == INT64:
        return field_bytes(3, field_bytes(1, b"".join(varint(int(v)) for v in values)))
    return b""  # no values: a Feature with no kind set


def _example(features: dict[str, Feature]) -> bytes:
    """A serialized ``tf.Example``."""
    entries = b"".join(
        field_bytes(1, field_string(1, name, skip_default=False)
                    + field_bytes(2, _feature(kind, values)))
        for name, (kind, values) in features.items())
    return field_bytes(1, entries, skip_default=True)


def _input(examples: Sequence[Example], context: Example | None) -> bytes:
    """A serialized ``tensorflow.serving.Input``: an ``example_list``, or an
    ``example_list_with_context`` when ``context`` is given."""
    listed = b"".join(field_bytes(1, _example(e)) for e in normalize_examples(examples))
    if context is None:
        return field_bytes(1, listed)
    (context_features,) = normalize_examples([context])
    return field_bytes(2, listed + field_bytes(2, _example(context_features)))


def classification_request(spec: bytes, examples: Sequence[Example],
                           context: Example | None) -> bytes:
    """A serialized ``ClassificationRequest``."""
    return field_bytes(1, spec) + field_bytes(2, _input(examples, context))


def regression_request(spec: bytes, examples: Sequence[Example],
                       context: Example | None) -> bytes:
    """A serialized ``RegressionRequest`` (the same fields as ``ClassificationRequest``)."""
    return classification_request(spec, examples, context)


def model_metadata_request(spec: bytes) -> bytes:
    """A serialized ``GetModelMetadataRequest`` asking for ``signature_def``, the one field
    TF Serving serves."""
    return field_bytes(1, spec) + field_string(2, "signature_def")


def model_status_request(spec: bytes) -> bytes:
    """A serialized ``GetModelStatusRequest``."""
    return field_bytes(1, spec)


# --- responses ------------------------------------------------------------------------------


def _map_entry(data: memoryview) -> tuple[str, memoryview]:
    """(key, value bytes) of a map<string, message> entry."""
    key, value = "", memoryview(b"")
    for number, wire_type, v in fields(data):
        if number == 1 and wire_type == LEN:
            key = bytes(v).decode()
        elif number == 2 and wire_type == LEN:
            value = v
    return key, value


def read_predict_response(data: bytes) -> np.ndarray | dict[str, np.ndarray]:
    """The outputs of a ``PredictResponse``: the array when there is one, else a dict
    alias -> array (TF Serving's REST convention, so both transports answer alike)."""
    try:
        outputs = {}
        for number, wire_type, value in fields(data):
            if number == 1 and wire_type == LEN:
                alias, tensor = _map_entry(value)
                outputs[alias] = tensor
    except (WireError, UnicodeDecodeError) as e:
        raise _malformed("PredictResponse", e) from None
    arrays = {alias: _tensor_codec.decode_tensor(t, alias) for alias, t in outputs.items()}
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    return arrays


def read_classification_response(data: bytes) -> list[list[tuple[str, float]]]:
    """A ``ClassificationResponse``'s result: per example, its (label, score) classes."""
    try:
        out: list[list[tuple[str, float]]] = []
        for number, wire_type, result in fields(data):
            if number != 1 or wire_type != LEN:
                continue
            for n, wt, classifications in fields(result):
                if n != 1 or wt != LEN:
                    continue
                classes = []
                for n2, wt2, one in fields(classifications):
                    if n2 != 1 or wt2 != LEN:
                        continue
                    label, score = "", 0.0
                    for n3, wt3, v in fields(one):
                        if n3 == 1 and wt3 == LEN:
                            label = bytes(v).decode()
                        elif n3 == 2 and wt3 == 5:
                            score = as_float32(v)
                    classes.append((label, score))
                out.append(classes)
        return out
    except (WireError, UnicodeDecodeError) as e:
        raise _malformed("ClassificationResponse", e) from None


def read_regression_response(data: bytes) -> list[float]:
    """A ``RegressionResponse``'s result: one value per example."""
    try:
        out: list[float] = []
        for number, wire_type, result in fields(data):
            if number != 1 or wire_type != LEN:
                continue
            for n, wt, regression in fields(result):
                if n != 1 or wt != LEN:
                    continue
                value = 0.0
                for n2, wt2, v in fields(regression):
                    if n2 == 1 and wt2 == 5:
                        value = as_float32(v)
                out.append(value)
        return out
    except WireError as e:
        raise _malformed("RegressionResponse", e) from None


def _read_spec(data: memoryview) -> tuple[str, int]:
    """(name, version) of a ``ModelSpec``."""
    name, version = "", 0
    for number, wire_type, value in fields(data):
        if number == 1 and wire_type == LEN:
            name = bytes(value).decode()
        elif number == 2 and wire_type == LEN:
            for n, wt, v in fields(value):
                if n == 1 and wt == VARINT:
                    version = as_int64(v)
    return name, version


def _read_shape(data: memoryview) -> tuple[int, ...] | None:
    dims: list[int] = []
    unknown_rank = False
    for number, wire_type, value in fields(data):
        if number == 2 and wire_type == LEN:
            size = 0
            for n, wt, v in fields(value):
                if n == 1 and wt == VARINT:
                    size = as_int64(v)
            dims.append(size)
        elif number == 3 and wire_type == VARINT:
            unknown_rank = bool(value)
    return None if unknown_rank else tuple(dims)


def _read_tensor_info(data: memoryview) -> TensorInfo:
    # An absent tensor_shape is proto3's default message: no dimensions, a scalar.
    name, dtype = "", 0
    shape: tuple[int, ...] | None = ()
    for number, wire_type, value in fields(data):
        if number == 1 and wire_type == LEN:
            name = bytes(value).decode()
        elif number == 2 and wire_type == VARINT:
            dtype = value
        elif number == 3 and wire_type == LEN:
            shape = _read_shape(value)
    return TensorInfo(name, _tensor_codec.dtype_name(dtype), shape)


def _read_signature_def(data: memoryview) -> SignatureDef:
    inputs: dict[str, TensorInfo] = {}
    outputs: dict[str, TensorInfo] = {}
    method_name = ""
    for number, wire_type, value in fields(data):
        if number in (1, 2) and wire_type == LEN:
            alias, info = _map_entry(value)
            (inputs if number == 1 else outputs)[alias] = _read_tensor_info(info)
        elif number == 3 and wire_type == LEN:
            method_name = bytes(value).decode()
    return SignatureDef(method_name, inputs, outputs)


def read_model_metadata_response(data: bytes) -> ModelMetadata:
    """A ``GetModelMetadataResponse``: its model spec and the ``SignatureDefMap`` packed in
    the ``signature_def`` entry of ``metadata`` (an ``Any``)."""
    try:
        name, version = "", 0
        signature_defs: dict[str, SignatureDef] = {}
        for number, wire_type, value in fields(data):
            if number == 1 and wire_type == LEN:
                name, version = _read_spec(value)
            elif number == 2 and wire_type == LEN:
                key, packed = _map_entry(value)
                if key != "signature_def":
                    continue
                for n, wt, v in fields(packed):  # Any: type_url = 1, value = 2
                    if n != 2 or wt != LEN:
                        continue
                    for n2, wt2, entry in fields(v):
                        if n2 == 1 and wt2 == LEN:
                            signature_key, signature = _map_entry(entry)
                            signature_defs[signature_key] = _read_signature_def(signature)
        return ModelMetadata(name, version, signature_defs)
    except (WireError, UnicodeDecodeError) as e:
        raise _malformed("GetModelMetadataResponse", e) from None


def read_model_status_response(data: bytes) -> list[ModelVersionStatus]:
    """A ``GetModelStatusResponse``: every version's state and status."""
    try:
        out = []
        for number, wire_type, value in fields(data):
            if number != 1 or wire_type != LEN:
                continue
            version, state, code, message = 0, 0, 0, ""
            for n, wt, v in fields(value):
                if n == 1 and wt == VARINT:
                    version = as_int64(v)
                elif n == 2 and wt == VARINT:
                    state = v
                elif n == 3 and wt == LEN:
                    for n2, wt2, v2 in fields(v):
                        if n2 == 1 and wt2 == VARINT:
                            code = v2
                        elif n2 == 2 and wt2 == LEN:
                            message = bytes(v2).decode()
            out.append(ModelVersionStatus(version, _STATES.get(state, f"STATE_{state}"),
                                          _code(code), message))
        return out
    except (WireError, UnicodeDecodeError) as e:
        raise _malformed("GetModelStatusResponse", e) from None


def _code(value: int) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.UNKNOWN
