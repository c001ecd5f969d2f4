"""The Open Inference Protocol's gRPC inference messages: ``ModelInferRequest`` in, and
``ModelInferResponse`` out (``grpc_protocol``'s classes).

Request (``parse_infer_request``): each input's data is either its typed ``contents`` or, when
the request has ``raw_input_contents``, the entry at the input's index there (binary tensor data,
``binary_tensor``), which then has exactly one entry per input and no input has ``contents``
(Triton's rule). The typed field is the datatype's: BOOL ``bool_contents``; INT8, INT16, INT32
``int_contents``; INT64 ``int64_contents``; UINT8, UINT16, UINT32 ``uint_contents``; UINT64
``uint64_contents``; FP32 ``fp32_contents``; FP64 ``fp64_contents``; BYTES ``bytes_contents``.
FP16 and BF16 have none and travel raw only. Contents in another field than the datatype's, and
values out of a narrow datatype's range, are INVALID_ARGUMENT naming the input (where a C
cast would silently wrap). Raw data is decoded as a view of the bytes the message holds (no
copy beyond protobuf's own); typed contents are converted in one numpy step. Parameters become
Python values (``InferParameter``'s set member); ``signature_name`` picks the signature
(``infer``), and those of the extensions not served are refused (``infer.refuse_unserved``).

Response (``infer_response``): ``model_name``, ``model_version``, ``id`` (the request's), and
every answered output with its binary tensor data in ``raw_output_contents``, in output order,
as Triton answers by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.server.v2 import binary_tensor
from tfsfast.server.v2.grpc_protocol import message_class
from tfsfast.server.v2.infer import (
    InferRequest,
    RequestedOutput,
    RequestInput,
    ResponseOutput,
    element_count_mismatch,
    refuse_unserved,
)
from tfsfast.util.status import invalid_argument

__all__ = ["ContentsDecoder", "infer_response", "parameters", "parse_infer_request"]

# The typed contents field of each TF DataType with one (FP16 and BF16 have none).
_CONTENTS: dict[DataType, str] = {
    DataType.DT_BOOL: "bool_contents",
    DataType.DT_INT8: "int_contents",
    DataType.DT_INT16: "int_contents",
    DataType.DT_INT32: "int_contents",
    DataType.DT_INT64: "int64_contents",
    DataType.DT_UINT8: "uint_contents",
    DataType.DT_UINT16: "uint_contents",
    DataType.DT_UINT32: "uint_contents",
    DataType.DT_UINT64: "uint64_contents",
    DataType.DT_FLOAT: "fp32_contents",
    DataType.DT_DOUBLE: "fp64_contents",
    DataType.DT_STRING: "bytes_contents",
}
# Datatypes narrower than their field: their values are range-checked.
_NARROW = frozenset({DataType.DT_INT8, DataType.DT_INT16, DataType.DT_UINT8,
                     DataType.DT_UINT16})


def parameters(message: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as ``{key: value}`` (a parameter with no value set is
    None), once ``refuse_unserved`` let it through."""
    if not message:
        return {}  # the common case, on every request's path
    values: dict[str, Any] = {}
    for key, parameter in message.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = None if choice is None else getattr(parameter, choice)
    refuse_unserved(values, owner)
    return values


def parse_infer_request(request: Any) -> InferRequest:
    """The ``InferRequest`` a ``ModelInferRequest`` message holds; an input's ``data`` is its
    raw data (a memoryview) or its ``InferTensorContents``, for ``ContentsDecoder``."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid_argument(f"The request has {len(raw)} raw_input_contents for "
                               f"{len(request.inputs)} inputs: it needs one per input")
    inputs = []
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        data: Any
        if raw:
            if tensor.HasField("contents"):
                raise invalid_argument(f"Input '{name}' has contents, which the request must "
                                       "not give when it has raw_input_contents")
            data = memoryview(raw[index])
        else:
            data = tensor.contents
        inputs.append(RequestInput(name, tensor.datatype, tuple(tensor.shape), data,
                                   parameters(tensor.parameters, f"input '{name}'")))
    outputs = [RequestedOutput(o.name, parameters(o.parameters, f"output '{o.name}'"))
               for o in request.outputs] or None
    return InferRequest(inputs, outputs, request.id,
                        parameters(request.parameters, "the request"))


class ContentsDecoder:
    """``infer.Decode`` for a gRPC request: raw data through ``binary_tensor``, typed contents
    from the datatype's field. Stateless."""

    __slots__ = ()

    def __call__(self, tensor: RequestInput, dtype: DataType, count: int) -> np.ndarray:
        data = tensor.data
        if type(data) is memoryview:
            return binary_tensor.decode(data, dtype, count, tensor.name)
        field = _CONTENTS.get(dtype)
        given = [f.name for f, _ in data.ListFields()]
        if field is None:
            if given or count:
                raise invalid_argument(f"Input '{tensor.name}' has datatype {tensor.datatype}, "
                                       "which has no typed contents: send it in "
                                       "raw_input_contents")
            return np.empty(0, to_numpy(dtype))
        other = [f for f in given if f != field]
        if other:
            raise invalid_argument(f"Input '{tensor.name}' has datatype {tensor.datatype}, "
                                   f"whose contents go in {field}, but the request gives "
                                   f"{', '.join(other)}")
        values = getattr(data, field)
        if len(values) != count:
            raise element_count_mismatch(tensor, count, len(values))
        if dtype == DataType.DT_STRING:
            out = np.empty(count, dtype=object)
            out[:] = list(values)
            return out
        target = to_numpy(dtype)
        if dtype not in _NARROW:
            return np.array(values, dtype=target)
        wide = np.array(values, dtype=np.int64 if field == "int_contents" else np.uint64)
        info = np.iinfo(target)
        out_of_range = (wide < info.min) | (wide > info.max)
        if out_of_range.any():
            raise invalid_argument(f"'{field}' of input '{tensor.name}': "
                                   f"{wide[out_of_range][0]} is out of the range of "
                                   f"{tensor.datatype}")
        return wide.astype(target)


def infer_response(model_name: str, model_version: str, request_id: str,
                   outputs: Sequence[ResponseOutput]) -> Any:
    """The ``ModelInferResponse`` answering with ``outputs``, their data raw."""
    response = message_class("ModelInferResponse")(
        model_name=model_name, model_version=model_version, id=request_id)
    for output in outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        response.raw_output_contents.append(bytes(binary_tensor.encode(output.array,
                                                                       output.dtype)))
    return response
