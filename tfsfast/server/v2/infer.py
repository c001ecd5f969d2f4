"""An Open Inference Protocol inference request, bound to a signature; and its response outputs.

Protocol-neutral: a transport's codec reads its wire format into an ``InferRequest`` whose
inputs keep their data in the transport's own form (``RequestInput.data``), and hands
``bind_inputs`` the function that decodes that form into an array of a given TF DataType. What
is checked here is the protocol's model, whatever the wire:

1. The signature: ``signature_name`` (a request parameter, a tfsfast addition to the protocol:
   TF models have several signatures where the protocol knows one interface per model) names
   it, ``serving_default`` when absent; it resolves as for predict.
2. Each input (in request order): it is an input of the signature (its alias is the protocol's
   input name), not given twice, of the datatype the signature's dtype maps to
   (``datatypes``), of a shape whose dimensions are >= 0 and within the ``CodecLimits`` (rank,
   elements per tensor and per request: checked before anything is decoded), and with data of
   exactly as many elements as the shape has. Nested and flat data are one: the tensor is the
   data's elements, row-major, in the request's shape. Shapes are not checked against the
   signature's: as TF Serving's own API, the graph decides what it can take (half_plus_two's
   ``x`` is declared [-1, 1] and takes [3]).
3. Every input of the signature is given, but those with a default in the SignatureDef.
4. The outputs asked for (``outputs``; none or an empty list: every output of the signature),
   each an output of the signature, at most once, of a dtype the protocol can carry.

Parameters of extensions this server does not serve (``classification``,
``shared_memory_region``) are refused wherever they appear (``refuse_unserved``, which each
codec calls on the parameters it reads); any other parameter is accepted and has no effect.

The response outputs are in the order asked for, else in alias order. Every failure is
INVALID_ARGUMENT with a message naming the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType, short_name
from tfsfast.runtime.signature import Signature
from tfsfast.server.v2.datatypes import data_type, datatype
from tfsfast.util.status import ServingError, invalid_argument

__all__ = [
    "Decode",
    "InferRequest",
    "RequestInput",
    "RequestedOutput",
    "ResponseOutput",
    "bind_inputs",
    "element_count_mismatch",
    "refuse_unserved",
    "requested_aliases",
    "response_outputs",
    "signature_name",
]

# Parameters of extensions not served, with the extension's name: accepting them would answer
# something other than what was asked, where any other parameter is accepted and has no effect.
_UNSERVED = {"classification": "classification", "shared_memory_region": "shared memory"}


@dataclass(frozen=True, slots=True)
class RequestInput:
    """One input tensor of a request; ``data`` is in the transport's form (see ``Decode``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output a request asks for, with its parameters (a transport's own, such as REST's
    ``binary_data``)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """An inference request as read off the wire; ``outputs`` None when it names none."""

    inputs: Sequence[RequestInput]
    outputs: Sequence[RequestedOutput] | None = None
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResponseOutput:
    """One output tensor of a response: its name, protocol datatype, TF DataType and value."""

    name: str
    datatype: str
    dtype: DataType
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


# (input, the signature's TF DataType for it, its element count) -> an array of that dtype
# holding the input's elements (any shape: ``bind_inputs`` checks the count and reshapes).
Decode = Callable[[RequestInput, DataType, int], np.ndarray]


def signature_name(request: InferRequest) -> str:
    """The signature the request names by its ``signature_name`` parameter ("" for the
    default)."""
    name = request.parameters.get("signature_name", "")
    if type(name) is not str:
        raise invalid_argument("Parameter 'signature_name' must be a string")
    return name


def refuse_unserved(parameters: Mapping[str, Any], owner: str) -> None:
    """INVALID_ARGUMENT when ``parameters`` (of ``owner``: "the request", "input 'x'", ...)
    hold a parameter of an extension this server does not serve."""
    for key, extension in _UNSERVED.items():
        if key in parameters:
            raise invalid_argument(f"Parameter '{key}' of {owner} is not supported: this server "
                                   f"does not serve the {extension} extension")


def _names(names: Sequence[str]) -> str:
    return ", ".join(sorted(names))


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def element_count_mismatch(tensor: RequestInput, count: int, held: int) -> ServingError:
    """The error for ``tensor``, whose shape has ``count`` elements, holding ``held``."""
    return invalid_argument(f"Input '{tensor.name}' has shape {_shape_text(tensor.shape)}, "
                            f"{count} elements, but its data has {held} elements")


