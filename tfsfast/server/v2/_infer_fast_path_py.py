"""The gRPC ModelInfer fast path: one source, compiled twice.

``_infer_fast_path.pxd`` declares the C types with which Cython compiles this file into
``tfsfast.server.v2._infer_fast_path``: there the signature step, the ``RunCost``, the request
counts and the clock are the compiled modules' (``_predict_signatures``, ``_run_cost``,
``_request_counts``), called in C; this file as it is uses their Python twins.

``InferFastPath.answer`` serves the request shape that dominates ModelInfer traffic, a
``ModelInferRequest`` whose inputs travel in ``raw_input_contents``, for a model whose runs take
microseconds, without ``GrpcInferenceServiceImpl.model_infer_answer``'s per-request
``InferRequest``, parameter maps, ServableHandle and response message: the request is parsed by
protobuf, the servable comes from the handle table, the signature from a
``predict_signatures.SignatureCache`` (whose ``PredictSignature`` keeps the ``RunCost``), the
inputs are decoded and the outputs encoded by ``binary_tensor`` (``model_infer_answer``'s codec)
and the response is written on the wire by hand. It returns the response bytes, byte for byte
what ``model_infer_answer`` returns, or None, and then the caller hands the request to
``model_infer_answer`` unchanged (calling the instance does both). So every status other than
those of the run itself comes from ``model_infer_answer``.

Taken here (everything else returns None):

* a request of at most ``max_inline_bytes`` whose deadline, if any, has not passed;
* a model name, a ``model_version`` that is "" or a version number, request ``parameters``
  that ``model_infer_answer`` ignores (not ``signature_name``, not an unserved extension's);
* a version in the manager's handle table; a servable that has ``run`` and no batching session
  (batched runs go through ``model_infer_answer`` and the batching session);
* the default signature (a request ``signature_name`` is a parameter), inputs in
  ``raw_input_contents`` (one per input, no typed ``contents``, no parameters) that name every
  input of the signature once, each with its signature's datatype and a shape within the
  ``codec_limits``, whose raw data ``binary_tensor`` decodes; requested outputs (without
  parameters) that name outputs of the signature once; output dtypes the protocol can carry;
* and the signature's ``RunCost`` (from the service's ``RunCosts``) allowing the run on this
  thread. A run that does not may be slow: ``model_infer_answer`` redoes the request and returns
  its continuation for the pool.

Before the run nothing has side effects, so any failure up to there returns None and
``model_infer_answer`` redoes the request and says what was wrong. Once the model has run, its
errors and those of encoding the response propagate, as they do out of ``model_infer_answer``.
The handle-table entry is held until the run is over, as ``model_infer_answer`` holds its handle.

Metrics: a request answered here is counted as ``model_infer_answer`` counts its own,
``request_count`` once by model and status and, when OK, the ``request_latency`` (API
``ModelInfer``, entrypoint ``GRPC``) from the call, and the run's ``runtime_latency`` (API
``ModelInfer``), in this instance's ``request_counts.RequestCounts``; a failed run is counted
here with its status (INTERNAL for another exception) and propagates.

Thread-safety: the per-bundle caches are not locked; concurrent misses build equal entries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.core.handle_table import LATEST

# The twins under the compiled modules' names: compiled, the .pxd cimports the compiled modules.
from tfsfast.monitoring import _request_counts_py as _request_counts
from tfsfast.server.grpc.deadline import DEADLINE_PASSED, run_timeout_ms
from tfsfast.server.predict import _predict_signatures_py as _predict_signatures
from tfsfast.server.v2 import binary_tensor
from tfsfast.server.v2.datatypes import BINARY_DTYPES, DATATYPES
from tfsfast.util.status import Code, ServingError

__all__ = ["INFER_API", "InferFastPath"]

# The request and runtime latencies' API label: the protocol's RPC.
INFER_API = "ModelInfer"
# A version number's most digits (int64).
_MAX_VERSION_DIGITS = 19
_INT64_MAX = (1 << 63) - 1
_UINT64 = (1 << 64) - 1
# The request parameters model_infer_answer reads or refuses (infer.signature_name,
# infer.refuse_unserved): a request with one is its to answer.
_READ_PARAMETERS = frozenset({"signature_name", "classification", "shared_memory_region"})
# binary_tensor.decode's arrays are views of the data on a little-endian host.
_NATIVE_LITTLE = sys.byteorder == "little"

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]


class InferFastPath:
    """The ModelInfer fast path in front of ``model_infer_answer`` (see the module docstring).

    ``find``: the manager's handle-table lookup; ``costs``: the service's ``RunCosts`` (whose
    policy decides which runs happen here); ``fallback``: ``model_infer_answer``;
    ``enforce_method_name`` and ``limits`` (``CodecLimits``; None: the defaults): the
    service's.
    """

    def __init__(self, find: Find, costs: Any, fallback: Callable[[bytes, Any], Any],
                 enforce_method_name: bool = False, max_inline_bytes: int = 64 << 10,
                 limits: Any = None) -> None:
        self._find = find
        self._costs = costs
        self._fallback = fallback
        self._max_inline_bytes = max_inline_bytes
        self._limits = limits if limits is not None else DEFAULT_CODEC_LIMITS
        self._signatures = _predict_signatures.SignatureCache(enforce_method_name)
        self._counts = _request_counts.RequestCounts("GRPC")
        # The model of the last OK answer, and its counts.
        self._last_name: str | None = None
        self._last_ok: Any = None
        self._last_runtime: Any = None

    def __call__(self, data: bytes, context: Any) -> Any:
        """The answer ``model_infer_answer`` gives: the response bytes, or its continuation."""
        answer = self._answer(data, context, _request_counts.now_ns())
        return answer if answer is not None else self._fallback(data, context)

    def answer(self, data: bytes, context: Any) -> bytes | None:
        """The response, or None: hand the request to ``model_infer_answer``."""
        return self._answer(data, context, _request_counts.now_ns())

    def _answer(self, data: bytes, context: Any, begun: int) -> bytes | None:
        if type(data) is not bytes or len(data) > self._max_inline_bytes:
            return None
        timeout = run_timeout_ms(context.time_remaining())
        if timeout == DEADLINE_PASSED:
            return None  # model_infer_answer's DEADLINE_EXCEEDED
        request = _read_request(data)
        if request is None:
            return None
        name = request.model_name
        if not name:
            return None
        version = _version(request.model_version)
        if version == -1:
            return None
        entry = self._find(name, None if version == -2 else version, LATEST)
        if entry is None:
            return None
        bundle = entry.servable
        if getattr(bundle, "batching_session", None) is not None:
            return None
        servable = self._signatures.of(bundle, entry.id)
        if servable.run is None:
            return None  # not a SavedModelBundle: model_infer_answer says what it gets
        try:
            signature = servable.get("")
            tensors = self._inputs(request, signature.signature)
            aliases, datatypes = _outputs(request, signature.signature)
        except Exception:
            return None
        if tensors is None or aliases is None:
            return None
        cost = signature.cost
        if cost is None:
            cost = signature.cost = self._costs.cost(servable.servable_id, signature.key)
        if not cost.allows():
            return None
        try:
            # RunCost.timed, on the requests' clock: the run's time is added when it returns.
            run_start = _request_counts.now_ns()
            outputs = servable.run(signature.key, tensors, aliases, timeout)
            run_ns = _request_counts.now_ns() - run_start
            cost.add(run_ns * 1e-9)
            response = _response(name, str(servable.servable_id.version), request.id,
                                 signature.signature, outputs, aliases, datatypes)
        except ServingError as e:
            self._counts.error(name, e.code)
            raise
        except Exception:
            self._counts.error(name, Code.INTERNAL)  # what the loop answers for it
            raise
        ok = self._last_ok
        if ok is None or name != self._last_name:
            ok = self._last_ok = self._counts.ok_counts(name, INFER_API)
            self._last_runtime = self._counts.runtime_counts(name, INFER_API)
            self._last_name = name
        self._last_runtime.record_elapsed(run_ns)
        ok.record(begun)
        return response

    def _inputs(self, request: Any, info: Any) -> dict[str, Any] | None:
        """``{alias: array}`` of the request's raw inputs for signature ``info``, or None when
        the request is not the fast path's (see the module docstring)."""
        inputs = request.inputs
        raw = request.raw_input_contents
        n = len(inputs)
        if n != len(raw) or n != len(info.inputs):
            return None
        limits = self._limits
        tensors: dict[str, Any] = {}
        used = 0
        for index in range(n):
            tensor = inputs[index]
            alias = tensor.name
            spec = info.inputs.get(alias)
            if spec is None or alias in tensors or tensor.datatype != DATATYPES.get(spec.dtype):
                return None
            shape = tensor.shape
            if len(shape) > limits.max_tensor_rank:
                return None
            count = 1
            for size in shape:
                if size < 0 or size > limits.max_tensor_elements:
                    return None
                count *= size
            used += count
            if count > limits.max_tensor_elements or used > limits.max_request_elements:
                return None
            data = raw[index]
            element = BINARY_DTYPES.get(spec.dtype)
            if element is None or not _NATIVE_LITTLE:
                array = binary_tensor.decode(data, spec.dtype, count, alias)  # strings
            elif len(data) != count * element.itemsize:
                return None
            else:
                array = np.frombuffer(data, dtype=element)  # binary_tensor.decode's array
            tensors[alias] = array.reshape(shape)
        return tensors


