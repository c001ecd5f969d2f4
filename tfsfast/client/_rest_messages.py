"""TF Serving's REST API calls as data: what to send, and how to read the answer.

``RestMessages(wire_format)`` turns each client call into a ``RestCall`` (method, path, body,
headers, and the function that reads a 200 answer's body); ``answer(call, status, reason,
content_type, body)`` gives the call's result or raises its ``RequestError``. The sync and
asyncio REST clients differ only in how they move the bytes.

Bodies (predict, classify, regress) are msgpack (tfsfast's format, README "msgpack") or JSON
(TF Serving's format, which TF Serving itself and tfsfast both read). Predict sends the columnar
form (``inputs``: alias -> tensor), as gRPC's PredictRequest does, so one call means the same on
both transports; the server answers ``outputs``: the tensor itself when the signature has one
output, else alias -> tensor. Status and metadata are GETs, answered in JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgpack
import numpy as np

from tfsfast.client import _tensor_map
from tfsfast.client._examples import Example, normalize_examples
from tfsfast.client.errors import Code, RequestError, code_of_http_status
from tfsfast.client.results import ModelMetadata, ModelVersionStatus, SignatureDef, TensorInfo

__all__ = ["JSON", "MSGPACK", "Body", "RestCall", "RestMessages", "answer"]

T = TypeVar("T")
Body = bytes | bytearray  # an answer's body (bytearray when it was read in place)

MSGPACK, JSON = "msgpack", "json"
_CONTENT_TYPES = {MSGPACK: b"application/msgpack", JSON: b"application/json"}
_JSON_TYPE = b"application/json"


@dataclass(slots=True)
class RestCall(Generic[T]):
    """One request (``body`` None: a GET) and ``read``, which turns a 200 answer's body into
    the call's result."""

    method: bytes
    path: bytes
    body: bytes | None
    content_type: bytes | None
    accept: bytes
    read: Callable[[Body], T]


@lru_cache(maxsize=256)
def _model_path(model: str, version: int | None, version_label: str | None) -> str:
    """``/v1/models/<model>[/versions/<n>|/labels/<label>]``. Cached: a client asks for the
    same few models again and again."""
    if version is not None and version_label is not None:
        raise ValueError("give a version or a version label, not both")
    path = "/v1/models/" + quote(model, safe="")
    if version is not None:
        path += f"/versions/{int(version)}"
    elif version_label is not None:
        path += "/labels/" + quote(version_label, safe="")
    return path


def _float32(value: Any) -> float:
    """A score or regression value as the float32 the server computed (JSON prints it with
    the shortest digits that read back as that float32)."""
    return float(np.float32(value))


