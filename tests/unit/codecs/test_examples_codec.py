"""REST classify/regress JSON and msgpack: examples to tf.Example (TF Serving's rules), results
to JSON."""

from __future__ import annotations

import msgpack
import pytest
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tfsfast.codecs.examples_codec import (
    format_classification_result,
    format_regression_result,
    parse_classify_regress_msgpack,
    parse_classify_regress_request,
)
from tfsfast.util.status import Code, ServingError


def features(example: object) -> dict[str, tuple[str, list]]:
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return out


def test_kinds_from_json_tokens() -> None:
    name, request_input = parse_classify_regress_request(
        b'{"signature_name": "s", "examples": [{"i": 2, "f": 2.0, "s": "ab", "b": true, '
        b'"l": [1, 2], "e": [], "b64": {"b64": "aGk="}, "n": NaN}]}')
    assert name == "s"
    [example] = request_input.example_list.examples
    got = features(example)
    assert got["i"] == ("int64_list", [2])
    assert got["f"] == ("float_list", [2.0])
    assert got["s"] == ("bytes_list", [b"ab"])
    assert got["b"] == ("int64_list", [1])
    assert got["l"] == ("int64_list", [1, 2])
    assert got["e"] == (None, [])
    assert got["b64"] == ("bytes_list", [b"hi"])
    assert got["n"][0] == "float_list"


def test_context_makes_example_list_with_context() -> None:
    name, request_input = parse_classify_regress_request(
        b'{"context": {"c": 1.5}, "examples": [{"x": 1}, {"x": 2}]}')
    assert name == ""
    with_context = request_input.example_list_with_context
    assert features(with_context.context) == {"c": ("float_list", [1.5])}
    assert [features(e)["x"][1] for e in with_context.examples] == [[1], [2]]


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": []}',
     'JSON Value: {"instances":[]} When method is classify, key \'examples\' is expected and '
     "was not found"),
    (b'{"examples": {}}', 'JSON Value: {"examples":{}} Expecting \'examples\' value to be an '
                          "list/array"),
    (b'{"examples": []}', "JSON Value: {\"examples\":[]} 'examples' value is an empty array"),
    (b'{"examples": [1]}', "Example must be JSON object but got JSON Number"),
    (b'{"context": [], "examples": [{}]}', "Example must be JSON object but got JSON Array"),
    (b'{"examples": [{"x": [1, 2.0]}]}',
     "Unexpected element type in feature: x expecting type: int64"),
    (b'{"examples": [{"x": ["a", 1]}]}',
     "Unexpected element type in feature: x expecting type: bytes"),
    (b'{"examples": [{"x": null}]}', "Feature: x has element with unexpected JSON type: Null"),
    (b'{"examples": [{"x": [[1]]}]}', "Feature: x has element with unexpected JSON type: Array"),
    (b'{"examples": [{"x": {"a": 1}}]}',
     "Feature: x has element with unexpected JSON type: Object"),
    (b'{"examples": [{"x": 18446744073709551615}]}',
     "Feature: x has uint64_t element. Only int64_t is supported."),
    (b'{"examples": [{"x": {"b64": "!!"}}]}', "Unable to base64 decode"),
    (b'{"signature_name": 1, "examples": [{}]}',
     'JSON Value: {"signature_name":1,"examples":[{}]} not formatted correctly. '
     "'signature_name' key must be a string value."),
    (b"", "JSON Parse error: The document is empty"),
    # A proto string must be UTF-8: raw invalid bytes, or a lone low surrogate escape (which
    # rapidjson keeps as its 3-byte encoding), cannot name a feature.
    (b'{"examples": [{"\xff": 1}]}', 'Feature name "\ufffd" is not valid UTF-8'),
    (b'{"context": {"\\udc00x": 1}, "examples": [{}]}',
     'Feature name "\ufffdx" is not valid UTF-8'),
])
def test_errors(body: bytes, message: str) -> None:
    with pytest.raises(ServingError) as e:
        parse_classify_regress_request(body)
    assert (e.value.code, e.value.message) == (Code.INVALID_ARGUMENT, message)


def test_msgpack_body_is_the_json_document() -> None:
    name, request_input = parse_classify_regress_msgpack(msgpack.packb(
        {"signature_name": "s", "context": {"c": b"\x00\xff"},
         "examples": [{"i": 2, "f": 2.0, "s": "ab", "b": True, "l": [1, 2]}]}))
    assert name == "s"
    with_context = request_input.example_list_with_context
    assert features(with_context.context) == {"c": ("bytes_list", [b"\x00\xff"])}
    assert features(with_context.examples[0]) == {
        "i": ("int64_list", [2]), "f": ("float_list", [2.0]), "s": ("bytes_list", [b"ab"]),
        "b": ("int64_list", [1]), "l": ("int64_list", [1, 2])}


def pack(value: object) -> bytes:
    return msgpack.packb(value, strict_types=True)


