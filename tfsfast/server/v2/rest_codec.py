"""The Open Inference Protocol's REST inference body: JSON, with the binary tensor data extension.

Request (``parse_infer_request``): a JSON object ``{"id", "parameters", "inputs": [{"name",
"datatype", "shape", "parameters", "data"}], "outputs": [{"name", "parameters"}]}``; other
members (``model_name``, which the KServe SDK sends) are ignored. An input's ``data`` is an
array, flat or nested, of JSON numbers, booleans or strings (BYTES: a string's UTF-8 bytes as
sent; a ``{"b64": ...}`` object, as on ``/v1``, for bytes that are not text). With the binary
extension, the ``Inference-Header-Content-Length`` header (``header_length``) says how many
bytes of the body are the JSON; the rest is the binary data of the inputs whose parameters give
a ``binary_data_size`` instead of ``data``, concatenated in input order (``binary_tensor``),
and must be all used. Parameters: ``binary_data_output`` (request, bool) and ``binary_data``
(output, bool) ask for outputs as binary data; ``signature_name`` (request, string) picks the
signature (``infer``). Any other parameter is accepted and has no effect, as a model without
custom parameters ignores them; but the parameters of extensions this server does not serve
(``classification``, ``shared_memory_region``) are refused, where ignoring them would answer
something other than what was asked.

Decoding: the JSON text is parsed by the REST JSON codec's document reader
(``codecs._json_document.parse_document``: Python's C parser reconciled with rapidjson, the
``CodecLimits`` nesting depth and integer digits checked before anything is built), and each
input's ``data`` becomes a tensor through the codec's ``_json_to_tensor.to_tensor`` (TF
Serving's value rules and messages, the numbers converted to numpy in one step), so no number
is parsed here. The compiled JSON codec is not used for requests: its one entry point reads TF
Serving's predict layout (``instances``/``inputs`` keyed by alias, the dtypes known before the
body is read) in a single C pass straight into tensors, and hands back neither a document nor a
converted value, while here each tensor's dtype and shape are given inside the body. The narrow
integer datatypes (INT8, INT16, UINT8, UINT16) are read as int64 and checked against their own
range (where ``/v1`` wraps like C), FP16 and BF16 as doubles and rounded. Binary data is a
view of the body, not a copy.

Response (``format_infer_response``): ``{"model_name", "model_version", "id" (when the request
had one), "outputs": [{"name", "datatype", "shape", "data" | "parameters":
{"binary_data_size"}}]}``. ``data`` is flat, row-major, written by the JSON codec's tensor
writer (compiled where built; TF Serving's float text, so a float32 reads back as itself;
strings as text, invalid UTF-8 replaced), without a Python step per element; FP16, BF16 and
UINT16 are written widened (FP32, FP32, INT32), which keeps every value. Binary outputs follow
the JSON text in output order, and ``header_length`` is then the JSON's length (the
``Inference-Header-Content-Length`` to send).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tfsfast.codecs import json_codec
from tfsfast.codecs._json_document import parse_document
from tfsfast.codecs._json_text import clean, json_string
from tfsfast.codecs._json_to_tensor import Budget, Strings, to_tensor
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.codecs.predict_format import dense_shape
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.server.v2 import binary_tensor
from tfsfast.server.v2.infer import (
    InferRequest,
    RequestedOutput,
    RequestInput,
    ResponseOutput,
    element_count_mismatch,
    refuse_unserved,
)
from tfsfast.util.status import ServingError, invalid_argument

__all__ = [
    "HEADER_LENGTH",
    "InputDecoder",
    "binary_outputs",
    "format_infer_response",
    "header_length",
    "parse_infer_request",
    "tensor_json",
]

# The binary extension's header (what tritonclient and the KServe SDK send and read).
HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_KEY = HEADER_LENGTH.lower().encode()
_DIGITS = re.compile(r"[0-9]+")
# More digits than this are more bytes than any body holds (and never become a Python int).
_MAX_DIGITS = 18
_SHOWN = 32

# Datatypes read through a wider JSON dtype, then narrowed (see the module docstring).
_INTEGER_CARRIED = frozenset({DataType.DT_INT8, DataType.DT_INT16, DataType.DT_UINT8,
                              DataType.DT_UINT16})
_FLOAT_CARRIED = frozenset({DataType.DT_HALF, DataType.DT_BFLOAT16})
# Datatypes the JSON writer has no text for, written as a wider one that keeps every value.
WRITTEN_AS = {DataType.DT_HALF: DataType.DT_FLOAT, DataType.DT_BFLOAT16: DataType.DT_FLOAT,
               DataType.DT_UINT16: DataType.DT_INT32}
# What the writer puts around one columnar output.
WRITER_PREFIX = b'{"outputs": '

TensorWriter = Callable[[Mapping[str, np.ndarray], bool, Mapping[str, DataType]], bytes]


# --- request ----------------------------------------------------------------------------------


def header_length(headers: Mapping[bytes, bytes], body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` of a request (lower-cased header names) with a
    body of ``body_size`` bytes, or None when it has none."""
    raw = headers.get(_HEADER_KEY)
    if raw is None:
        return None
    text = raw.decode("latin-1").strip(" \t")
    # Echoed in messages, within reason.
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    if not _DIGITS.fullmatch(text):
        raise invalid_argument(f"Unable to parse {HEADER_LENGTH}: {shown!r} is not a number of "
                               "bytes")
    if len(text) > _MAX_DIGITS or int(text) > body_size:
        raise invalid_argument(f"{HEADER_LENGTH} is {shown}, but the request body has "
                               f"{body_size} bytes")
    return int(text)