def _version(text: str) -> int:
    """The version a request names: -2 for "" (the latest), -1 for text that is not a version
    (``model_infer_answer``'s error)."""
    if not text:
        return -2
    if (not text.isascii() or not text.isdigit() or len(text) > _MAX_VERSION_DIGITS
            or int(text) > _INT64_MAX):
        return -1
    return int(text)


def _outputs(request: Any, info: Any) -> tuple[list[str] | None, list[str]]:
    """The aliases to answer, in answer order, and their datatypes; None when the request is
    not the fast path's."""
    requested = request.outputs
    aliases: list[str] = []
    if requested:
        for alias in requested:
            if alias not in info.outputs or alias in aliases:
                return None, []
            aliases.append(alias)
    else:
        aliases = sorted(info.outputs)
    datatypes: list[str] = []
    for alias in aliases:
        name = DATATYPES.get(info.outputs[alias].dtype)
        if name is None:
            return None, []
        datatypes.append(name)
    return aliases, datatypes


def _response(model_name: str, model_version: str, request_id: str, info: Any,
              outputs: dict[str, Any], aliases: list[str], datatypes: list[str]) -> bytes:
    """The serialized ``ModelInferResponse``, as protobuf writes the message
    ``grpc_codec.infer_response`` builds: fields in number order, empty strings left out, each
    output's shape packed, every output's data in ``raw_output_contents``."""
    parts = [_string(1, model_name), _string(2, model_version), _string(3, request_id)]
    raws = []
    for index in range(len(aliases)):
        alias = aliases[index]
        array = outputs[alias]
        dtype = info.outputs[alias].dtype
        shape = array.shape
        tensor = _string(1, alias) + _string(2, datatypes[index])
        if shape:
            tensor += _field(3, b"".join([_varint(size) for size in shape]))
        parts.append(_field(5, tensor))
        element = BINARY_DTYPES.get(dtype)
        if element is not None:
            # binary_tensor.encode's bytes, without its memoryview.
            data = np.ascontiguousarray(array, dtype=element).tobytes()
        else:
            data = bytes(binary_tensor.encode(array, dtype))
        raws.append(_field(6, data))
    return b"".join(parts + raws)