def _element_count(name: str, shape: Sequence[int], limits: CodecLimits, used: int) -> int:
    """The elements of input ``name``'s ``shape``, within ``limits`` (``used`` elements of the
    request counted before it)."""
    if any(d < 0 for d in shape):
        raise invalid_argument(f"Input '{name}' has shape {_shape_text(shape)}: a dimension "
                               "cannot be negative")
    if len(shape) > limits.max_tensor_rank:
        raise invalid_argument(f"Input '{name}' has rank {len(shape)}, which exceeds the maximum "
                               f"tensor rank of {limits.max_tensor_rank}")
    count = math.prod(shape)
    if count > limits.max_tensor_elements:
        raise invalid_argument(f"Input '{name}' has {count} elements, which exceeds the maximum "
                               f"of {limits.max_tensor_elements} elements per tensor")
    if used + count > limits.max_request_elements:
        raise invalid_argument(f"Request has more than {limits.max_request_elements} tensor "
                               "elements, the maximum per request")
    return count


def _input_dtype(signature: Signature, tensor: RequestInput) -> DataType:
    """The signature's DataType for ``tensor``, once its name and datatype are checked."""
    info = signature.inputs.get(tensor.name)
    if info is None:
        raise invalid_argument(f"Input '{tensor.name}' is not an input of signature "
                               f"'{signature.key}' (its inputs: {_names(list(signature.inputs))})")
    expected = datatype(info.dtype)
    if expected is None:
        raise invalid_argument(f"Input '{tensor.name}' of signature '{signature.key}' has dtype "
                               f"{short_name(info.dtype)}, which the Open Inference Protocol "
                               "cannot carry")
    if tensor.datatype != expected:
        if data_type(tensor.datatype) is None:
            raise invalid_argument(f"Input '{tensor.name}' has datatype '{tensor.datatype}', "
                                   "which is not a datatype of the Open Inference Protocol")
        raise invalid_argument(f"Input '{tensor.name}' has datatype {tensor.datatype}, but "
                               f"signature '{signature.key}' expects {expected}")
    return info.dtype


def bind_inputs(signature: Signature, inputs: Sequence[RequestInput], decode: Decode,
                limits: CodecLimits) -> dict[str, np.ndarray]:
    """The request's inputs as ``{alias: array}`` for ``signature`` (checks 2 and 3 of the
    module docstring), each decoded by ``decode``."""
    tensors: dict[str, np.ndarray] = {}
    used = 0
    for tensor in inputs:
        dtype = _input_dtype(signature, tensor)
        if tensor.name in tensors:
            raise invalid_argument(f"Input '{tensor.name}' is given more than once")
        count = _element_count(tensor.name, tensor.shape, limits, used)
        used += count
        array = decode(tensor, dtype, count)
        if array.size != count:
            raise element_count_mismatch(tensor, count, array.size)
        tensors[tensor.name] = array.reshape(tensor.shape)
    missing = [a for a in signature.inputs if a not in tensors and a not in signature.defaults]
    if missing:
        raise invalid_argument(f"Signature '{signature.key}' needs input(s) the request does not "
                               f"give: {_names(missing)}")
    return tensors


def requested_aliases(signature: Signature,
                      outputs: Sequence[RequestedOutput] | None) -> list[str]:
    """The aliases of the outputs to answer, in answer order (check 4 of the module
    docstring)."""
    if not outputs:
        aliases = sorted(signature.outputs)
    else:
        aliases = []
        for output in outputs:
            if output.name not in signature.outputs:
                raise invalid_argument(
                    f"Output '{output.name}' is not an output of signature '{signature.key}' "
                    f"(its outputs: {_names(list(signature.outputs))})")
            if output.name in aliases:
                raise invalid_argument(f"Output '{output.name}' is requested more than once")
            aliases.append(output.name)
    for alias in aliases:
        dtype = signature.outputs[alias].dtype
        if datatype(dtype) is None:
            raise invalid_argument(f"Output '{alias}' of signature '{signature.key}' has dtype "
                                   f"{short_name(dtype)}, which the Open Inference Protocol "
                                   "cannot carry")
    return aliases


def response_outputs(signature: Signature, outputs: Mapping[str, np.ndarray],
                     aliases: Sequence[str]) -> list[ResponseOutput]:
    """The run's ``outputs`` answered for ``aliases`` (from ``requested_aliases``), each with
    its signature's dtype (which the encoders write its array as)."""
    answer = []
    for alias in aliases:
        dtype = signature.outputs[alias].dtype
        name = datatype(dtype)
        assert name is not None  # requested_aliases let through only dtypes with a datatype
        answer.append(ResponseOutput(alias, name, dtype, outputs[alias]))
    return answer