def _parameters(container: dict[str, Any], owner: str) -> dict[str, Any]:
    parameters = container.get("parameters", {})
    if type(parameters) is not dict:
        raise invalid_argument(f"'parameters' of {owner} must be an object")
    refuse_unserved(parameters, owner)
    return parameters


def _string(container: dict[str, Any], key: str, owner: str) -> str:
    value = container.get(key)
    if type(value) is not str:
        raise invalid_argument(f"{owner} must have a '{key}' string")
    return value


def _bool_parameter(parameters: Mapping[str, Any], key: str, owner: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and type(value) is not bool:
        raise invalid_argument(f"Parameter '{key}' of {owner} must be a boolean")
    return value


def _shape(item: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = item.get("shape")
    if type(shape) is not list or any(type(d) is not int for d in shape):
        raise invalid_argument(f"Input '{name}' must have a 'shape' array of integers")
    return tuple(shape)


def _input(item: Any, index: int, binary: memoryview | None, offset: int
           ) -> tuple[RequestInput, int]:
    """Input ``index`` of the request and the binary data offset after it (``binary``: the
    binary data, None when the request has no header length)."""
    if type(item) is not dict:
        raise invalid_argument(f"Element {index} of 'inputs' must be an object")
    name = _string(item, "name", f"Element {index} of 'inputs'")
    owner = f"input '{name}'"
    datatype = _string(item, "datatype", f"Input '{name}'")
    shape = _shape(item, name)
    parameters = _parameters(item, owner)
    size = parameters.get("binary_data_size")
    if ("data" in item) == (size is not None):
        raise invalid_argument(f"Input '{name}' must have either 'data' or the parameter "
                               "'binary_data_size', and not both")
    if size is None:
        return RequestInput(name, datatype, shape, item["data"], parameters), offset
    if type(size) is not int or size < 0:
        raise invalid_argument(f"Parameter 'binary_data_size' of {owner} must be an integer "
                               ">= 0")
    if binary is None:
        raise invalid_argument(f"Input '{name}' has binary data, but the request has no "
                               f"{HEADER_LENGTH} header to say where it starts")
    if offset + size > len(binary):
        raise invalid_argument(f"Input '{name}' has a binary_data_size of {size} bytes, but only "
                               f"{len(binary) - offset} bytes of binary data are left for it")
    return (RequestInput(name, datatype, shape, binary[offset:offset + size], parameters),
            offset + size)


def _output(item: Any, index: int) -> RequestedOutput:
    if type(item) is not dict:
        raise invalid_argument(f"Element {index} of 'outputs' must be an object")
    name = _string(item, "name", f"Element {index} of 'outputs'")
    parameters = _parameters(item, f"output '{name}'")
    _bool_parameter(parameters, "binary_data", f"output '{name}'")
    return RequestedOutput(name, parameters)


def parse_infer_request(body: bytes, length: int | None,
                        limits: CodecLimits) -> tuple[InferRequest, InputDecoder]:
    """The request in ``body`` (``length``: its ``header_length``), and the decoder of its
    inputs' data for ``infer.bind_inputs``. Every failure is INVALID_ARGUMENT."""
    binary: memoryview | None = None
    if length is None:
        text = body
    else:
        view = memoryview(body)
        text, binary = bytes(view[:length]), view[length:]
    doc = parse_document(text, limits)
    top = doc.value
    request_id = top.get("id")
    if request_id is not None and type(request_id) is not str:
        raise invalid_argument("'id' must be a string")
    parameters = _parameters(top, "the request")
    _bool_parameter(parameters, "binary_data_output", "the request")
    items = top.get("inputs")
    if type(items) is not list:
        raise invalid_argument("The request must have an 'inputs' array")
    inputs = []
    offset = 0
    for index, item in enumerate(items):
        tensor, offset = _input(item, index, binary, offset)
        inputs.append(tensor)
    if binary is not None and offset != len(binary):
        raise invalid_argument(f"The request has {len(binary) - offset} bytes of binary data "
                               "that no input's binary_data_size accounts for")
    outputs = None
    if "outputs" in top:
        if type(top["outputs"]) is not list:
            raise invalid_argument("'outputs' must be an array")
        outputs = [_output(item, index) for index, item in enumerate(top["outputs"])]
    request = InferRequest(inputs, outputs, request_id, parameters)
    return request, InputDecoder(doc.raw, limits)


class InputDecoder:
    """``infer.Decode`` for one REST request: binary data through ``binary_tensor``, JSON data
    through the JSON codec's ``to_tensor``. ``raw``: the body was not valid UTF-8 (as
    ``parse_document`` says), which decides how its strings become bytes."""

    __slots__ = ("_budget", "_strings")

    def __init__(self, raw: bool, limits: CodecLimits) -> None:
        self._strings = Strings(raw)
        self._budget = Budget(limits)

    def __call__(self, tensor: RequestInput, dtype: DataType, count: int) -> np.ndarray:
        data = tensor.data
        if type(data) is memoryview:
            return binary_tensor.decode(data, dtype, count, tensor.name)
        if type(data) is not list:
            raise invalid_argument(f"'data' of input '{tensor.name}' must be an array")
        # The elements the data holds, read off its first element at each level: a count that
        # differs is refused before the values are converted.
        held = 1
        for d in dense_shape(data):
            held *= d
        if held != count:
            raise element_count_mismatch(tensor, count, held)
        carrier = (DataType.DT_INT64 if dtype in _INTEGER_CARRIED
                   else DataType.DT_DOUBLE if dtype in _FLOAT_CARRIED else dtype)
        try:
            array = to_tensor(data, tensor.name, carrier, self._strings, self._budget)
        except ServingError as e:
            raise ServingError(e.code, f"'data' of input '{tensor.name}': {e.message}") from None
        if carrier == dtype:
            return array
        target = to_numpy(dtype)
        if dtype in _INTEGER_CARRIED and array.size:
            info = np.iinfo(target)
            out_of_range = (array < info.min) | (array > info.max)
            if out_of_range.any():
                value = array[out_of_range].flat[0]
                raise invalid_argument(f"'data' of input '{tensor.name}': {value} is out of the "
                                       f"range of {tensor.datatype}")
        with np.errstate(over="ignore"):  # beyond the float type's range: infinite, as TF
            return array.astype(target)


# --- response ---------------------------------------------------------------------------------


def binary_outputs(request: InferRequest, outputs: Sequence[ResponseOutput]) -> list[bool]:
    """Which of ``outputs`` go as binary data: as the output's ``binary_data`` parameter says,
    else as the request's ``binary_data_output`` (false when absent)."""
    default = bool(request.parameters.get("binary_data_output", False))
    asked = {o.name: o.parameters.get("binary_data") for o in request.outputs or ()}
    answer = []
    for output in outputs:
        binary = asked.get(output.name)
        answer.append(default if binary is None else bool(binary))
    return answer


def tensor_json(array: np.ndarray, dtype: DataType,
                writer: TensorWriter = json_codec.format_predict_response) -> bytes:
    """The JSON array of ``array``'s elements, flat and row-major, as the JSON codec's
    ``format_predict_response`` (``writer``) writes a tensor."""
    written_as = WRITTEN_AS.get(dtype, dtype)
    flat = np.ascontiguousarray(array, dtype=to_numpy(written_as)).reshape(-1)
    # One columnar output is written whole as {"outputs": <tensor>}: the tensor is the text
    # between that prefix and the closing brace.
    body = writer({"data": flat}, True, {"data": written_as})
    return body[len(WRITER_PREFIX):-1]


def _text(s: str) -> bytes:
    return json_string(clean(s)).encode("utf-8")


def format_infer_response(model_name: str, model_version: str, request_id: str | None,
                          outputs: Sequence[ResponseOutput], binary: Sequence[bool],
                          writer: TensorWriter = json_codec.format_predict_response
                          ) -> tuple[bytes, int | None]:
    """The response body, and its ``header_length`` when outputs go as binary data (None:
    the body is all JSON). ``binary`` says which (``binary_outputs``)."""
    parts = [b'{"model_name": ', _text(model_name), b', "model_version": ',
             _text(model_version)]
    if request_id is not None:
        parts += [b', "id": ', _text(request_id)]
    parts.append(b', "outputs": [')
    tails: list[binary_tensor.BinaryData] = []
    for index, (output, as_binary) in enumerate(zip(outputs, binary, strict=True)):
        shape = ", ".join(map(str, output.shape)).encode()
        parts += [b", " if index else b"", b'{"name": ', _text(output.name),
                  b', "datatype": "', output.datatype.encode(), b'", "shape": [', shape, b"], "]
        if as_binary:
            data = binary_tensor.encode(output.array, output.dtype)
            tails.append(data)
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            parts += [b'"parameters": {"binary_data_size": ', str(size).encode(), b"}}"]
        else:
            parts += [b'"data": ', tensor_json(output.array, output.dtype, writer), b"}"]
    parts.append(b"]}")
    header = b"".join(parts)
    if not tails:
        return header, None
    return b"".join([header, *tails]), len(header)
