"""Pure-Python TensorProto codec for the gRPC API: the reference twin of ``_tensor_proto``.

TensorProto ⇄ numpy with TensorFlow's own rules (``Tensor::FromProto``, ``AsProtoField``,
``AsProtoTensorContent``), and the wire-level PredictRequest/PredictResponse pieces the
prediction service needs. The compiled module parses and writes the protobuf wire format by hand;
this twin goes through the protobuf runtime (upb) instead, so the two are independent and the
property tests that compare them mean something.

Decoding (``TensorProtoCodec(limits).decode_tensor``), what TF's ``Tensor::FromProto`` accepts,
and nothing else:

* ``dtype`` must be a type numpy can hold (``tfsfast.runtime.dtypes``); ``DT_INVALID``,
  quantized, resource, variant and float8 types are refused.
* The shape's dimensions must be >= 0 (``unknown_rank`` is ignored, as TF ignores it for a
  concrete shape) and their product must fit int64.
* A non-empty ``tensor_content`` wins over the typed fields. For numeric types it must hold
  exactly ``elements * itemsize`` bytes (little-endian, C order) and becomes a read-only array
  *over the request's own bytes* (no copy). For strings it is TF's string-list encoding (the
  varint length of every element, then all the bytes).
* Otherwise the typed ``*_val`` field of the dtype gives the values: no values mean zeros (empty
  strings); fewer values than elements are padded by repeating the last one; extra values are
  ignored. ``half_val`` carries float16 and bfloat16 as 16-bit patterns in int32s;
  ``scomplex_val``/``dcomplex_val`` carry (real, imaginary) pairs; int8/int16/uint8/uint16 use
  ``int_val``.
* Strings decode to a numpy object array of ``bytes``.

Anything else raises ``ServingError(INVALID_ARGUMENT, "tensor parsing error: <name>")``, TF
Serving's text. On top of TF, tfsfast bounds what one request can make the server allocate (the
typed fields' padding rule lets a few bytes ask for any number of elements), by the codec's
``CodecLimits``: rank at most ``max_tensor_rank``, at most ``max_tensor_elements`` elements per
tensor and ``max_request_elements`` per request; these errors are INVALID_ARGUMENT and name the
limit. The module-level ``decode_tensor`` is the codec with ``DEFAULT_CODEC_LIMITS``.

Encoding (``encode_tensor``) writes ``dtype``, ``tensor_shape`` (present even for a scalar) and
either every value in the typed field (``AsProtoField``, TF Serving's default) or the raw bytes
in ``tensor_content`` (``AsProtoTensorContent``, ``--enable_serialization_as_tensor_content``;
strings then use the string-list encoding).

PredictRequest/PredictResponse: ``decode_predict_request`` reads the fields the server uses
(``model_spec``, ``inputs`` as serialized TensorProtos, ``output_filter``) and
``encode_predict_response`` writes the response; see their docstrings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.runtime.dtypes import DataType, from_numpy, to_numpy
from tfsfast.util import proto_wire
from tfsfast.util.status import Code, ServingError

__all__ = [
    "PredictRequestView",
    "TensorProtoCodec",
    "decode_predict_request",
    "decode_tensor",
    "encode_predict_response",
    "encode_tensor",
]

_INT64_MAX = 2**63 - 1

# dtype -> TensorProto typed field that carries it.
_FIELD: dict[int, str] = {
    DataType.DT_FLOAT: "float_val",
    DataType.DT_DOUBLE: "double_val",
    DataType.DT_INT32: "int_val",
    DataType.DT_UINT8: "int_val",
    DataType.DT_INT16: "int_val",
    DataType.DT_INT8: "int_val",
    DataType.DT_UINT16: "int_val",
    DataType.DT_STRING: "string_val",
    DataType.DT_COMPLEX64: "scomplex_val",
    DataType.DT_INT64: "int64_val",
    DataType.DT_BOOL: "bool_val",
    DataType.DT_COMPLEX128: "dcomplex_val",
    DataType.DT_HALF: "half_val",
    DataType.DT_BFLOAT16: "half_val",
    DataType.DT_UINT32: "uint32_val",
    DataType.DT_UINT64: "uint64_val",
}


def _tensor_pb2() -> Any:
    from tensorflow.core.framework import tensor_pb2

    return tensor_pb2


def _parse_error(name: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name}")


def check_limits(name: str, dims: Sequence[int], limits: CodecLimits) -> int:
    """The element count of ``dims``; raises the limit errors (see the module docstring)."""
    if len(dims) > limits.max_tensor_rank:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Input: {name} has rank {len(dims)}, which exceeds the maximum "
                           f"tensor rank of {limits.max_tensor_rank}")
    count = math.prod(dims)
    if count > limits.max_tensor_elements:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Input: {name} has {count} elements, which exceeds the maximum of "
                           f"{limits.max_tensor_elements} elements per tensor")
    return count


def request_limit_error(limits: CodecLimits) -> ServingError:
    """The error of a request over ``limits.max_request_elements``."""
    return ServingError(Code.INVALID_ARGUMENT,
                        f"Request has more than {limits.max_request_elements} tensor elements, "
                        "the maximum per request")


def _decode_string_list(content: bytes, count: int) -> np.ndarray:
    """TF's ``DecodeStringList``: ``count`` varint lengths, then the bytes of every element."""
    lengths = []
    pos = 0
    for _ in range(count):
        length, pos = proto_wire.read_varint(content, pos)
        lengths.append(length)
    if pos + sum(lengths) != len(content):
        raise ValueError("string list size mismatch")
    out = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        out[i] = content[pos:pos + length]
        pos += length
    return out