# The wire format (``proto_wire``'s, here so that the compiled module reads and writes it in C).


class _Tensor:
    """An input of a request: ``InferInputTensor`` without parameters or contents."""

    __slots__ = ("datatype", "name", "shape")

    def __init__(self) -> None:
        self.name = ""
        self.datatype = ""
        self.shape: tuple[int, ...] = ()


class _Request:
    """What the fast path reads of a ``ModelInferRequest``: ``outputs`` are the names of the
    requested outputs."""

    __slots__ = ("id", "inputs", "model_name", "model_version", "outputs", "raw_input_contents")

    def __init__(self) -> None:
        self.model_name = ""
        self.model_version = ""
        self.id = ""
        self.inputs: list[_Tensor] = []
        self.outputs: list[str] = []
        self.raw_input_contents: list[bytes] = []


def _read_request(data: bytes) -> _Request | None:
    """The request ``data`` holds, as protobuf reads it (a repeated singular field's last value
    wins, unknown fields are skipped), or None when it is not one the fast path takes: malformed
    (protobuf's error is ``model_infer_answer``'s to give), a string that is not UTF-8, request,
    input or output parameters, typed contents."""
    request = _Request()
    pos = 0
    end = len(data)
    try:
        while pos < end:
            tag, pos = _read_varint(data, pos, end)
            number = tag >> 3
            wire_type = tag & 7
            if wire_type != 2:
                if number in (1, 2, 3, 4, 5, 6, 7):
                    return None  # a known field with the wrong wire type: protobuf's error
                pos = _skip(data, pos, end, wire_type)
                continue
            start, pos = _read_payload(data, pos, end)
            if number == 1:
                request.model_name = data[start:pos].decode()
            elif number == 2:
                request.model_version = data[start:pos].decode()
            elif number == 3:
                request.id = data[start:pos].decode()
            elif number == 4:
                if not _ignored_parameter(data, start, pos):
                    return None
            elif number == 5:
                tensor = _read_tensor(data, start, pos)
                if tensor is None:
                    return None
                request.inputs.append(tensor)
            elif number == 6:
                output = _read_output(data, start, pos)
                if output is None:
                    return None
                request.outputs.append(output)
            elif number == 7:
                request.raw_input_contents.append(data[start:pos])
    except (ValueError, IndexError):  # truncated or malformed; a string that is not UTF-8
        return None
    return request


