"""REST classify/regress bodies: ``examples`` (+ ``context``) to tf.Example; results out.

JSON and msgpack bodies (``Content-Type: application/msgpack``) carry the same document; a
msgpack ``bin`` value is bytes, like a JSON ``{"b64": ...}``. A msgpack body is read by the
predict codec's rules (``_msgpack_py.read_value``: str keys only, the same depth limit and parse
errors) and then judged as the JSON document, with TF Serving's messages; a msgpack ext value,
which JSON has no counterpart for, is refused where it is met, by its msgpack name. The limits
are the caller's ``CodecLimits``, those of its predict codecs.

TF Serving's rules (``json_tensor.cc`` FillClassifyRegressRequestFromJson, MakeJsonFrom*Result):
a feature value is a scalar or a flat list of one kind; strings and ``{"b64": ...}`` are bytes,
number tokens with a fraction, exponent or NaN/Infinity are floats, integer tokens and booleans
are int64. Parsing errors (syntax, depth limit, top level) are the predict codec's, so both APIs
report a bad body identically. These requests are small and not on the predict hot path, so one
implementation serves the compiled and the pure-Python configurations alike.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack
from tensorflow.core.example import feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from tfsfast.codecs._float_text import decimal_text
from tfsfast.codecs._json_document import parse_document
from tfsfast.codecs._json_text import clean, debug_string, json_string
from tfsfast.codecs._json_to_tensor import Strings, b64decode, is_b64, json_type
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits
from tfsfast.util.status import Code, ServingError

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


class _Ext:
    """A msgpack ext value in a classify/regress body (its type code)."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


def _type_of(value: Any) -> tuple[str, str]:
    """(format, type name) of a document value for messages: JSON's names (TF Serving's),
    msgpack's for the one kind of value only msgpack has."""
    if type(value) is _Ext:
        return "msgpack", "ext"
    return "JSON", json_type(value)


def _kind_error(name: str, feature: Any) -> ServingError:
    kind = feature.WhichOneof("kind")
    return ServingError(Code.INVALID_ARGUMENT,
                        f"Unexpected element type in feature: {name} expecting type: "
                        f"{_KIND_NAMES.get(kind, 'UNKNOWN')}")


def _add_value(value: Any, name: str, feature: Any, strings: Any) -> None:
    """Adds one JSON value to ``feature`` (TF Serving's AddValueToFeature)."""
    kind = feature.WhichOneof("kind")

    def want(k: str) -> None:
        if kind is not None and kind != k:
            raise _kind_error(name, feature)

    t = type(value)
    if t is bool:
        want("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif t is str:
        want("bytes_list")
        feature.bytes_list.value.append(strings.encode(value))
    elif t is dict and is_b64(value):
        want("bytes_list")
        decoded = b64decode(value["b64"])
        if decoded is None:
            raise ServingError(Code.INVALID_ARGUMENT, "Unable to base64 decode")
        feature.bytes_list.value.append(decoded)
    elif t is float or (t is int and value < _INT64_MIN):
        # rapidjson holds an integer below int64's range as a double.
        want("float_list")
        feature.float_list.value.append(float(value))
    elif t is int:
        if value > _INT64_MAX:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Feature: {name} has uint64_t element. Only int64_t is "
                               f"supported.")
        want("int64_list")
        feature.int64_list.value.append(value)
    else:
        kind, type_name = _type_of(value)
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Feature: {name} has element with unexpected {kind} type: "
                           f"{type_name}")


def _example(value: Any, example: Any, strings: Any) -> None:
    if type(value) is not dict:
        kind, type_name = _type_of(value)
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Example must be JSON object but got {kind} {type_name}")
    for name, content in value.items():
        if not name.isascii():
            _check_feature_name(name)
        feature = feature_pb2.Feature()
        for item in content if type(content) is list else (content,):
            _add_value(item, name, feature, strings)
        example.features.feature[name].CopyFrom(feature)