def _string_list_content(values: Sequence[bytes]) -> bytes:
    return b"".join(proto_wire.varint(len(v)) for v in values) + b"".join(values)


def _typed_values(proto: Any, dtype: int) -> np.ndarray:
    """The typed field's values as a flat array of the dtype (complex pairs joined)."""
    values = getattr(proto, _FIELD[dtype])
    if dtype == DataType.DT_STRING:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    if dtype in (DataType.DT_HALF, DataType.DT_BFLOAT16):
        # A 16-bit pattern in an int32: TF keeps the low 16 bits.
        bits = np.array(values, dtype=np.int64).astype(np.uint16)
        return bits.view(to_numpy(dtype))
    if dtype in (DataType.DT_COMPLEX64, DataType.DT_COMPLEX128):
        parts = np.array(values, dtype=np.float32 if dtype == DataType.DT_COMPLEX64
                         else np.float64)
        parts = parts[: len(parts) // 2 * 2]
        return parts.view(to_numpy(dtype))
    if dtype in (DataType.DT_FLOAT, DataType.DT_DOUBLE, DataType.DT_BOOL):
        return np.array(values, dtype=to_numpy(dtype))
    # int_val holds int8/int16/uint8/uint16 as int32: C++ narrows by truncation, as astype does.
    wide = np.uint64 if dtype in (DataType.DT_UINT32, DataType.DT_UINT64) else np.int64
    return np.array(values, dtype=wide).astype(to_numpy(dtype), copy=False)


def _decode_tensor(data: bytes | memoryview, name: str, budget: list[int] | None,
                   limits: CodecLimits) -> np.ndarray:
    """``TensorProtoCodec(limits).decode_tensor``."""
    tensor_pb2 = _tensor_pb2()
    try:
        proto = tensor_pb2.TensorProto.FromString(bytes(data))
    except Exception:
        raise _parse_error(name) from None
    return tensor_proto_to_ndarray(proto, name, budget, limits)


def tensor_proto_to_ndarray(proto: Any, name: str = "", budget: list[int] | None = None,
                            limits: CodecLimits = DEFAULT_CODEC_LIMITS) -> np.ndarray:
    """``decode_tensor`` for a TensorProto message already parsed."""
    dtype = proto.dtype
    if dtype not in _FIELD:
        raise _parse_error(name)
    dims = [int(d.size) for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise _parse_error(name)
    product = 1
    for d in dims:
        product *= d
        if product > _INT64_MAX:
            raise _parse_error(name)
    count = check_limits(name, dims, limits)
    if budget is not None:
        if budget[0] + count > limits.max_request_elements:
            raise request_limit_error(limits)
        budget[0] += count
    np_dtype = to_numpy(dtype)
    if count == 0:
        return np.empty(dims, dtype=np_dtype)
    content = proto.tensor_content
    if content:
        if dtype == DataType.DT_STRING:
            try:
                return _decode_string_list(content, count).reshape(dims)
            except ValueError:
                raise _parse_error(name) from None
        if len(content) != count * np_dtype.itemsize:
            raise _parse_error(name)
        return np.frombuffer(content, dtype=np_dtype).reshape(dims)
    values = _typed_values(proto, dtype)
    if len(values) == 0:
        if dtype == DataType.DT_STRING:
            out = np.empty(count, dtype=object)
            out[:] = [b""] * count
            return out.reshape(dims)
        return np.zeros(dims, dtype=np_dtype)
    if len(values) >= count:
        return values[:count].reshape(dims)
    out = np.empty(count, dtype=np_dtype)
    out[: len(values)] = values
    out[len(values):] = values[-1]
    return out.reshape(dims)


def _string_items(array: np.ndarray) -> list[bytes]:
    return [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel().tolist()]


def ndarray_to_tensor_proto(array: np.ndarray, dtype: int | None = None,
                            tensor_content: bool = False, proto: Any = None) -> Any:
    """Fills (or makes) a TensorProto message for ``array`` (see ``encode_tensor``)."""
    tensor_pb2 = _tensor_pb2()
    if proto is None:
        proto = tensor_pb2.TensorProto()
    array = np.asarray(array)
    dtype = from_numpy(array.dtype) if dtype is None else DataType(dtype)
    if dtype not in _FIELD:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Cannot return a tensor of type {DataType(dtype).name}")
    proto.dtype = dtype
    shape = proto.tensor_shape
    shape.SetInParent()
    for d in array.shape:
        shape.dim.add().size = d
    if array.size == 0:
        return proto
    if dtype == DataType.DT_STRING:
        items = _string_items(array)
        if tensor_content:
            proto.tensor_content = _string_list_content(items)
        else:
            proto.string_val.extend(items)
        return proto
    np_dtype = to_numpy(dtype)
    flat = np.ascontiguousarray(array, dtype=np_dtype).ravel()
    if tensor_content:
        proto.tensor_content = flat.tobytes()
        return proto
    values = getattr(proto, _FIELD[dtype])
    if dtype in (DataType.DT_HALF, DataType.DT_BFLOAT16):
        values.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif dtype in (DataType.DT_COMPLEX64, DataType.DT_COMPLEX128):
        values.extend(flat.view(np.float32 if dtype == DataType.DT_COMPLEX64
                                else np.float64).tolist())
    else:
        values.extend(flat.tolist())
    return proto


def encode_tensor(array: np.ndarray, dtype: int | None = None,
                  tensor_content: bool = False) -> bytes:
    """The serialized TensorProto for ``array``; ``dtype`` defaults to the array's.

    ``tensor_content=False`` writes every value in the dtype's typed field (TF's
    ``AsProtoField``); ``True`` writes the raw little-endian bytes (``AsProtoTensorContent``).
    Object arrays are strings (``str`` elements are written as UTF-8).
    """
    return ndarray_to_tensor_proto(array, dtype, tensor_content).SerializeToString()


# ---------------------------------------------------------------------------------------------
# PredictRequest / PredictResponse.
# ---------------------------------------------------------------------------------------------


@dataclass
class PredictRequestView:
    """What the prediction service needs from a PredictRequest, read without copying tensors.

    ``version`` is None unless ``model_spec.version`` is set; ``version_label`` is None unless
    ``model_spec.version_label`` is set. ``inputs`` maps each alias to its serialized
    TensorProto (a view into the request bytes in the compiled codec). The disaggregated-serving
    fields (5, 6, 7) are not read, as TF Serving ignores them.
    """

    has_model_spec: bool = False
    model_name: str = ""
    version: int | None = None
    version_label: str | None = None
    signature_name: str = ""
    inputs: dict[str, bytes | memoryview] = field(default_factory=dict)
    output_filter: list[str] = field(default_factory=list)


_WIRE_REQUEST: Any = None


def _wire_request_class() -> Any:
    """PredictRequest with its ``inputs`` entries as plain messages ``{string key = 1;
    repeated bytes value = 2}``: the same wire format, tensors unparsed, and every occurrence
    of an entry's value kept, so that ``decode_predict_request`` can merge them as protobuf
    merges a message field (a ``map<string, bytes>`` would keep only the last)."""
    global _WIRE_REQUEST
    if _WIRE_REQUEST is None:
        from google.protobuf import descriptor_pb2, message_factory
        from tensorflow_serving.apis import model_pb2

        from tfsfast.util.descriptor_pools import pool_with

        pool, model_file = pool_with(model_pb2.DESCRIPTOR)
        f = descriptor_pb2.FileDescriptorProto(
            name="tfsfast/predict_request_wire.proto", package="tfsfast.wire",
            syntax="proto3", dependency=[model_file.name])
        msg = f.message_type.add(name="PredictRequest")
        entry = msg.nested_type.add(name="InputsEntry")
        label_opt = descriptor_pb2.FieldDescriptorProto
        entry.field.add(name="key", number=1, type=label_opt.TYPE_STRING,
                        label=label_opt.LABEL_OPTIONAL)
        entry.field.add(name="value", number=2, type=label_opt.TYPE_BYTES,
                        label=label_opt.LABEL_REPEATED)
        msg.field.add(name="model_spec", number=1, type=label_opt.TYPE_MESSAGE,
                      label=label_opt.LABEL_OPTIONAL, type_name=".tensorflow.serving.ModelSpec")
        msg.field.add(name="inputs", number=2, type=label_opt.TYPE_MESSAGE,
                      label=label_opt.LABEL_REPEATED,
                      type_name=".tfsfast.wire.PredictRequest.InputsEntry")
        msg.field.add(name="output_filter", number=3, type=label_opt.TYPE_STRING,
                      label=label_opt.LABEL_REPEATED)
        pool.Add(f)
        _WIRE_REQUEST = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tfsfast.wire.PredictRequest"))
    return _WIRE_REQUEST


def _well_formed(part: bytes) -> bool:
    """Whether ``part`` is a sequence of complete fields (their contents unchecked)."""
    from google.protobuf import empty_pb2

    try:
        empty_pb2.Empty.FromString(part)  # every field is unknown to Empty: skipped, checked
    except Exception:
        return False
    return True


def _merged_value(parts: Sequence[bytes]) -> bytes:
    """One ``inputs`` entry's TensorProto from the occurrences of its ``value`` field.

    Protobuf merges the occurrences of a message field, and a message parsed from the
    concatenation of serializations is their merge, so the parts are joined; but each part is a
    message of its own, which the next part must not complete: a part that is not well-formed
    on its own is the value instead, so the tensor is refused as any malformed tensor is.
    """
    if len(parts) == 1:
        return parts[0]
    for part in parts:
        if not _well_formed(part):
            return part
    return b"".join(parts)


def decode_predict_request(data: bytes) -> PredictRequestView:
    """Reads a serialized PredictRequest; INVALID_ARGUMENT when it is not valid protobuf.

    Protobuf's parse rules: ``model_spec`` occurrences merge; ``inputs`` entries with the same
    key keep the last; one entry's value split into several occurrences is merged
    (``_merged_value``). Tensors are parsed later, by ``decode_tensor``: a malformed tensor is
    a tensor parsing error, not a request parsing error.
    """
    try:
        request = _wire_request_class().FromString(bytes(data))
    except Exception:
        raise ServingError(Code.INVALID_ARGUMENT,
                           "Could not parse the request as a tensorflow.serving.PredictRequest"
                           ) from None
    spec = request.model_spec
    kind = spec.WhichOneof("version_choice")
    return PredictRequestView(
        has_model_spec=request.HasField("model_spec"),
        model_name=spec.name,
        version=spec.version.value if kind == "version" else None,
        version_label=spec.version_label if kind == "version_label" else None,
        signature_name=spec.signature_name,
        inputs={entry.key: _merged_value(entry.value) for entry in request.inputs},
        output_filter=list(request.output_filter))


def encode_predict_response(model_name: str, signature_name: str, version: int | None,
                            outputs: Sequence[tuple[str, np.ndarray]] | Mapping[str, np.ndarray],
                            tensor_content: bool = False) -> bytes:
    """A serialized PredictResponse: ``model_spec`` {name, version, signature_name} and one
    ``outputs`` entry per (alias, array), each written by ``encode_tensor``."""
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    spec = response.model_spec
    spec.name = model_name
    if version is not None:
        spec.version.value = version
    spec.signature_name = signature_name
    items = outputs.items() if isinstance(outputs, Mapping) else outputs
    for alias, array in items:
        ndarray_to_tensor_proto(array, None, tensor_content, response.outputs[alias])
    return response.SerializeToString()


class TensorProtoCodec:
    """The TensorProto decoding that ``limits`` (a ``CodecLimits``, kept for its life) bound.

    ``decode_tensor(data, name="", budget=None)``: the array a serialized TensorProto holds (see
    the module docstring for the rules); ``name`` is the input alias its errors name;
    ``budget`` is a one-element list counting the elements decoded so far in the request, for
    ``max_request_elements``; it is updated. The rest of the codec (``decode_predict_request``,
    ``encode_tensor``, ``encode_predict_response``) has no limit and is the module's.
    Thread-safe: it holds nothing but its limits.
    """

    __slots__ = ("limits",)

    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits

    def decode_tensor(self, data: bytes | memoryview, name: str = "",
                      budget: list[int] | None = None) -> np.ndarray:
        return _decode_tensor(data, name, budget, self.limits)

    def __repr__(self) -> str:
        return f"TensorProtoCodec({self.limits!r})"


# ``TensorProtoCodec(DEFAULT_CODEC_LIMITS).decode_tensor``, for callers without a codec of their
# own (a server hands its own ``CodecLimits`` to the codecs it makes).
decode_tensor = TensorProtoCodec(DEFAULT_CODEC_LIMITS).decode_tensor
