"""The REST V2 infer fast path: its contract, and its Python twin.

The compiled ``_rest_infer_fast_path`` (a ``.pyx``) has the same contract and reads and writes
the bytes in place, in C; this module is its twin and the reference it is tested against (both
are tested against the handler).

``RestInferFastPath.answer`` serves the request shape that dominates V2 REST traffic, a JSON
infer of numeric tensors with their data flat, for a model whose runs take microseconds, without
the REST handler's request and response objects and ``V2RestApi``'s general JSON reading (a
rapidjson emulation over Python's parser) and per-request objects. ``RestFastPath`` offers it
every plain JSON POST that is not a ``/v1`` predict. It either returns the complete HTTP
response, byte for byte what ``HttpRestApiHandler`` plus ``encode_response`` would have sent, or
None, and then the request goes to the handler unchanged. So every status code and message
other than those of the run comes from the handler.

Taken here (everything else returns None):

* ``POST /v2/models/<name>[/versions/<n>]/infer``, a name of letters, digits, ``_``, ``.``,
  ``-`` (nothing percent-encoded), no query; plain JSON headers (``RestFastPath``'s) and no
  ``Inference-Header-Content-Length`` (binary data is the handler's);
* a body of at most ``MAX_BODY_BYTES`` that is one JSON object, in ASCII without escapes, of
  ``inputs`` (objects of ``name``, ``datatype``, ``shape``, flat ``data``), optionally
  ``outputs`` (objects of ``name``) and ``id``, with no key twice, nothing after it but
  whitespace, and numbers as JSON writes them (no NaN or Infinity);
* a version in the handle table, a bundle without batching (batched requests are the
  handler's), its default signature (``signature_name`` is a parameter);
* inputs that name every input of the signature once, of its datatype among FP32, FP64, INT32
  and INT64, shapes within the ``codec_limits`` whose element count the data holds, values that
  the handler reads as it is read here (integers for the integer datatypes, within their range;
  numbers within float's range; integers of at most ``max_int_digits`` digits for the integer
  datatypes, which the handler would read as doubles); requested outputs of the signature, each
  once, of a dtype the protocol carries and with a name JSON writes as it is;
* and ``bundle.run_inline`` running it now (None: the run must go to a thread, and the handler
  awaits it).

The values are read as the handler reads them: an integer's text as a Python int, any other
number's as a Python float (correctly rounded, as rapidjson's full-precision parse), made into
a float64 array that FP32 then rounds, as the handler's conversion does. Before the run nothing
has side effects, so any doubt returns None and the handler redoes the request. Once the model
has run, a ServingError from the run or the answer is answered as the handler answers it (its
status from ``to_http_status``, ``{"error": ...}`` from the codec); any other exception
propagates, as out of the handler. The run gets ``timeout_in_ms`` and no deadline, as
``RestFastPath``'s.

Metrics: a response returned here is counted as the handler counts V2's, ``request_count`` by
model and status and, when OK, ``request_latency`` (API ``infer``, entrypoint ``REST``) and the
run's ``runtime_latency`` (API ``ModelInfer``), in this instance's ``RequestCounts``.

Thread-safety: one instance per event loop; the per-model caches are not locked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from tfsfast.codecs import json_codec
from tfsfast.codecs._json_text import clean, json_string
from tfsfast.core.handle_table import LATEST
from tfsfast.monitoring import _request_counts_py as _request_counts
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.server.http._http_protocol_py import HttpResponse, encode_response
from tfsfast.server.http.http_rest_api_handler import CORS_HEADERS, RestApiOptions
from tfsfast.server.predict import _predict_signatures_py as _predict_signatures
from tfsfast.server.v2.datatypes import DATATYPES
from tfsfast.server.v2.rest_codec import WRITER_PREFIX, WRITTEN_AS
from tfsfast.util.status import ServingError, to_http_status

__all__ = ["INFER_API", "MAX_BODY_BYTES", "RUNTIME_API", "RestInferFastPath", "plain_name",
           "route"]

# The metric labels of V2 REST inference (``v2.rest``'s).
INFER_API = "infer"
RUNTIME_API = "ModelInfer"
# Larger bodies are the handler's: its parser is C, where this reader reads values one by one.
MAX_BODY_BYTES = 64 << 10

_ROUTE = re.compile(rb"/v2/models/([A-Za-z0-9_.\-]+)(?:/versions/([0-9]+))?/infer")
_INT64_MAX = (1 << 63) - 1
_WRITER_PREFIX_LENGTH = len(WRITER_PREFIX)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# The datatypes taken, by TF DataType: (numpy dtype of the array, integers only).
_NUMERIC = {
    DataType.DT_FLOAT: (np.float32, False),
    DataType.DT_DOUBLE: (np.float64, False),
    DataType.DT_INT32: (np.int32, True),
    DataType.DT_INT64: (np.int64, True),
}
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
# By output dtype: the numpy dtype and the dtypes argument the JSON writer writes it with.
_WRITTEN: dict[Any, tuple[Any, dict[str, Any]]] = {}
# A name JSON writes as it is (an output alias outside this is the handler's to escape).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:/\-]+")

# find(name, version, policy) of the manager's handle table.
Find = Callable[[str, "int | None", int], Any]


class _Decline(Exception):
    """The body is not one the fast path takes."""


class _Input:
    __slots__ = ("data", "datatype", "digits", "ints", "name", "shape")

    def __init__(self) -> None:
        self.name: str | None = None
        self.datatype: str | None = None
        self.shape: tuple[int, ...] | None = None
        self.data: list[Any] | None = None
        self.ints = True  # every value of data is an integer's text
        self.digits = 0  # the most digits of an integer's text in data


class _Request:
    __slots__ = ("id", "inputs", "outputs")

    def __init__(self) -> None:
        self.id: str | None = None
        self.inputs: list[_Input] | None = None
        self.outputs: list[str] | None = None


class RestInferFastPath:
    """The V2 infer fast path behind ``RestFastPath`` (see the module docstring).

    ``find`` is the manager's handle-table lookup; ``options`` must be the handler's.
    """

    def __init__(self, find: Find, options: RestApiOptions | None = None) -> None:
        options = options or RestApiOptions()
        self._find = find
        self._limits = options.codec_limits
        self._timeout_in_ms = options.timeout_in_ms
        self._cors = CORS_HEADERS if options.enable_cors_support else None
        self._json = json_codec.JsonCodec(options.codec_limits)
        self._format = json_codec.format_predict_response  # rest_codec.tensor_json's writer
        # encode_response's bytes up to Content-Length, for a 200 with these headers.
        full = encode_response(HttpResponse(200, b"", headers=self._cors), True)
        self._ok_head = full[:full.index(b"Content-Length: ")]
        self._signatures = _predict_signatures.SignatureCache(
            options.enforce_signature_method_name)
        self._counts = _request_counts.RequestCounts("REST")
        # The last URL's route and its model's texts and counts (made with its first answer).
        self._last_path: bytes | None = None
        self._last_route: tuple[str, int | None] | None = None
        self._last_name_text = b""
        self._last_ok: Any = None
        self._last_runtime: Any = None

    def answer(self, path: bytes, body: bytes, keep_alive: bool) -> bytes | None:
        """The whole HTTP response (``Connection: close`` unless ``keep_alive``) to a plain
        JSON POST of ``path`` (a request target) and ``body``, or None: hand it to the
        handler."""
        start = _request_counts.now_ns()
        if path != self._last_path:
            self._last_route = route(path)
            self._last_path = path
            self._last_ok = None
            self._last_runtime = None
        spec = self._last_route
        if spec is None or len(body) > MAX_BODY_BYTES:
            return None
        name = spec[0]
        entry = self._find(name, spec[1], LATEST)
        if entry is None:
            return None
        servable = self._signatures.of(entry.servable, entry.id)
        if servable.run_inline is None or servable.batching is not None:
            return None
        try:
            request = _read_request(body)
            signature = servable.get("")
            info = signature.signature
            tensors = self._tensors(request, info)
            aliases = _aliases(request.outputs, info)
        except Exception:
            return None  # nothing has run: the handler redoes it and says what was wrong
        ok = self._last_ok
        runtime = self._last_runtime
        if ok is None:
            ok = self._last_ok = self._counts.ok_counts(name, INFER_API)
            runtime = self._last_runtime = self._counts.runtime_counts(name, RUNTIME_API)
            self._last_name_text = _text(name)
        run_start = _request_counts.now_ns()
        try:
            # Every output (no "outputs" asked for) is the run without a selection, which
            # costs less than the same outputs selected.
            outputs = servable.run_inline(signature.key, tensors,
                                          aliases if request.outputs is not None else None,
                                          self._timeout_in_ms, None)
        except ServingError as e:
            return self._encode_error(e, keep_alive, name)
        if outputs is None:
            return None  # not run: it goes to a thread, so the handler awaits it
        runtime.record(run_start)
        try:
            response = self._response(str(entry.id.version), request.id, info, outputs,
                                      aliases, keep_alive)
        except ServingError as e:
            return self._encode_error(e, keep_alive, name)
        ok.record(start)
        return response

    def _tensors(self, request: _Request, info: Any) -> dict[str, Any]:
        """``{alias: array}`` of the request's inputs for signature ``info`` (_Decline when the
        handler would read them otherwise, or refuse them)."""
        inputs = request.inputs
        if inputs is None or len(inputs) != len(info.inputs):
            raise _Decline
        limits = self._limits
        tensors: dict[str, Any] = {}
        used = 0
        for tensor in inputs:
            alias = tensor.name
            spec = info.inputs.get(alias)
            if (alias is None or spec is None or alias in tensors or tensor.shape is None
                    or tensor.data is None or tensor.datatype != DATATYPES.get(spec.dtype)):
                raise _Decline
            numeric = _NUMERIC.get(spec.dtype)
            if numeric is None:
                raise _Decline
            shape = tensor.shape
            if len(shape) > limits.max_tensor_rank:
                raise _Decline
            count = 1
            for size in shape:
                if size > limits.max_tensor_elements:
                    raise _Decline
                count *= size
            used += count
            if (count > limits.max_tensor_elements or used > limits.max_request_elements
                    or len(tensor.data) != count
                    or (numeric[1] and tensor.digits > limits.max_int_digits)):
                raise _Decline
            tensors[alias] = _array(tensor, numeric[0], numeric[1]).reshape(shape)
        return tensors

    def _response(self, version: str, request_id: str | None, info: Any,
                  outputs: dict[str, Any], aliases: list[str], keep_alive: bool) -> bytes:
        """The 200 response: the JSON answer as ``rest_codec.format_infer_response`` writes it,
        after the head ``encode_response`` writes."""
        parts = [b'{"model_name": ', self._last_name_text, b', "model_version": "',
                 version.encode(), b'"']
        if request_id is not None:
            parts += [b', "id": ', _text(request_id)]
        parts.append(b', "outputs": [')
        for index in range(len(aliases)):
            alias = aliases[index]
            array = outputs[alias]
            dtype = info.outputs[alias].dtype
            shape = ", ".join([str(size) for size in array.shape]).encode()
            # rest_codec.tensor_json: the tensor as the JSON codec writes one columnar output.
            written = _WRITTEN.get(dtype)
            if written is None:
                written_as = WRITTEN_AS.get(dtype, dtype)
                written = _WRITTEN[dtype] = (to_numpy(written_as), {"data": written_as})
            flat = np.ascontiguousarray(array, dtype=written[0]).reshape(-1)
            data = self._format({"data": flat}, True, written[1])
            parts += [b", " if index else b"", b'{"name": "', alias.encode(),
                      b'", "datatype": "', DATATYPES[dtype].encode(), b'", "shape": [', shape,
                      b'], "data": ', data[_WRITER_PREFIX_LENGTH:-1], b"}"]
        parts.append(b"]}")
        answer = b"".join(parts)
        return b"".join([self._ok_head, b"Content-Length: %d\r\n" % len(answer),
                         b"" if keep_alive else b"Connection: close\r\n", b"\r\n", answer])

    def _encode_error(self, error: ServingError, keep_alive: bool, model_name: str) -> bytes:
        self._counts.error(model_name, error.code)
        return encode_response(HttpResponse(to_http_status(error.code),
                                            self._json.format_error(error.message),
                                            headers=self._cors), keep_alive)


def route(path: bytes) -> tuple[str, int | None] | None:
    """(model name, version or None) of an infer URL the fast path takes, else None."""
    match = _ROUTE.fullmatch(path)
    if match is None:
        return None
    version = None
    digits = match.group(2)
    if digits is not None:
        if len(digits) > 19 or int(digits) > _INT64_MAX:
            return None  # the handler's INVALID_ARGUMENT
        version = int(digits)
    return match.group(1).decode("ascii"), version


def _text(s: str) -> bytes:
    """``s`` as a JSON string, as the V2 routes write one."""
    return json_string(clean(s)).encode("utf-8")


def _aliases(outputs: list[str] | None, info: Any) -> list[str]:
    """The aliases to answer, in answer order (``infer.requested_aliases``'s)."""
    if outputs is None:
        aliases = sorted(info.outputs)
    else:
        if not outputs:
            raise _Decline  # "outputs": [] (the handler answers every output)
        aliases = []
        for alias in outputs:
            if alias not in info.outputs or alias in aliases:
                raise _Decline
            aliases.append(alias)
    for alias in aliases:
        if DATATYPES.get(info.outputs[alias].dtype) is None or not plain_name(alias):
            raise _Decline
    return aliases


def plain_name(alias: str) -> bool:
    """Whether JSON writes output alias ``alias`` as it is (others are the handler's to
    escape)."""
    return _PLAIN_NAME.fullmatch(alias) is not None


def _array(tensor: _Input, dtype: Any, integers: bool) -> Any:
    """The input's data as the handler converts it (see the module docstring): the handler
    makes a float64 or int64 array of the values and casts it, which is what numpy's
    conversion of each value straight to ``dtype`` gives for the values taken here."""
    values = tensor.data
    assert values is not None
    if integers:
        if not tensor.ints:
            raise _Decline
        low, high = (_INT32_MIN, _INT32_MAX) if dtype is np.int32 else (-_INT64_MAX - 1,
                                                                         _INT64_MAX)
        for value in values:
            if value < low or value > high:
                raise _Decline
        return np.array(values, dtype=dtype)
    if tensor.ints:
        values = [float(value) for value in values]  # an int, as numpy makes it a double
    for value in values:
        if not -_FLOAT32_MAX <= value <= _FLOAT32_MAX and (dtype is np.float32 or
                                                          value - value != 0.0):
            raise _Decline  # FP32 overflow, or a number rapidjson calls too big
    return np.array(values, dtype=dtype)


def _is_int(text: bytes) -> bool:
    return b"." not in text and b"e" not in text and b"E" not in text


# --- the JSON reader -----------------------------------------------------------------------

def _read_request(body: bytes) -> _Request:
    """The request in ``body`` (see the module docstring); _Decline otherwise."""
    request = _Request()
    end = len(body)
    pos = _skip_space(body, 0, end)
    pos = _expect(body, pos, end, 0x7B)  # {
    seen: set[bytes] = set()
    first = True
    while True:
        pos = _skip_space(body, pos, end)
        if pos < end and body[pos] == 0x7D:  # }
            if first:
                raise _Decline
            pos += 1
            break
        if not first:
            pos = _skip_space(body, _expect(body, pos, end, 0x2C), end)  # ,
        first = False
        key, pos = _read_string(body, pos, end)
        if key in seen:
            raise _Decline
        seen.add(key)
        pos = _skip_space(body, _expect(body, _skip_space(body, pos, end), end, 0x3A), end)
        if key == b"inputs":
            request.inputs, pos = _read_inputs(body, pos, end)
        elif key == b"outputs":
            request.outputs, pos = _read_outputs(body, pos, end)
        elif key == b"id":
            text, pos = _read_string(body, pos, end)
            request.id = text.decode("ascii")
        else:
            raise _Decline
    if _skip_space(body, pos, end) != end:
        raise _Decline
    return request


def _read_inputs(body: bytes, pos: int, end: int) -> tuple[list[_Input], int]:
    inputs: list[_Input] = []
    pos = _expect(body, pos, end, 0x5B)  # [
    while True:
        pos = _skip_space(body, pos, end)
        if inputs:
            if pos < end and body[pos] == 0x5D:  # ]
                return inputs, pos + 1
            pos = _skip_space(body, _expect(body, pos, end, 0x2C), end)
        tensor = _Input()
        pos = _read_input(body, pos, end, tensor)
        inputs.append(tensor)


def _read_input(body: bytes, pos: int, end: int, tensor: _Input) -> int:
    pos = _expect(body, pos, end, 0x7B)
    first = True
    while True:
        pos = _skip_space(body, pos, end)
        if pos < end and body[pos] == 0x7D and not first:
            return pos + 1
        if not first:
            pos = _skip_space(body, _expect(body, pos, end, 0x2C), end)
        first = False
        key, pos = _read_string(body, pos, end)
        pos = _skip_space(body, _expect(body, _skip_space(body, pos, end), end, 0x3A), end)
        if key == b"name" and tensor.name is None:
            text, pos = _read_string(body, pos, end)
            tensor.name = text.decode("ascii")
        elif key == b"datatype" and tensor.datatype is None:
            text, pos = _read_string(body, pos, end)
            tensor.datatype = text.decode("ascii")
        elif key == b"shape" and tensor.shape is None:
            texts, pos = _read_numbers(body, pos, end)
            shape = []
            for text in texts:
                if not _is_int(text) or text[0] == 0x2D or len(text) > 18:  # -
                    raise _Decline
                shape.append(int(text))
            tensor.shape = tuple(shape)
        elif key == b"data" and tensor.data is None:
            texts, pos = _read_numbers(body, pos, end)
            data = []
            ints = True
            for text in texts:
                if len(text) > 40:
                    raise _Decline  # past what the reading here is checked against
                if _is_int(text):
                    tensor.digits = max(tensor.digits, len(text) - (text[0] == 0x2D))  # -
                    value = int(text)
                    data.append(value if ints else float(value))
                elif ints:
                    # The integers read so far become floats, as the handler's conversion of a
                    # mixed list makes them.
                    ints = False
                    data = [float(value) for value in data]
                    data.append(float(text))
                else:
                    data.append(float(text))
            tensor.data = data
            tensor.ints = ints
        else:
            raise _Decline  # parameters, another key, or a key twice


def _read_outputs(body: bytes, pos: int, end: int) -> tuple[list[str], int]:
    names: list[str] = []
    pos = _expect(body, pos, end, 0x5B)
    pos = _skip_space(body, pos, end)
    if pos < end and body[pos] == 0x5D:
        return names, pos + 1
    while True:
        pos = _skip_space(body, _expect(body, pos, end, 0x7B), end)
        key, pos = _read_string(body, pos, end)
        if key != b"name":
            raise _Decline
        pos = _skip_space(body, _expect(body, _skip_space(body, pos, end), end, 0x3A), end)
        text, pos = _read_string(body, pos, end)
        names.append(text.decode("ascii"))
        pos = _expect(body, _skip_space(body, pos, end), end, 0x7D)
        pos = _skip_space(body, pos, end)
        if pos < end and body[pos] == 0x5D:
            return names, pos + 1
        pos = _skip_space(body, _expect(body, pos, end, 0x2C), end)


def _read_numbers(body: bytes, pos: int, end: int) -> tuple[list[bytes], int]:
    """The texts of a flat array of JSON numbers at ``pos``, and the position after it."""
    texts: list[bytes] = []
    pos = _skip_space(body, _expect(body, pos, end, 0x5B), end)  # [
    if pos < end and body[pos] == 0x5D:  # ]
        return texts, pos + 1
    while True:
        start = pos
        pos = _read_number(body, pos, end)
        texts.append(body[start:pos])
        pos = _skip_space(body, pos, end)
        if pos < end and body[pos] == 0x5D:
            return texts, pos + 1
        pos = _skip_space(body, _expect(body, pos, end, 0x2C), end)  # ,


def _skip_space(body: bytes, pos: int, end: int) -> int:
    while pos < end and body[pos] in (0x20, 0x09, 0x0A, 0x0D):
        pos += 1
    return pos


def _expect(body: bytes, pos: int, end: int, byte: int) -> int:
    if pos >= end or body[pos] != byte:
        raise _Decline
    return pos + 1


def _read_string(body: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """A string of printable ASCII without escapes, and the position after it."""
    pos = _expect(body, pos, end, 0x22)  # "
    start = pos
    while True:
        if pos >= end:
            raise _Decline
        c = body[pos]
        if c == 0x22:
            return body[start:pos], pos + 1
        if c < 0x20 or c > 0x7E or c == 0x5C:  # a control, non-ASCII, a backslash
            raise _Decline
        pos += 1


def _read_number(body: bytes, pos: int, end: int) -> int:
    """The position after the JSON number at ``pos`` (_Decline if there is none)."""
    if pos < end and body[pos] == 0x2D:  # -
        pos += 1
    start = pos
    pos = _read_digits(body, pos, end)
    if body[start] == 0x30 and pos - start > 1:  # a leading 0
        raise _Decline
    if pos < end and body[pos] == 0x2E:  # .
        pos = _read_digits(body, pos + 1, end)
    if pos < end and (body[pos] == 0x65 or body[pos] == 0x45):  # e E
        pos += 1
        if pos < end and (body[pos] == 0x2B or body[pos] == 0x2D):  # + -
            pos += 1
        pos = _read_digits(body, pos, end)
    return pos


def _read_digits(body: bytes, pos: int, end: int) -> int:
    """The position after the one or more digits at ``pos`` (_Decline if there is none)."""
    start = pos
    while pos < end and 0x30 <= body[pos] <= 0x39:
        pos += 1
    if pos == start:
        raise _Decline
    return pos