@pytest.mark.parametrize(("body", "message"), [
    # Keys are strings wherever the map is (msgpack would take any hashable one).
    (pack({"examples": [{1: 2.0}]}), "msgpack map keys must be strings, found int"),
    (pack({"examples": [{1.5: 2.0}]}), "msgpack map keys must be strings, found float"),
    (pack({"examples": [{float("nan"): 2.0}]}), "msgpack map keys must be strings, found float"),
    (pack({"examples": [{None: 2.0}]}), "msgpack map keys must be strings, found nil"),
    (pack({"examples": [{True: 2.0}]}), "msgpack map keys must be strings, found bool"),
    (pack({"examples": [{b"x": 2.0}]}), "msgpack map keys must be strings, found bin"),
    (b"\x81\xa8examples\x91\x81\x91\x01\x01", "msgpack map keys must be strings, found array"),
    (b"\x81\xa8examples\x91\x81\x80\x01", "msgpack map keys must be strings, found map"),
    (b"\x81\xa8examples\x91\x81\xd4\x05\x01\x01", "msgpack map keys must be strings, found ext"),
    (pack({"context": {3: 1}, "examples": [{}]}), "msgpack map keys must be strings, found int"),
    (pack({1: 1, "examples": [{}]}), "msgpack map keys must be strings, found int"),
    (b"\x81\xa8examples\x91\x82\xa1x\x01\xa1x\x02", "Duplicate key in msgpack map: 'x'"),
    # Ext values have no JSON counterpart: refused where they are met, by their msgpack name.
    (pack({"examples": [{"x": msgpack.ExtType(5, b"ab")}]}),
     "Feature: x has element with unexpected msgpack type: ext"),
    (pack({"examples": [{"x": [1.0, msgpack.ExtType(5, b"ab")]}]}),
     "Feature: x has element with unexpected msgpack type: ext"),
    (pack({"examples": [{"x": msgpack.Timestamp(1)}]}),
     "Feature: x has element with unexpected msgpack type: ext"),
    (pack({"examples": [msgpack.ExtType(5, b"")]}),
     "Example must be JSON object but got msgpack ext"),
    (pack({"signature_name": msgpack.ExtType(7, b""), "examples": [{}]}),
     'JSON Value: {"signature_name":"<msgpack ext 7>","examples":[{}]} not formatted correctly. '
     "'signature_name' key must be a string value."),
    (pack({"examples": msgpack.ExtType(7, b"")}),
     'JSON Value: {"examples":"<msgpack ext 7>"} Expecting \'examples\' value to be an '
     "list/array"),
    # The rest as in JSON (a bin is bytes).
    (pack({"examples": [{"x": None}]}), "Feature: x has element with unexpected JSON type: Null"),
    (pack({"examples": [{"x": [b"a", 1]}]}),
     "Unexpected element type in feature: x expecting type: bytes"),
    (pack({"examples": []}), "JSON Value: {\"examples\":[]} 'examples' value is an empty array"),
    # Bodies msgpack cannot read, with the predict codec's messages.
    (b"", "msgpack parse error: the body is empty"),
    (b"\x81\xa8examples" + b"\x91" * 100_000 + b"\x00",
     "msgpack nesting depth exceeds the maximum of 100"),
    (b"\x81\xa8examples" + b"\x91" * 101 + b"\x00",
     "msgpack nesting depth exceeds the maximum of 100"),
    (b"\x81\xa8examples\x91\x81\xa1x", "msgpack parse error: the body is truncated (14 bytes)"),
    (b"\x81\xa8examples\xc1", "msgpack parse error: invalid type byte 0xc1"),
    (b"\x81\xa8examples\x91\x81\xa1x\xa2\xff\xfe", "msgpack parse error: a str is not valid UTF-8"),
    (b"\x81\xa8examples\x91\x81\xa1x\xd6\xff\x00\x00",
     "msgpack parse error: the body is truncated (18 bytes)"),
    (b"\x81\xa8examples\x91\x81\xa1x\xd5\xff\x00\x00",
     "msgpack parse error: invalid timestamp data (length 2)"),
    (b"\x81\xa8examples\xdd\xff\xff\xff\xff",
     "msgpack parse error: 4294967295 exceeds max_array_len(15)"),
    (pack({"examples": [{}]}) + b"\x00", "msgpack parse error: 1 bytes after the top-level value"),
    (pack([1]), "msgpack body must be a map, got array"),
    (pack(msgpack.ExtType(1, b"")), "msgpack body must be a map, got ext"),
])
def test_msgpack_errors(body: bytes, message: str) -> None:
    with pytest.raises(ServingError) as e:
        parse_classify_regress_msgpack(body)
    assert (e.value.code, e.value.message) == (Code.INVALID_ARGUMENT, message)


def test_results_to_json() -> None:
    classification = classification_pb2.ClassificationResult()
    c = classification.classifications.add().classes.add()
    c.label, c.score = "cat", 3.0
    classification.classifications.add().classes.add().score = 0.5
    assert format_classification_result(classification) == (
        b'{"results": [[["cat", 3.0]], [["", 0.5]]]}')
    regression = regression_pb2.RegressionResult()
    regression.regressions.add().value = 3.0
    regression.regressions.add().value = 9000000.0
    assert format_regression_result(regression) == b'{"results": [3.0, 9e+06]}'
    with pytest.raises(ServingError, match="Cannot convert empty RegressionResults to JSON"):
        format_regression_result(regression_pb2.RegressionResult())