def _ignored_parameter(data: bytes, pos: int, end: int) -> bool:
    """Whether the request parameter (a map entry) at ``data[pos:end]`` is well formed and one
    ``model_infer_answer`` ignores: not ``signature_name``, not one of an extension it refuses
    (Triton's clients send their own, such as perf_analyzer's
    ``triton_enable_empty_final_response``)."""
    key = ""
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number = tag >> 3
        wire_type = tag & 7
        if wire_type != 2:
            if number == 1 or number == 2:
                return False
            pos = _skip(data, pos, end, wire_type)
            continue
        start, pos = _read_payload(data, pos, end)
        if number == 1:
            key = data[start:pos].decode()
        elif number == 2 and not _valid_parameter_value(data, start, pos):
            return False
    return key not in _READ_PARAMETERS


def _valid_parameter_value(data: bytes, pos: int, end: int) -> bool:
    """Whether ``data[pos:end]`` is an ``InferParameter`` protobuf reads."""
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number = tag >> 3
        wire_type = tag & 7
        if number == 3 or wire_type == 2:
            if wire_type != 2:
                return False
            start, pos = _read_payload(data, pos, end)
            if number == 3:
                data[start:pos].decode()  # string_param: UTF-8, or protobuf's error
            continue
        if ((number == 1 or number == 2 or number == 5) and wire_type != 0) or (
                number == 4 and wire_type != 1):
            return False
        pos = _skip(data, pos, end, wire_type)
    return True


def _read_tensor(data: bytes, pos: int, end: int) -> _Tensor | None:
    tensor = _Tensor()
    shape = []
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number = tag >> 3
        wire_type = tag & 7
        if number == 3 and wire_type == 0:
            size, pos = _read_varint(data, pos, end)
            shape.append(_int64(size))
            continue
        if wire_type != 2:
            if number in (1, 2, 4, 5):
                return None
            pos = _skip(data, pos, end, wire_type)
            continue
        start, pos = _read_payload(data, pos, end)
        if number == 1:
            tensor.name = data[start:pos].decode()
        elif number == 2:
            tensor.datatype = data[start:pos].decode()
        elif number == 3:
            while start < pos:  # packed
                size, start = _read_varint(data, start, pos)
                shape.append(_int64(size))
        elif number == 4 or number == 5:
            return None
    tensor.shape = tuple(shape)
    return tensor


def _read_output(data: bytes, pos: int, end: int) -> str | None:
    name = ""
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number = tag >> 3
        wire_type = tag & 7
        if wire_type != 2:
            if number in (1, 2):
                return None
            pos = _skip(data, pos, end, wire_type)
            continue
        start, pos = _read_payload(data, pos, end)
        if number == 1:
            name = data[start:pos].decode()
        elif number == 2:
            return None
    return name


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it; ValueError when it is
    truncated or longer than ten bytes."""
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _UINT64, pos
        shift += 7


def _read_payload(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, end) of the payload of the length-delimited field whose length is at ``pos``;
    ValueError when it runs past ``end``."""
    size, pos = _read_varint(data, pos, end)
    if size > end - pos:
        raise ValueError("truncated length-delimited field")
    return pos, pos + size


def _skip(data: bytes, pos: int, end: int, wire_type: int) -> int:
    """The position after the value of a field of ``wire_type`` (not LEN); ValueError when it
    cannot be skipped (truncated; a group or an invalid wire type, which protobuf refuses)."""
    if wire_type == 0:
        _, pos = _read_varint(data, pos, end)
        return pos
    if wire_type == 1 or wire_type == 5:
        pos += 8 if wire_type == 1 else 4
        if pos <= end:
            return pos
    raise ValueError("truncated field, a group, or an invalid wire type")


def _int64(value: int) -> int:
    """A varint read as protobuf's ``int64`` (two's complement)."""
    return value - (1 << 64) if value >> 63 else value

def _varint(value: int) -> bytes:
    """A non-negative ``value`` as a base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a field number below 16: a one-byte tag)."""
    return bytes((number << 3 | 2,)) + _varint(len(payload)) + payload


def _string(number: int, value: str) -> bytes:
    """A string field; proto3 leaves an empty one out."""
    return _field(number, value.encode()) if value else b""