class RestMessages:
    """The REST calls in one wire format (``"msgpack"`` or ``"json"``); stateless."""

    def __init__(self, wire_format: str = MSGPACK) -> None:
        if wire_format not in _CONTENT_TYPES:
            raise ValueError(f"wire_format must be 'msgpack' or 'json', got {wire_format!r}")
        self.wire_format = wire_format
        self._msgpack = wire_format == MSGPACK
        self._content_type = _CONTENT_TYPES[wire_format]

    def _encode(self, document: dict[str, Any]) -> bytes:
        if self._msgpack:
            return msgpack.packb(document)
        return json.dumps(document, separators=(",", ":")).encode()

    def _decode(self, body: Body) -> Any:
        if self._msgpack:
            return msgpack.unpackb(body)
        return json.loads(body)

    def _post(self, path: str, document: dict[str, Any], read: Callable[[Body], T]
              ) -> RestCall[T]:
        return RestCall(b"POST", path.encode("ascii"), self._encode(document),
                        self._content_type, self._content_type, read)

    # --- predict --------------------------------------------------------------------------

    def predict(self, model: str, inputs: Mapping[str, Any], version: int | None,
                version_label: str | None, signature_name: str | None
                ) -> RestCall[np.ndarray | dict[str, np.ndarray]]:
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise ValueError("inputs must be a mapping input alias -> array")
        convert = _tensor_map.to_tensor_map if self._msgpack else _tensor_map.to_json_value
        document: dict[str, Any] = {"inputs": {str(alias): convert(value)
                                               for alias, value in inputs.items()}}
        if signature_name:
            document["signature_name"] = signature_name
        path = _model_path(model, version, version_label) + ":predict"
        return self._post(path, document, self._read_predict)

    def _read_predict(self, body: Body) -> np.ndarray | dict[str, np.ndarray]:
        outputs = self._decode(body)["outputs"]
        if self._msgpack:
            if _tensor_map.is_tensor_map(outputs):
                return _tensor_map.from_tensor_map(outputs)
            return {alias: _tensor_map.from_tensor_map(t) for alias, t in outputs.items()}
        if type(outputs) is dict and outputs.keys() != {"b64"}:
            return {alias: _tensor_map.from_json_value(v) for alias, v in outputs.items()}
        return _tensor_map.from_json_value(outputs)

    # --- classify and regress -------------------------------------------------------------

    def _examples_document(self, examples: Sequence[Example], context: Example | None,
                           signature_name: str | None) -> dict[str, Any]:
        def features(normalized: dict[str, Any]) -> dict[str, list[Any]]:
            if self._msgpack:
                return {name: values for name, (_, values) in normalized.items()}
            return {name: [{"b64": base64.b64encode(v).decode("ascii")} if type(v) is bytes
                           else v for v in values]
                    for name, (_, values) in normalized.items()}

        document: dict[str, Any] = {"examples": [features(e)
                                                 for e in normalize_examples(examples)]}
        if context is not None:
            document["context"] = features(normalize_examples([context])[0])
        if signature_name:
            document["signature_name"] = signature_name
        return document

    def classify(self, model: str, examples: Sequence[Example], context: Example | None,
                 version: int | None, version_label: str | None, signature_name: str | None
                 ) -> RestCall[list[list[tuple[str, float]]]]:
        path = _model_path(model, version, version_label) + ":classify"
        return self._post(path, self._examples_document(examples, context, signature_name),
                          self._read_classify)

    def _read_classify(self, body: Body) -> list[list[tuple[str, float]]]:
        return [[(str(label), _float32(score)) for label, score in classes]
                for classes in self._decode(body)["results"]]

    def regress(self, model: str, examples: Sequence[Example], context: Example | None,
                version: int | None, version_label: str | None, signature_name: str | None
                ) -> RestCall[list[float]]:
        path = _model_path(model, version, version_label) + ":regress"
        return self._post(path, self._examples_document(examples, context, signature_name),
                          self._read_regress)

    def _read_regress(self, body: Body) -> list[float]:
        return [_float32(v) for v in self._decode(body)["results"]]

    # --- status and metadata (GET, JSON) ---------------------------------------------------

    def model_status(self, model: str, version: int | None) -> RestCall[list[ModelVersionStatus]]:
        path = _model_path(model, version, None)
        return RestCall(b"GET", path.encode("ascii"), None, None, _JSON_TYPE, _read_status)

    def model_metadata(self, model: str, version: int | None, version_label: str | None
                       ) -> RestCall[ModelMetadata]:
        path = _model_path(model, version, version_label) + "/metadata"
        return RestCall(b"GET", path.encode("ascii"), None, None, _JSON_TYPE, _read_metadata)


def _code_named(name: str) -> Code:
    try:
        return Code[name]
    except KeyError:
        return Code.UNKNOWN


def _read_status(body: Body) -> list[ModelVersionStatus]:
    return [ModelVersionStatus(int(s["version"]), s["state"],
                               _code_named(s["status"]["error_code"]),
                               s["status"]["error_message"])
            for s in json.loads(body)["model_version_status"]]


def _tensor_info(info: dict[str, Any]) -> TensorInfo:
    shape: tuple[int, ...] | None = ()
    proto_shape = info.get("tensor_shape")
    if proto_shape is not None:
        shape = (None if proto_shape.get("unknown_rank") else
                 tuple(int(d.get("size", 0)) for d in proto_shape.get("dim", [])))
    return TensorInfo(info.get("name", ""), info.get("dtype", "DT_INVALID"), shape)


def _read_metadata(body: Body) -> ModelMetadata:
    document = json.loads(body)
    spec = document["model_spec"]
    signature_map = document["metadata"]["signature_def"]["signature_def"]
    return ModelMetadata(spec["name"], int(spec["version"]), {
        key: SignatureDef(
            signature.get("method_name", ""),
            {alias: _tensor_info(i) for alias, i in signature.get("inputs", {}).items()},
            {alias: _tensor_info(i) for alias, i in signature.get("outputs", {}).items()})
        for key, signature in signature_map.items()})


def _error(status: int, reason: str, content_type: str, body: Body) -> RequestError:
    """The error a non-200 answer stands for: the server's ``{"error": ...}`` message (JSON or
    msgpack, as ``Content-Type`` says), else the body's text (a proxy's page), else the
    reason phrase."""
    message = None
    try:
        if "msgpack" in content_type:
            message = msgpack.unpackb(body)["error"]
        elif "json" in content_type:
            message = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        pass
    if not isinstance(message, str):
        message = body.decode("utf-8", "replace").strip() or reason
    return RequestError(code_of_http_status(status), message, status)


def answer(call: RestCall[T], status: int, reason: str, content_type: str, body: Body) -> T:
    """The result of ``call`` from its answer; RequestError for an error or a malformed body."""
    if status != 200:
        raise _error(status, reason, content_type, body)
    try:
        return call.read(body)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise RequestError(Code.INTERNAL, f"malformed answer from the server: {e!r}",
                           status) from None