def _check_feature_name(name: str) -> None:
    """A feature name is a proto ``string`` (a map key of ``tf.Features``), which must be
    UTF-8; a JSON name of raw invalid bytes or a lone surrogate escape is not."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Feature name {json_string(clean(name))} is not valid UTF-8"
                           ) from None


def parse_classify_regress_request(body: bytes, limits: CodecLimits = DEFAULT_CODEC_LIMITS
                                   ) -> tuple[str, Any]:
    """A REST classify/regress JSON body → (signature name as given, ``tensorflow.serving.Input``),
    read within ``limits`` (its nesting depth and integer digits)."""
    doc = parse_document(bytes(body), limits)
    return _input_from_document(doc.value, Strings(doc.raw))


def parse_classify_regress_msgpack(body: bytes, limits: CodecLimits = DEFAULT_CODEC_LIMITS
                                   ) -> tuple[str, Any]:
    """The same from a msgpack body (a map with the JSON document's keys), read within
    ``limits`` (its nesting depth)."""
    from tfsfast.codecs import _msgpack_py

    top = _msgpack_py.read_value(body, limits)
    if type(top) is not dict:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"msgpack body must be a map, got {_msgpack_py._kind_of(top)}")
    return _input_from_document(_as_document(top), Strings(False))


def _as_document(value: Any) -> Any:
    """A msgpack value as the JSON document: bins as ``{"b64": ...}`` objects, so one set of
    rules (and messages) serves; ext values as ``_Ext`` (a timestamp is ext -1). Recursion is
    bounded by the depth limit ``read_value`` applied."""
    t = type(value)
    if t is bytes:
        return {"b64": base64.b64encode(value).decode("ascii")}
    if t is list:
        return [_as_document(v) for v in value]
    if t is dict:
        return {k: _as_document(v) for k, v in value.items()}
    if t is msgpack.ExtType:
        return _Ext(value.code)
    if t is msgpack.Timestamp:
        return _Ext(-1)
    return value


def _echo(top: dict[str, Any]) -> str:
    """The document as TF Serving echoes it in a message (an ext value as ``"<msgpack ext
    N>"``, the closest JSON can show)."""
    return debug_string(_printable(top))


def _printable(value: Any) -> Any:
    t = type(value)
    if t is _Ext:
        return f"<msgpack ext {value.code}>"
    if t is list:
        return [_printable(v) for v in value]
    if t is dict:
        return {k: _printable(v) for k, v in value.items()}
    return value


def _input_from_document(top: dict[str, Any], strings: Any) -> tuple[str, Any]:
    signature_name = ""
    if "signature_name" in top:
        signature_name = top["signature_name"]
        if type(signature_name) is not str:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {_echo(top)} not formatted correctly. "
                "'signature_name' key must be a string value.")
    request_input = input_pb2.Input()
    has_context = "context" in top
    if has_context:
        _example(top["context"], request_input.example_list_with_context.context, strings)
    if "examples" not in top:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"JSON Value: {_echo(top)} When method is classify, key "
                           "'examples' is expected and was not found")
    examples = top["examples"]
    if type(examples) is not list:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"JSON Value: {_echo(top)} Expecting 'examples' value to "
                           "be an list/array")
    if not examples:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"JSON Value: {_echo(top)} 'examples' value is an empty "
                           "array")
    target = (request_input.example_list_with_context.examples if has_context
              else request_input.example_list.examples)
    for value in examples:
        _example(value, target.add(), strings)
    return signature_name, request_input


def _float_text(v: float) -> str:
    return decimal_text(float(v), True)


def format_classification_result(result: classification_pb2.ClassificationResult) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``, one list per example."""
    if not result.classifications:
        raise ServingError(Code.INVALID_ARGUMENT,
                           "Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classifications in result.classifications:
        pairs = ", ".join(f"[{json_string(clean(c.label))}, {_float_text(c.score)}]"
                          for c in classifications.classes)
        rows.append(f"[{pairs}]")
    return ('{"results": [' + ", ".join(rows) + "]}").encode()


def format_regression_result(result: regression_pb2.RegressionResult) -> bytes:
    """``{"results": [v1, v2, ...]}``."""
    if not result.regressions:
        raise ServingError(Code.INVALID_ARGUMENT, "Cannot convert empty RegressionResults to JSON")
    values = ", ".join(_float_text(r.value) for r in result.regressions)
    return ('{"results": [' + values + "]}").encode()


def format_classification_result_msgpack(result: classification_pb2.ClassificationResult
                                         ) -> bytes:
    """The msgpack form: ``{"results": [[[label, score], ...], ...]}``."""
    if not result.classifications:
        raise ServingError(Code.INVALID_ARGUMENT,
                           "Cannot convert empty ClassificationResults to JSON")
    return msgpack.packb({"results": [[[c.label, c.score] for c in classifications.classes]
                                      for classifications in result.classifications]},
                         use_single_float=True)


def format_regression_result_msgpack(result: regression_pb2.RegressionResult) -> bytes:
    """The msgpack form: ``{"results": [v1, v2, ...]}``."""
    if not result.regressions:
        raise ServingError(Code.INVALID_ARGUMENT, "Cannot convert empty RegressionResults to JSON")
    return msgpack.packb({"results": [r.value for r in result.regressions]},
                         use_single_float=True)


__all__ = ["format_classification_result", "format_classification_result_msgpack",
           "format_regression_result", "format_regression_result_msgpack",
           "parse_classify_regress_msgpack", "parse_classify_regress_request"]
