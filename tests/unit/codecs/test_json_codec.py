"""The REST predict JSON codec against TF Serving's json_tensor rules (tfserving-compat.md §2).

Expected offsets and messages were worked out by hand from rapidjson 1.1.0 and json_tensor.cc,
not copied from the implementation's output.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import math
import pickle
import struct
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfsfast import _extensions
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType, short_name, to_numpy
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

FLOAT, DOUBLE, INT32, INT64 = (DataType.DT_FLOAT, DataType.DT_DOUBLE, DataType.DT_INT32,
                               DataType.DT_INT64)
INT8, INT16, UINT8, UINT32, UINT64 = (DataType.DT_INT8, DataType.DT_INT16, DataType.DT_UINT8,
                                      DataType.DT_UINT32, DataType.DT_UINT64)
BOOL, STRING, HALF = DataType.DT_BOOL, DataType.DT_STRING, DataType.DT_HALF

# Every test runs against the compiled codec and its twin (the compiled one is skipped under
# TFSFAST_NO_EXTENSIONS=1, and a compiled codec that fails to import fails the tests).
IMPLS = implementations("tfsfast.codecs._json", "tfsfast.codecs._json_py")
# The modules the property tests below loop over.
IMPL_NAMES = [p.values[0] for p in IMPLS if p.values[0] is not None]


@pytest.fixture(params=IMPLS)
def codec(request):
    return import_impl(request.param)


def parse(codec, body, dtypes=None):
    if isinstance(body, str):
        body = body.encode()
    dtypes = {"x": FLOAT} if dtypes is None else dtypes
    return codec.parse_predict_request(body, lambda name: dtypes)


def error(codec, body, dtypes=None, code=Code.INVALID_ARGUMENT) -> str:
    with pytest.raises(ServingError) as info:
        parse(codec, body, dtypes)
    assert info.value.code == code, info.value
    return info.value.message


def values(request):
    return {k: (v.dtype, v.shape, v.tolist()) for k, v in request.inputs.items()}


# ---------------------------------------------------------------------------------------------
# 2.1 Parsing


def test_empty_body(codec) -> None:
    assert error(codec, b"") == "JSON Parse error: The document is empty"


def test_whitespace_body_is_rapidjsons_empty_document(codec) -> None:
    assert error(codec, b" \n\t") == "JSON Parse error: The document is empty. at offset: 3"


SYNTAX_ERRORS = [
    # (body, rapidjson message, byte offset)
    (b"{", "Missing a name for object member.", 1),
    (b"{,}", "Missing a name for object member.", 1),
    (b'{"a":1,}', "Missing a name for object member.", 7),
    (b'{"a"', "Missing a colon after a name of object member.", 4),
    (b'{"a" 1}', "Missing a colon after a name of object member.", 5),
    (b'{"a":', "Invalid value.", 5),
    (b'{"a":}', "Invalid value.", 5),
    (b'{"a":1', "Missing a comma or '}' after an object member.", 6),
    (b'{"a":1 "b":2}', "Missing a comma or '}' after an object member.", 7),
    (b'{"inputs": [1,]}', "Invalid value.", 14),
    (b'{"inputs": [1 2]}', "Missing a comma or ']' after an array element.", 14),
    (b'{"inputs": [1, 2', "Missing a comma or ']' after an array element.", 16),
    (b'{"inputs": [1.]}', "Miss fraction part in number.", 14),
    (b'{"inputs": [1.e5]}', "Miss fraction part in number.", 14),
    (b'{"inputs": [1e]}', "Miss exponent in number.", 14),
    (b'{"inputs": [1e+]}', "Miss exponent in number.", 15),
    (b'{"inputs": [1.5.3]}', "Missing a comma or ']' after an array element.", 15),
    (b'{"inputs": [01]}', "Missing a comma or ']' after an array element.", 13),
    (b'{"inputs": [-]}', "Invalid value.", 13),
    (b'{"inputs": [+1]}', "Invalid value.", 12),
    (b'{"inputs": [tru]}', "Invalid value.", 15),
    (b'{"inputs": [nul]}', "Invalid value.", 15),
    (b'{"inputs": [fals]}', "Invalid value.", 16),
    (b'{"inputs": [truex]}', "Missing a comma or ']' after an array element.", 16),
    (b'{"inputs": [x]}', "Invalid value.", 12),
    (b'{"inputs": "abc', "Missing a closing quotation mark in string.", 15),
    (b'{"inputs": "a\\qb"}', "Invalid escape character in string.", 13),
    (b'{"inputs": "a\\', "Invalid escape character in string.", 13),
    (b'{"inputs": "a\x01"}', "Invalid escape character in string.", 13),
    (b'{"inputs": "\\u12G4"}', "Incorrect hex digit after \\u escape in string.", 12),
    (b'{"inputs": "\\u12"}', "Incorrect hex digit after \\u escape in string.", 12),
    (b'{"inputs": "\\ud800x"}', "The surrogate pair in string is invalid.", 12),
    (b'{"inputs": "\\ud800\\u0041"}', "The surrogate pair in string is invalid.", 12),
    (b'{"inputs": "\\uDBFF\\uD800"}', "The surrogate pair in string is invalid.", 12),
    (b'{"inputs": "\\ud800\\uZZZZ"}', "Incorrect hex digit after \\u escape in string.", 12),
    (b'{"a": "\\ud800", "b": x}', "The surrogate pair in string is invalid.", 7),
    (b'{"inputs": [1e400]}', "Number too big to be stored in double.", 12),
    (b'{"inputs": [1, -2e309]}', "Number too big to be stored in double.", 15),
    (b'{"inputs": [0.1e310]}', "Number too big to be stored in double.", 12),
    (b'{"inputs": [' + b"9" * 310 + b"]}", "Number too big to be stored in double.", 12),
    (b'{"inputs": [' + b"9" * 310 + b".5]}", "Number too big to be stored in double.", 12),
    (b'{"inputs": [\xff]}', "Invalid value.", 12),
    (b"}", "The document is empty.", 0),
    (b"[1,2", "Missing a comma or ']' after an array element.", 4),
    (b"12.", "Miss fraction part in number.", 3),
    (b"-", "Invalid value.", 1),
    (b"tru", "Invalid value.", 3),
    (b'"abc', "Missing a closing quotation mark in string.", 4),
    (b'{"inputs": [Infinit]}', "Invalid value.", 19),
    (b'{"inputs": [Inf5]}', "Missing a comma or ']' after an array element.", 15),
    (b'{"inputs": [Inf.]}', "Miss fraction part in number.", 16),
    (b'{"inputs": [1-NaN]}', "Missing a comma or ']' after an array element.", 13),
    (b'{"inputs": [Nx]}', "Invalid value.", 13),
    (b'{"inputs": [- NaN]}', "Invalid value.", 13),
    ('{"é": x}'.encode(), "Invalid value.", 7),  # offsets count bytes, not characters
    (b'{"a"\x00:1}', "Missing a colon after a name of object member.", 4),  # NUL ends input
    (b'{"inputs": "ab\x00c"}', "Missing a closing quotation mark in string.", 14),
    (b"\xef\xbb\xbf{", "Missing a name for object member.", 4),  # BOM skipped, still counted
]


@pytest.mark.parametrize(("body", "message", "offset"), SYNTAX_ERRORS)
def test_syntax_errors_are_rapidjsons(codec, body, message, offset) -> None:
    assert error(codec, body) == f"JSON Parse error: {message} at offset: {offset}"


def test_first_error_in_document_order_wins(codec) -> None:
    # Python's parser accepts the lone surrogate and stops at the later number; rapidjson
    # reports the surrogate first.
    assert error(codec, b'{"a": "\\udbff", "inputs": [1e999]}') == (
        "JSON Parse error: The surrogate pair in string is invalid. at offset: 7")
    assert error(codec, b'{"inputs": [1e999], "a": "\\udbff"}') == (
        "JSON Parse error: Number too big to be stored in double. at offset: 12")


@pytest.mark.parametrize("body", [
    b'{"inputs": [1]} trailing junk',
    b'{"inputs": [1]}}',
    b'{"inputs": [1]}\x00{',
    b'{"inputs": [1]}{"inputs": "x"}',
])
def test_bytes_after_the_top_level_value_are_ignored(codec, body) -> None:
    assert values(parse(codec, body)) == {"x": (np.float32, (1,), [1.0])}


def test_utf8_bom_is_skipped(codec) -> None:
    assert values(parse(codec, b"\xef\xbb\xbf{\"inputs\": 2}")) == {"x": (np.float32, (), 2.0)}


def test_non_finite_tokens(codec) -> None:
    body = b'{"inputs": [NaN, Inf, -Inf, Infinity, -Infinity, -NaN]}'
    got = parse(codec, body).inputs["x"]
    assert np.isnan(got[0]) and np.isnan(got[5])
    assert got[1:5].tolist() == [math.inf, -math.inf, math.inf, -math.inf]


def test_rapidjson_1_1_non_finite_quirks(codec) -> None:
    # rapidjson 1.1.0 keeps reading a fraction/exponent after NaN/Inf (value 0.<frac>e<exp>),
    # and after a failed "NaN" it tries "Inf" with what is left.
    body = b'{"inputs": [Inf.5, -NaN.25e1, NaNe5, NaInf, -NInf]}'
    assert parse(codec, body).inputs["x"].tolist() == [0.5, -2.5, 0.0, math.inf, -math.inf]


def test_non_finite_spellings_inside_strings_are_text(codec) -> None:
    got = parse(codec, b'{"inputs": ["Inf", "-NaN", "Info"]}', {"x": STRING})
    assert got.inputs["x"].tolist() == [b"Inf", b"-NaN", b"Info"]


@pytest.mark.parametrize(("body", "echo"), [
    (b"[1,2]", "[1,2]"),
    (b"1.5", "1.5"),
    (b"1e2", "100.0"),  # a double at the top is echoed with the float writer
    (b"123456789", "123456789"),
    (b"18446744073709551616", "1.84467441e+19"),  # beyond 64 bits: a double
    (b'"abc"', '"abc"'),
    (b"null", "null"),
    (b"true", "true"),
    (b'[1.5, "a\\n", null, false, {"k": [1e300, 0.1, -0.0]}]',
     '[1.5,"a\\n",null,false,{"k":[1e300,0.1,-0.0]}]'),
    (b"[NaN, -Infinity]", "[NaN,-Infinity]"),
])
def test_top_level_must_be_an_object(codec, body, echo) -> None:
    assert error(codec, body) == f"JSON Value: {echo} Is not object"


def test_echoed_values_are_truncated_to_256_bytes(codec) -> None:
    echo = error(codec, b'["' + b"x" * 300 + b'"]').removeprefix("JSON Value: ")
    assert echo == '["' + "x" * 254 + " Is not object"
    # Truncation never splits a UTF-8 character.
    echo = error(codec, ('["' + "é" * 200 + '"]').encode()).removeprefix("JSON Value: ")
    assert echo == '["' + "é" * 127 + " Is not object"


def test_duplicate_keys_first_occurrence_wins(codec) -> None:
    assert values(parse(codec, b'{"inputs": 1, "inputs": [2]}')) == {"x": (np.float32, (), 1.0)}


# ---------------------------------------------------------------------------------------------
# 2.2 signature_name and the choice of key


def test_signature_name_must_be_a_string(codec) -> None:
    assert error(codec, b'{"signature_name": 1, "inputs": [1]}') == (
        "JSON Value: {\"signature_name\":1,\"inputs\":[1]} not formatted correctly. "
        "'signature_name' key must be a string value.")


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"inputs": 1}', "serving_default"),
    (b'{"signature_name": "", "inputs": 1}', "serving_default"),
    (b'{"signature_name": "predict_images", "inputs": 1}', "predict_images"),
])
def test_signature_name_is_looked_up_once_after_defaulting(codec, body, expected) -> None:
    calls = []

    def dtypes(name: str):
        calls.append(name)
        return {"x": FLOAT}

    request = codec.parse_predict_request(body, dtypes)
    assert calls == [expected]
    assert request.signature_name == expected


def test_unknown_signature_error_comes_from_the_lookup(codec) -> None:
    def dtypes(name: str):
        raise ServingError(Code.INVALID_ARGUMENT,
                           f'Serving signature name: "{name}" not found in signature def')

    with pytest.raises(ServingError) as info:
        codec.parse_predict_request(b'{"signature_name": "nope", "inputs": 1}', dtypes)
    assert info.value.message == 'Serving signature name: "nope" not found in signature def'


@pytest.mark.parametrize(("body", "shown"), [
    (b'{"inputs": 1}', "DEFAULT"),
    (b'{"signature_name": "foo", "inputs": 1}', "foo"),
])
def test_empty_input_map(codec, body, shown) -> None:
    assert error(codec, body, {}) == f"Failed to get input map for signature: {shown}"


def test_both_keys(codec) -> None:
    assert error(codec, b'{"instances": [1], "inputs": [1]}') == (
        "JSON Value: {\"instances\":[1],\"inputs\":[1]} Not formatted correctly expecting only "
        "one of 'inputs' or 'instances' keys to exist ")


def test_neither_key(codec) -> None:
    assert error(codec, b'{"signature_name": "a", "other": 1}') == (
        "Missing 'inputs' or 'instances' key")


def test_unknown_top_level_keys_are_ignored(codec) -> None:
    assert values(parse(codec, b'{"meta": {"a": [1]}, "inputs": 3}')) == {
        "x": (np.float32, (), 3.0)}


# ---------------------------------------------------------------------------------------------
# Row format


def test_instances_must_be_a_list(codec) -> None:
    assert error(codec, b'{"instances": 1}') == (
        "JSON Value: {\"instances\":1} Expecting 'instances' to be an list/array")


def test_instances_must_not_be_empty(codec) -> None:
    assert error(codec, b'{"instances": []}') == (
        "JSON Value: {\"instances\":[]} No values in 'instances' array")


def test_rows_are_batched(codec) -> None:
    request = parse(codec, b'{"instances": [[1,2],[3,4],[5,6]]}', {"default": INT32})
    assert request.columnar is False
    assert values(request) == {"default": (np.int32, (3, 2), [[1, 2], [3, 4], [5, 6]])}


def test_scalar_rows_give_a_vector(codec) -> None:
    body = b'{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}'
    got = parse(codec, body).inputs["x"]
    assert got.dtype == np.float32 and got.shape == (7,)
    assert got.tolist() == np.array([1, 2, 3, 4, 5.003, 0.007, 0], np.float32).tolist()


def test_plain_list_with_several_inputs(codec) -> None:
    assert error(codec, b'{"instances": [1, 2]}', {"a": FLOAT, "b": FLOAT}) == (
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map")


def test_rows_of_objects(codec) -> None:
    body = b"""{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}"""
    dtypes = {"int_tensor": INT32, "str_tensor": STRING, "float_tensor": FLOAT,
              "dbl_tensor": DOUBLE}
    got = parse(codec, body, dtypes).inputs
    assert got["int_tensor"].shape == (2, 3, 2)
    assert got["int_tensor"].ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert got["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    assert got["float_tensor"].dtype == np.float32 and got["float_tensor"].shape == (2, 2)
    assert got["dbl_tensor"].dtype == np.float64 and got["dbl_tensor"].shape == (2, 1)
    assert got["float_tensor"][1].tolist() == [2.0, math.inf]


def test_a_single_input_may_use_objects(codec) -> None:
    body = b'{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}'
    assert values(parse(codec, body, {"default": STRING})) == {
        "default": (object, (1, 2, 1), [[[b"hello"], [b"world"]]])}


def test_b64_rows_are_values_not_objects(codec) -> None:
    body = b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}'
    assert values(parse(codec, body, {"x": STRING})) == {
        "x": (object, (2,), [b"hello", b"world"])}


ROW_ERRORS = [
    # (body, dtypes, message)
    (b'{"instances": [{"a": 1, "b": 2}, [1, 20, 30]]}', {"a": FLOAT, "b": INT32},
     "Expecting object but got list at item 1 of input list"),
    (b'{"instances": [["baz", "bar"], {"x": ["baz", "bat"]}]}', {"x": STRING},
     "Expecting value/list but got object at item 1 of input list"),
    (b'{"instances": [{"a": 1, "b": 2}, {"b": 4}]}', {"a": FLOAT, "b": INT32},
     "Failed to process element: 1 of 'instances' list. JSON object: {\"b\":4} keys must be "
     "equal to: a,b"),
    (b'{"instances": [{"a": 1, "c": 2}]}', {"a": FLOAT, "b": INT32},
     "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "object: does not have named input: c"),
    (b'{"instances": [[1,2],[3,4],[5,6,7]]}', {"x": INT32},
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 2 but got: 3"),
    (b'{"instances": [[1,2],[3,4],[[5,6]]]}', {"x": INT32},
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [2] but got: [1,2]"),
    (b'{"instances": [1, [1]]}', {"x": INT32},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [] but got: [1]"),
    (b'{"instances": [[1,2],["a", "b"]]}', {"x": INT32},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "\"a\" Type: String is not of expected type: int32"),
    (b'{"instances": [{"x": [[1,2],[3,4]]}, {"x": [[[7,8],[9,0]]]}]}', {"x": INT32},
     "Failed to process element: 1 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting shape [2,2] but got: [1,2,2]"),
    (b'{"instances": [{"x": [1,2,3,4]}, {"x": [1,2,3]}]}', {"x": INT32},
     "Failed to process element: 1 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 4 but got: 3"),
    (b'{"instances": [[1, [2]]]}', {"x": INT32},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Encountered "
     "list at unexpected level: 1 expected < 1"),
]


@pytest.mark.parametrize(("body", "dtypes", "message"), ROW_ERRORS)
def test_row_errors(codec, body, dtypes, message) -> None:
    assert error(codec, body, dtypes) == message


@pytest.mark.parametrize(("body", "dtypes"), [
    (b'{"instances": [[1,2],[3,4],[5,6]]}', {"x": INT32}),
    (b'{"instances": [{"a": [1], "b": "s"}, {"b": "t", "a": [2]}]}', {"a": FLOAT, "b": STRING}),
    (b'{"instances": [{"b64": "aGk="}, "x"]}', {"x": STRING}),
    (b'{"instances": [[], []]}', {"x": FLOAT}),
    (b'{"instances": [300, -1]}', {"x": INT8}),
])
def test_batched_and_element_by_element_readings_agree(body, dtypes, monkeypatch) -> None:
    import tfsfast.codecs._json_py as twin
    import tfsfast.codecs._json_to_tensor as to_tensor
    fast = values(parse(twin, body, dtypes))
    monkeypatch.setattr(to_tensor, "_fast_rows", lambda *args: None)
    assert values(parse(twin, body, dtypes)) == fast


def test_row_of_unsupported_dtype_is_wrapped_as_invalid_argument(codec) -> None:
    assert error(codec, b'{"instances": [1]}', {"x": HALF}) == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion of "
        "JSON Value: 1 to type: half")


# ---------------------------------------------------------------------------------------------
# Columnar format


def test_columnar_single_tensor_keeps_its_shape(codec) -> None:
    request = parse(codec, b'{"inputs": [[[1,2],[3,4],[5,6]]]}', {"int_tensor": INT32})
    assert request.columnar is True
    assert values(request) == {"int_tensor": (np.int32, (1, 3, 2), [[[1, 2], [3, 4], [5, 6]]])}


def test_columnar_named_form_with_one_input(codec) -> None:
    request = parse(codec, b'{"inputs": {"int_tensor": [[1,2]]}}', {"int_tensor": INT32})
    assert values(request) == {"int_tensor": (np.int32, (1, 2), [[1, 2]])}


def test_columnar_b64_scalar(codec) -> None:
    assert values(parse(codec, b'{"inputs": {"b64": "aGVsbG8="}}', {"x": STRING})) == {
        "x": (object, (), b"hello")}


def test_columnar_object_has_no_shared_batch_and_ignores_extra_keys(codec) -> None:
    body = b"""{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],
                           "bin_tensor": {"b64": "aGVsbG8="}, "unused": [1, 2, 3]}}"""
    got = parse(codec, body, {"int_tensor": INT32, "str_tensor": STRING, "bin_tensor": STRING})
    assert values(got) == {
        "int_tensor": (np.int32, (1, 3, 2), [[[1, 2], [3, 4], [5, 6]]]),
        "str_tensor": (object, (2,), [b"foo", b"bar"]),
        "bin_tensor": (object, (), b"hello"),
    }


def test_columnar_missing_input(codec) -> None:
    assert error(codec, b'{"inputs": {"a": 1}}', {"a": FLOAT, "b": INT32}) == (
        "Missing named input: b in 'inputs' object.")


def test_columnar_plain_value_with_several_inputs(codec) -> None:
    assert error(codec, b'{"inputs": [1]}', {"a": FLOAT, "b": INT32}) == (
        "inputs is a plain value/list, but expecting an object as multiple input tensors "
        "required as per tensorinfo_map")


def test_columnar_unsupported_dtype_is_unimplemented(codec) -> None:
    assert error(codec, b'{"inputs": [1]}', {"x": HALF}, Code.UNIMPLEMENTED) == (
        "Conversion of JSON Value: 1 to type: half")


# ---------------------------------------------------------------------------------------------
# Dense shape rules


@pytest.mark.parametrize(("body", "message"), [
    (b'{"inputs": [[1,2], [3]]}',
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    (b'{"inputs": [[], [1]]}',
     "Encountered list at unexpected size: 1 at level: 1 expected size: 0"),
    (b'{"inputs": [1, [2]]}', "Encountered list at unexpected level: 1 expected < 1"),
    (b'{"inputs": [[1,2], 3]}',
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    (b'{"inputs": [[[1], [2]], [3, 4]]}',  # [3, 4] is at level 1: its values at level 2
     "JSON Value: 3 found at incorrect level: 3 in the JSON DOM. Expected at level: 3"),
])
def test_dense_shape_errors(codec, body, message) -> None:
    assert error(codec, body) == message


def test_empty_lists_give_zero_sized_dimensions(codec) -> None:
    assert values(parse(codec, b'{"inputs": [[], []]}')) == {"x": (np.float32, (2, 0), [[], []])}
    assert values(parse(codec, b'{"inputs": []}', {"x": HALF})) == {"x": (np.float16, (0,), [])}


def test_first_error_in_document_order(codec) -> None:
    # A type error at [0][1] comes before the size error of [1].
    assert error(codec, b'{"inputs": [[1, "a"], [2]]}') == (
        "JSON Value: \"a\" Type: String is not of expected type: float")


# ---------------------------------------------------------------------------------------------
# Scalars by dtype

ACCEPTED = [
    (FLOAT, "1", 1.0),
    (FLOAT, "1.5", 1.5),
    (FLOAT, "1435774380", 1435774336.0),  # rounded to float
    (FLOAT, "1e39", math.inf),  # float overflow is inf, not an error
    (FLOAT, "-1.7976931348623157e308", -math.inf),
    (FLOAT, "-1e-50", -0.0),
    (FLOAT, "9e308", math.inf),  # rapidjson 1.1.0 reads this as inf without complaint
    (FLOAT, "1" * 25, float(np.float32(1.111111111111111e24))),  # a double, so fine for float
    (DOUBLE, "1", 1.0),
    (DOUBLE, "0.1", 0.1),
    (DOUBLE, "18446744073709551616", 1.8446744073709552e19),
    (INT32, "-2147483648", -2147483648),
    (INT32, "2147483647", 2147483647),
    (INT8, "300", 44),  # int32-range check only, then C-style wrap
    (INT8, "-129", 127),
    (INT16, "70000", 4464),
    (UINT8, "-1", 255),
    (INT64, "9223372036854775807", 9223372036854775807),
    (INT64, "-9223372036854775808", -9223372036854775808),
    (INT64, "-0", 0),
    (UINT32, "4294967295", 4294967295),
    (UINT64, "18446744073709551615", 18446744073709551615),
    (BOOL, "true", True),
    (BOOL, "false", False),
    (STRING, '"h\\u00e9llo"', "héllo".encode()),
    (STRING, '"\\ud83d\\ude00"', "😀".encode()),
    (STRING, '"\\udc00"', b"\xed\xb0\x80"),  # a lone low surrogate: rapidjson's 3 bytes
    (STRING, '"\\\\ud800"', b"\\ud800"),  # an escaped backslash, not an escape
    (STRING, '{"b64": "aGVsbG8="}', b"hello"),
    (STRING, '{"b64": ""}', b""),
    (STRING, '{"b64": "aGVsbG8"}', b"hello"),  # absl: padding optional
    (STRING, '{"b64": " aGVs\\nbG8= "}', b"hello"),  # absl: whitespace skipped
    (STRING, '{"b64": "aGVsbG8."}', b"hello"),  # absl: '.' pads too
]


@pytest.mark.parametrize(("dtype", "token", "expected"), ACCEPTED)
def test_accepted_scalars(codec, dtype, token, expected) -> None:
    got = parse(codec, f'{{"inputs": [{token}]}}', {"x": dtype}).inputs["x"]
    assert got.dtype == to_numpy(dtype)
    assert got.shape == (1,)
    value = got[0].item() if dtype != STRING else got[0]
    assert value == expected
    if isinstance(expected, float):
        assert math.copysign(1, value) == math.copysign(1, expected)


REJECTED = [
    (FLOAT, "true", "JSON Value: true Type: True is not of expected type: float"),
    (FLOAT, '"1"', "JSON Value: \"1\" Type: String is not of expected type: float"),
    (FLOAT, "null", "JSON Value: null Type: Null is not of expected type: float"),
    (FLOAT, '{"a": 1}', "JSON Value: {\"a\":1} Type: Object is not of expected type: float"),
    (DOUBLE, "false", "JSON Value: false Type: False is not of expected type: double"),
    (INT32, "1.0", "JSON Value: 1.0 Type: Number is not of expected type: int32"),
    (INT32, "1e2", "JSON Value: 100.0 Type: Number is not of expected type: int32"),
    (INT32, "2147483648", "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
    (INT8, "-2147483649", "JSON Value: -2147483649 Type: Number is not of expected type: int8"),
    (UINT8, "null", "JSON Value: null Type: Null is not of expected type: uint8"),
    (INT64, "9223372036854775808",
     "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64"),
    (INT64, "1" * 25, "JSON Value: 1.11111109e+24 Type: Number is not of expected type: int64"),
    (INT64, "0.5", "JSON Value: 0.5 Type: Number is not of expected type: int64"),
    (UINT32, "-1", "JSON Value: -1 Type: Number is not of expected type: uint32"),
    (UINT32, "4294967296", "JSON Value: 4294967296 Type: Number is not of expected type: uint32"),
    (UINT64, "-1", "JSON Value: -1 Type: Number is not of expected type: uint64"),
    (UINT64, "18446744073709551616",
     "JSON Value: 1.84467441e+19 Type: Number is not of expected type: uint64"),
    (BOOL, "0", "JSON Value: 0 Type: Number is not of expected type: bool"),
    (BOOL, '"true"', "JSON Value: \"true\" Type: String is not of expected type: bool"),
    (STRING, "5", "JSON Value: 5 Type: Number is not of expected type: string"),
    (STRING, "null", "JSON Value: null Type: Null is not of expected type: string"),
    (STRING, '{"b64": 1}', "JSON Value: {\"b64\":1} not formatted correctly for base64 data"),
    (STRING, '{"b64": "aGk=", "x": 1}',
     "JSON Value: {\"b64\":\"aGk=\",\"x\":1} not formatted correctly for base64 data"),
    (STRING, '{"B64": "aGk="}', "JSON Value: {\"B64\":\"aGk=\"} not formatted correctly for "
                                "base64 data"),
    (STRING, '{"b64": "@@@@"}', "Unable to base64 decode"),
    (STRING, '{"b64": "aGVsbG8=="}', "Unable to base64 decode"),  # wrong amount of padding
    (STRING, '{"b64": "aGVsb"}', "Unable to base64 decode"),  # 6 bits left over
    (STRING, '{"b64": "aGVs-G8="}', "Unable to base64 decode"),  # web-safe alphabet
    (STRING, '{"b64": "aGk=aGk="}', "Unable to base64 decode"),  # data after padding
    (HALF, '{"b64": "aGk="}', "JSON Value: {\"b64\":\"aGk=\"} Type: Object is not of expected "
                              "type: half"),
]


@pytest.mark.parametrize(("dtype", "token", "message"), REJECTED)
def test_rejected_scalars(codec, dtype, token, message) -> None:
    assert error(codec, f'{{"inputs": [{token}]}}', {"x": dtype}) == message


@pytest.mark.parametrize("dtype", [HALF, DataType.DT_BFLOAT16, DataType.DT_UINT16,
                                   DataType.DT_COMPLEX64, DataType.DT_COMPLEX128])
def test_dtypes_json_cannot_carry_are_unimplemented(codec, dtype) -> None:
    message = error(codec, b'{"inputs": [null]}', {"x": dtype}, Code.UNIMPLEMENTED)
    assert message == f"Conversion of JSON Value: null to type: {short_name(dtype)}"


@pytest.mark.parametrize("dtype", [FLOAT, DOUBLE, INT32, INT8, INT16, UINT8, INT64, UINT32,
                                   UINT64, BOOL, STRING])
def test_null_is_always_a_type_error(codec, dtype) -> None:
    assert error(codec, b'{"inputs": null}', {"x": dtype}) == (
        f"JSON Value: null Type: Null is not of expected type: {short_name(dtype)}")


# ---------------------------------------------------------------------------------------------
# Strings and encodings


def test_strings_are_utf8_bytes(codec) -> None:
    got = parse(codec, '{"inputs": ["héllo", "日本", ""]}'.encode(), {"x": STRING})
    assert got.inputs["x"].tolist() == ["héllo".encode(), "日本".encode(), b""]


def test_invalid_utf8_in_a_string_passes_through_as_bytes(codec) -> None:
    # TF Serving does not validate UTF-8; the bytes reach the model unchanged.
    got = parse(codec, b'{"inputs": ["a\xff\xfeb", "\xc3\xa9", "\xed\xa0\x80"]}', {"x": STRING})
    assert got.inputs["x"].tolist() == [b"a\xff\xfeb", b"\xc3\xa9", b"\xed\xa0\x80"]


def test_invalid_utf8_outside_a_string_is_a_parse_error(codec) -> None:
    assert error(codec, b'{"inputs": [1, \xc3]}') == (
        "JSON Parse error: Invalid value. at offset: 15")


def test_invalid_utf8_with_a_lone_low_surrogate_escape_is_refused(codec) -> None:
    # Deliberate deviation (documented): the two cannot be told apart once decoded.
    assert error(codec, b'{"inputs": ["\xff", "\\udc80"]}', {"x": STRING}) == (
        "JSON Parse error: Invalid encoding in string. at offset: 13")


def test_invalid_utf8_with_an_escaped_backslash_before_udc80_is_fine(codec) -> None:
    got = parse(codec, b'{"inputs": ["\xff", "\\\\udc80"]}', {"x": STRING})
    assert got.inputs["x"].tolist() == [b"\xff", b"\\udc80"]


@pytest.mark.parametrize("extra", [b"", b', "pad": "123456789012345678901 1e100"'])
def test_number_reading_does_not_depend_on_the_rest_of_the_body(codec, extra) -> None:
    # A long digit run or a 3-digit exponent anywhere switches to number hooks; results agree.
    body = b'{"inputs": [99999999999999999999, -9223372036854775809, 1e300]' + extra + b"}"
    assert parse(codec, body, {"x": DOUBLE}).inputs["x"].tolist() == [1e20, -9.223372036854776e18,
                                                                     1e300]
    assert error(codec, body, {"x": INT64}) == (
        "JSON Value: 1e+20 Type: Number is not of expected type: int64")


def test_invalid_utf8_in_a_key_is_echoed_with_replacement_characters(codec) -> None:
    message = error(codec, b'{"instances": [{"a\xff": 1}]}', {"a": FLOAT})
    assert message == ("Failed to process element: 0 key: a\ufffd of 'instances' list. Error: "
                       "INVALID_ARGUMENT: JSON object: does not have named input: a\ufffd")
    assert json.loads(codec.format_error(message)) == {"error": message}


# ---------------------------------------------------------------------------------------------
# Hardening limits


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def test_nesting_at_the_limit_is_accepted(codec) -> None:
    # The object counts as one level: 99 lists inside it make 100.
    got = parse(codec, b'{"inputs": ' + nested(31) + b', "pad": ' + nested(99) + b"}")
    assert got.inputs["x"].shape == (1,) * 31


@pytest.mark.parametrize("body", [
    b'{"inputs": ' + nested(100) + b"}",
    b'{"inputs": 1, "other": ' + nested(100_000) + b"}",
    b'{"instances": ' + b"[" * 100_000,  # truncated, never closed
    b'{"instances": ' + b'[{"a":' * 50_000,
])
def test_deep_nesting_is_refused_before_parsing(codec, body) -> None:
    assert error(codec, body) == "JSON nesting depth exceeds the maximum of 100"


def test_brackets_inside_strings_do_not_count(codec) -> None:
    got = parse(codec, b'{"inputs": ["' + b"[" * 500 + b'"]}', {"x": STRING})
    assert got.inputs["x"].tolist() == [b"[" * 500]


def test_depth_limit_is_the_codecs(codec) -> None:
    shallow = codec.JsonCodec(CodecLimits(max_json_depth=3))
    assert parse(shallow, b'{"inputs": [[1]]}').inputs["x"].shape == (1, 1)
    assert error(shallow, b'{"inputs": [[[1]]]}') == "JSON nesting depth exceeds the maximum of 3"


def test_rank_limit(codec) -> None:
    assert parse(codec, b'{"inputs": ' + nested(32) + b"}").inputs["x"].ndim == 32
    assert error(codec, b'{"inputs": ' + nested(33) + b"}") == (
        "Input: x has rank 33, which exceeds the maximum tensor rank of 32")
    # Rows add the batch dimension.
    assert parse(codec, b'{"instances": [' + nested(31) + b"]}").inputs["x"].ndim == 32
    assert error(codec, b'{"instances": [' + nested(32) + b"]}") == (
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Input: x "
        "has rank 33, which exceeds the maximum tensor rank of 32")


def test_element_limits(codec) -> None:
    small = codec.JsonCodec(CodecLimits(max_tensor_elements=4))
    assert parse(small, b'{"inputs": [[1,2],[3,4]]}').inputs["x"].size == 4
    assert error(small, b'{"inputs": [[1,2],[3,4],[5,6]]}') == (
        "Input: x has 6 elements, which exceeds the maximum of 4 elements per tensor")
    assert error(small, b'{"instances": [[1,2],[3,4],[5,6]]}') == (
        "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Input: x "
        "has 6 elements, which exceeds the maximum of 4 elements per tensor")
    few = codec.JsonCodec(CodecLimits(max_tensor_elements=4, max_request_elements=5))
    assert error(few, b'{"inputs": {"a": [1,2,3], "b": [1,2,3]}}', {"a": FLOAT, "b": FLOAT}) == (
        "Request has more than 5 tensor elements, the maximum per request")


def test_million_digit_integer_is_refused_without_parsing_it(codec) -> None:
    body = b'{"instances": [' + b"7" * 1_000_000 + b"]}"
    assert error(codec, body, {"x": INT64}) == (
        "JSON Parse error: Number too big to be stored in double. at offset: 15")


def test_long_integers_are_doubles(codec) -> None:
    # More than 20 digits never becomes an integer: an integer dtype rejects it, a float takes it.
    digits = b"123456789012345678901"
    assert error(codec, b'{"inputs": [' + digits + b"]}", {"x": INT64}) == (
        # echoed as TF echoes a double in float range: the float32 value, %.9g
        "JSON Value: 1.2345679e+20 Type: Number is not of expected type: int64")
    assert parse(codec, b'{"inputs": [' + digits + b"]}", {"x": DOUBLE}).inputs["x"].tolist() == [
        1.2345678901234568e20]


def test_int_digit_limit_is_the_codecs(codec) -> None:
    short = codec.JsonCodec(CodecLimits(max_int_digits=3))
    assert parse(short, b'{"inputs": [123]}', {"x": INT64}).inputs["x"].tolist() == [123]
    assert error(short, b'{"inputs": [1234]}', {"x": INT64}) == (
        "JSON Value: 1234.0 Type: Number is not of expected type: int64")


def test_huge_exponent_and_fraction_are_cheap(codec) -> None:
    assert error(codec, b'{"inputs": [1e' + b"9" * 1_000_000 + b"]}") == (
        "JSON Parse error: Number too big to be stored in double. at offset: 12")
    got = parse(codec, b'{"inputs": [0.' + b"0" * 1_000_000 + b"1e1000000]}", {"x": DOUBLE})
    assert got.inputs["x"].tolist() == [0.1]


@pytest.mark.parametrize("cut", [1, 5, 12, 14, 20, 27, 31, 38])
def test_truncated_bodies_fail_cleanly(codec, cut) -> None:
    body = b'{"instances": [{"x": [1.5, 2]}, {"x": [3, "\\u00e9"]}]}'[:cut]
    message = error(codec, body, {"x": STRING})
    assert message.startswith("JSON Parse error: ")
    assert message.endswith(f" at offset: {cut}")


def test_hostile_bodies_give_invalid_argument(codec) -> None:
    for body in [b"\x00", b"\xff" * 100, b'{"instances": [' + b"1," * 100_000 + b"]}",
                 b'{"' + b"\\" * 10_001 + b'": 1}', b'"' + b'\\"' * 50_000]:
        with pytest.raises(ServingError) as info:
            parse(codec, body)
        assert info.value.code == Code.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------
# 2.3 Responses


def respond(codec, outputs, columnar, output_dtypes=None) -> bytes:
    return codec.format_predict_response(outputs, columnar, output_dtypes)


def respond_error(codec, outputs, columnar, output_dtypes=None) -> str:
    with pytest.raises(ServingError) as info:
        respond(codec, outputs, columnar, output_dtypes)
    assert info.value.code == Code.INVALID_ARGUMENT
    return info.value.message


@pytest.mark.parametrize(("value", "text"), [
    (3, "3.0"),
    (9000000, "9e+06"),
    (999999, "999999.0"),
    (0.5, "0.5"),
    (0.0003, "0.0003"),
    (0.00003, "3e-05"),
    (555557.5, "555557.5"),
    (0.1, "0.1"),
    (16777216, "16777216.0"),  # %g gives 1.67772e+07, which does not read back: %.9g
    (-0.0, "-0.0"),
    (1e-45, "1.4013e-45"),
    (3.4028234663852886e38, "3.40282347e+38"),
    (math.nan, "NaN"),
    (math.inf, "Infinity"),
    (-math.inf, "-Infinity"),
])
def test_float_text(codec, value, text) -> None:
    body = respond(codec, {"y": np.array([value], np.float32)}, True)
    assert body == b'{"outputs": [' + text.encode() + b"]}"


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3.0"),
    (0.1, "0.1"),
    (1 / 3, "0.33333333333333331"),
    (1e300, "1e+300"),
    (5e-324, "4.94066e-324"),
    (123456789.0, "123456789.0"),
    (1234567.0, "1234567.0"),
])
def test_double_text(codec, value, text) -> None:
    body = respond(codec, {"y": np.array([value], np.float64)}, True)
    assert body == b'{"outputs": [' + text.encode() + b"]}"


def test_row_response_single_output(codec) -> None:
    got = respond(codec, {"y": np.array([2.5, 3, 4.5], np.float32)}, False)
    assert got == b'{"predictions": [2.5, 3.0, 4.5]}'
    got = respond(codec, {"y": np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], np.int32)}, False)
    assert got == b'{"predictions": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}'


def test_row_response_several_outputs_are_objects_in_alias_order(codec) -> None:
    outputs = {"str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
               "double_scalar_tensor": np.array([8.0, 9.0]),
               "int_tensor": np.array([[1, 2], [3, 4]], np.int32)}
    assert respond(codec, outputs, False) == (
        b'{"predictions": [{"double_scalar_tensor": 8.0, "int_tensor": [1, 2], '
        b'"str_tensor": ["foo", "bar"]}, {"double_scalar_tensor": 9.0, "int_tensor": [3, 4], '
        b'"str_tensor": ["baz", "bat"]}]}')


def test_columnar_response(codec) -> None:
    outputs = {"b": np.array([True, False]), "a": np.array([[1, 2]], np.int64)}
    assert respond(codec, outputs, True) == (
        b'{"outputs": {"a": [[1, 2]], "b": [true, false]}}')
    assert respond(codec, {"s": np.array(7, np.int32)}, True) == b'{"outputs": 7}'
    assert respond(codec, {"s": np.array(b"hi", dtype=object)}, True) == b'{"outputs": "hi"}'


def test_big_integers_are_written_as_integers(codec) -> None:
    outputs = {"i": np.array([-2**63, 2**63 - 1], np.int64),
               "u": np.array([0, 2**64 - 1], np.uint64)}
    assert respond(codec, outputs, True) == (
        b'{"outputs": {"i": [-9223372036854775808, 9223372036854775807], '
        b'"u": [0, 18446744073709551615]}}')


def test_string_outputs(codec) -> None:
    outputs = {"s": np.array([b'q"\\\x01\x1f\n/', "é".encode(), b"a\xffb"], dtype=object)}
    assert respond(codec, outputs, True) == (
        b'{"outputs": ["q\\"\\\\\\u0001\\u001F\\n/", "\xc3\xa9", "a\xef\xbf\xbdb"]}')
    json.loads(respond(codec, outputs, True))


def test_bytes_outputs_are_base64(codec) -> None:
    outputs = {"str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]],
                                            dtype=object)}
    assert respond(codec, outputs, False) == (
        b'{"predictions": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], '
        b'[{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}')


def test_response_errors(codec) -> None:
    assert respond_error(codec, {}, True) == "Cannot convert empty tensor map to JSON"
    assert respond_error(codec, {"t": np.array(1, np.int32)}, False) == (
        "Tensor name: t has no shape information ")
    assert respond_error(codec, {"a": np.zeros(2), "b": np.zeros(3)}, False) == (
        "Tensor name: b has inconsistent batch size: 3 expecting: 2")
    assert respond_error(codec, {"c": np.array([1 + 2j], np.complex64)}, True) == (
        "Failed to write JSON value for tensor type: complex64")
    assert respond_error(codec, {"h": np.array([1.5], np.float16)}, False) == (
        "Failed to write JSON value for tensor type: half")


def test_empty_tensors(codec) -> None:
    assert respond(codec, {"c": np.zeros((0,), np.complex64)}, False) == b'{"predictions": []}'
    assert respond(codec, {"e": np.zeros((2, 0, 3), np.float32)}, True) == (
        b'{"outputs": [[], []]}')
    assert respond(codec, {"e": np.zeros((2, 3, 0), np.float32)}, False) == (
        b'{"predictions": [[[], [], []], [[], [], []]]}')


def test_declared_output_dtypes_win(codec) -> None:
    got = respond(codec, {"y": np.array([0.1], np.float64)}, True, {"y": FLOAT})
    assert got == b'{"outputs": [0.1]}'  # written as the float32 it is declared to be
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = respond(codec, {"y": np.array([1e300])}, True, {"y": FLOAT})
    assert got == b'{"outputs": [Infinity]}'
    assert respond_error(codec, {"y": np.array([1.0])}, True, {"y": HALF}) == (
        "Failed to write JSON value for tensor type: half")


# ---------------------------------------------------------------------------------------------
# Error bodies


@pytest.mark.parametrize(("message", "body"), [
    ('Bad key: "key"', b'{\n    "error": "Bad key: \\"key\\""\n}'),
    ("tab\there\\ \x01 é", b'{\n    "error": "tab\\there\\\\ \\u0001 \xc3\xa9"\n}'),
    ("", b'{\n    "error": ""\n}'),
])
def test_format_error(codec, message, body) -> None:
    assert codec.format_error(message) == body


# ---------------------------------------------------------------------------------------------
# Round trips and float text properties


@pytest.mark.parametrize("columnar", [False, True])
@pytest.mark.parametrize(("dtype", "array"), [
    (FLOAT, np.array([[1.5, -0.0, 1e-8], [3.4e38, np.inf, 16777217]], np.float32)),
    (DOUBLE, np.array([[0.1, 1 / 3], [5e-324, -1e308]], np.float64)),
    (INT32, np.array([[-2**31, 2**31 - 1]], np.int32)),
    (INT64, np.array([-2**63, 2**63 - 1], np.int64)),
    (UINT64, np.array([2**64 - 1], np.uint64)),
    (BOOL, np.array([[True], [False]])),
    (STRING, np.array([b"a", "é".encode(), b'"\\'], dtype=object)),
])
def test_round_trip(codec, columnar, dtype, array) -> None:
    text = respond(codec, {"t": array}, columnar)
    key = b'"outputs"' if columnar else b'"predictions"'
    request_body = text.replace(key, b'"inputs"' if columnar else b'"instances"', 1)
    got = parse(codec, request_body, {"t": dtype})
    assert got.columnar is columnar
    assert got.inputs["t"].dtype == array.dtype
    np.testing.assert_array_equal(got.inputs["t"], array)


def test_round_trip_bytes_alias(codec) -> None:
    array = np.array([b"\x00\xff", b""], dtype=object)
    text = respond(codec, {"x_bytes": array}, True)
    got = parse(codec, text.replace(b'"outputs"', b'"inputs"'), {"x_bytes": STRING})
    assert got.inputs["x_bytes"].tolist() == [b"\x00\xff", b""]


def float32_text(codec, value: float) -> str:
    body = respond(codec, {"y": np.array([value], np.float32)}, True)
    return body[len(b'{"outputs": ['):-2].decode()


def float64_text(codec, value: float) -> str:
    body = respond(codec, {"y": np.array([value], np.float64)}, True)
    return body[len(b'{"outputs": ['):-2].decode()


@given(st.floats(width=32, allow_nan=False))
def test_float32_text_reads_back_exactly(value) -> None:
    for name in IMPL_NAMES:
        text = float32_text(importlib.import_module(name), value)
        assert "." in text or "e" in text or text.endswith("Infinity")
        back = np.float32(float(text)) if "Infinity" not in text else np.float32(
            math.copysign(math.inf, value))
        assert struct.pack("<f", back) == struct.pack("<f", value), text
        assert text == six_digit_or_full(value, 9)


@given(st.floats(allow_nan=False))
def test_float64_text_reads_back_exactly(value) -> None:
    for name in IMPL_NAMES:
        text = float64_text(importlib.import_module(name), value)
        back = float(text) if "Infinity" not in text else math.copysign(math.inf, value)
        assert struct.pack("<d", back) == struct.pack("<d", value), text
        assert text == six_digit_or_full(value, 17)


def six_digit_or_full(value: float, digits: int) -> str:
    """The rule as the doc states it, computed independently with Python's float parsing (the
    float32 check is exact here for values whose %g text is not a float32 midpoint)."""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    back = float(text)
    if digits == 9:
        back = float(np.float32(back))
    if back != value:
        text = f"{value:.{digits}g}"
    return text if "." in text or "e" in text else text + ".0"


def test_float32_text_rounds_decimal_to_float_directly(codec) -> None:
    # 1.00000006e-6's %g text "1e-06" is the double 1e-06, which rounds to float32 0x358637BD;
    # the value printed must read back through correct decimal->float rounding as absl does.
    for bits in (0x358637BD, 0x358637BE, 0x7F7FFFFF, 0x00000001, 0x4B800001):
        value = struct.unpack("<f", struct.pack("<I", bits))[0]
        text = float32_text(codec, value)
        exact = Fraction(text)
        neighbours = [struct.unpack("<f", struct.pack("<I", b))[0] for b in
                      (bits - 1, bits, bits + 1)]
        nearest = min((f for f in neighbours if math.isfinite(f)),
                      key=lambda f: abs(Fraction(f) - exact))
        assert nearest == value, text


# ---------------------------------------------------------------------------------------------
# The facade and the extension switch


def test_facade_exports_the_twin_without_warning() -> None:
    import tfsfast.codecs.json_codec as facade
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(facade)
    expected = {"compiled": "tfsfast.codecs._json",
                "python": "tfsfast.codecs._json_py"}[facade.IMPLEMENTATION]
    impl = importlib.import_module(expected)
    assert facade.JsonCodec is impl.JsonCodec
    assert facade.format_predict_response is impl.format_predict_response
    assert facade.format_error is impl.format_error
    assert facade.PredictRequest is impl.PredictRequest


def test_extensions_load_warn_flag(monkeypatch) -> None:
    monkeypatch.setattr(_extensions, "NO_EXTENSIONS", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mod = _extensions.load("tfsfast.codecs._no_such_module", "tfsfast.codecs._json_py",
                               warn=False)
    assert mod.__name__ == "tfsfast.codecs._json_py"
    with pytest.warns(RuntimeWarning, match="_no_such_module unavailable"):
        _extensions.load("tfsfast.codecs._no_such_module", "tfsfast.codecs._json_py")
    # Any import failure other than the compiled module's own absence (here: its package is
    # missing) still warns, even with warn=False.
    with pytest.warns(RuntimeWarning, match="unavailable"):
        _extensions.load("tfsfast._no_such_package.mod", "tfsfast.codecs._json_py", warn=False)


def test_base64_of_every_byte_round_trips(codec) -> None:
    data = bytes(range(256))
    token = base64.b64encode(data).decode()
    got = parse(codec, f'{{"inputs": {{"b64": "{token}"}}}}', {"x": STRING})
    assert got.inputs["x"].item() == data


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever the bytes, a clean ServingError or a request (hardening.md P1)

FUZZ_SEEDS = [
    b'{"instances": [[1, 2.5, -3e2], [4, 5, 6]], "signature_name": "s"}',
    b'{"inputs": {"x": ["x\\u00e9\\"", {"b64": "aGk="}], "y": [true, false, null]}}',
    b'{"instances": [{"x": 1.0e-5, "y": "\\ud83d\\ude00"}, {"x": 0, "y": "q\\\\"}]}',
    b'{"inputs": [NaN, Infinity, -Inf, 0.5, 12345678901234567890, 1e308]}',
]
FUZZ_BYTES = b'{}[],:"\\ 0123456789.eE+-tfnulrsaINfiy\t\nx\x00\xff\xc3\xa9\xef\xbb\xbf\x01'


@st.composite
def mutated_bodies(draw) -> bytes:
    body = bytearray(draw(st.sampled_from(FUZZ_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(body)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        byte = draw(st.sampled_from(FUZZ_BYTES))
        if op == "insert":
            body[i:i] = bytes([byte])
        elif op == "delete":
            del body[i:i + 1]
        elif op == "replace":
            body[i:i + 1] = bytes([byte])
        else:
            del body[i:]
    return bytes(body)


@given(mutated_bodies())
def test_mutated_bodies_fail_cleanly(body) -> None:
    for name in IMPL_NAMES:
        impl = importlib.import_module(name)
        for dtypes in ({"x": FLOAT}, {"x": STRING, "y": STRING}, {"x": INT64, "y": BOOL}):
            try:
                impl.parse_predict_request(body, lambda _, d=dtypes: d)
            except ServingError as e:
                assert e.code in (Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED), e
                if e.message.startswith("JSON Parse error: ") and " at offset: " in e.message:
                    assert 0 <= int(e.message.rsplit(" ", 1)[1]) <= len(body)


@pytest.mark.parametrize(("body", "message", "offset"), [
    # rapidjson 1.1.0 reads a fraction/exponent after NaN/Inf, so these fail inside the number
    (b'{"inputs": [InfEinity]}', "Miss exponent in number.", 16),
    (b'{"inputs": [-InfinityE0.5]}', "Missing a comma or ']' after an array element.", 23),
    (b'{"inputs": [NaN.]}', "Miss fraction part in number.", 16),
    # ...and after a failed "NaN" it tries "Inf" from where it stopped
    (b'{"inputs": [NINaN]}', "Invalid value.", 14),
    # a lone *low* surrogate escape is fine in 1.1.0; the bad escape after it is the error
    (b'{"inputs": ["\\ude00\\d"]}', "Invalid escape character in string.", 19),
])
def test_rapidjson_1_1_number_and_escape_quirks(codec, body, message, offset) -> None:
    assert error(codec, body) == f"JSON Parse error: {message} at offset: {offset}"


# ---------------------------------------------------------------------------------------------
# What an implementation may keep between calls must not outlive what it was derived from


def test_a_signature_dict_changed_in_place_is_read_again(codec) -> None:
    # The REST fast path hands back the same dict for a signature every time; the compiled
    # codec derives what it needs from that dict once, so changes to it must still show.
    dtypes = {"x": FLOAT}
    lookup = lambda name: dtypes  # noqa: E731
    body = b'{"instances": [[1], [2]]}'
    assert values(codec.parse_predict_request(body, lookup)) == {
        "x": (np.float32, (2, 1), [[1.0], [2.0]])}
    dtypes["x"] = INT32
    assert values(codec.parse_predict_request(body, lookup)) == {
        "x": (np.int32, (2, 1), [[1], [2]])}
    dtypes["y"] = INT32
    with pytest.raises(ServingError) as info:
        codec.parse_predict_request(body, lookup)
    assert info.value.message.startswith("instances is a plain list, but expecting list of objects")
    del dtypes["y"]
    dtypes["x"] = int(FLOAT)  # an equal value of another type reads the same
    assert values(codec.parse_predict_request(body, lookup))["x"][0] == np.float32
    del dtypes["x"]
    dtypes["z"] = INT64  # same size, other alias
    request = codec.parse_predict_request(b'{"inputs": {"z": [7]}}', lookup)
    assert values(request) == {"z": (np.int64, (1,), [7])}


def test_several_signature_dicts_in_turn(codec) -> None:
    signatures = {"a": {"x": FLOAT}, "b": {"x": INT64, "y": BOOL}}
    lookup = signatures.__getitem__
    for _ in range(3):
        request = codec.parse_predict_request(b'{"signature_name": "a", "inputs": [1]}', lookup)
        assert values(request) == {"x": (np.float32, (1,), [1.0])}
        request = codec.parse_predict_request(
            b'{"signature_name": "b", "instances": [{"x": 1, "y": true}]}', lookup)
        assert values(request) == {"x": (np.int64, (1,), [1]), "y": (np.bool_, (1,), [True])}
        assert request.signature_name == "b" and request.columnar is False


def test_a_new_dict_in_place_of_a_collected_one_is_read_afresh(codec) -> None:
    # A cache keyed by id() would be fooled by a new dict at a freed one's address.
    for dtype, np_dtype in [(FLOAT, np.float32), (INT32, np.int32), (DOUBLE, np.float64)] * 3:
        request = codec.parse_predict_request(b'{"inputs": [1]}', lambda _, d=dtype: {"x": d})
        assert request.inputs["x"].dtype == np_dtype


def test_the_request_is_a_plain_predict_request(codec) -> None:
    request = parse(codec, '{"inputs": [1.0]}')
    assert type(request) is codec.PredictRequest
    assert (request.signature_name, request.columnar) == ("serving_default", True)
    assert request == codec.PredictRequest("serving_default", request.inputs, True)
    with pytest.raises(AttributeError):
        request.extra = 1  # slotted
    copy = pickle.loads(pickle.dumps(request))
    assert (copy.signature_name, copy.columnar) == ("serving_default", True)
    assert copy.inputs["x"].tolist() == [1.0]
    request.inputs = {}  # the fields stay assignable
    assert request.inputs == {}


def test_a_body_the_fast_path_hands_over_is_still_the_codecs_request(codec) -> None:
    body = b'{"inp\\u0075ts": [1.0]}'  # an escaped key: the compiled codec's twin reads it
    if codec.__name__.endswith("._json"):
        assert codec._parse_fast(body, lambda _: {"x": FLOAT}) is None
    request = parse(codec, body)
    assert type(request) is codec.PredictRequest
    assert (request.signature_name, request.columnar) == ("serving_default", True)
    assert request.inputs["x"].tolist() == [1.0]


def test_compiled_and_twin_requests_are_interchangeable() -> None:
    compiled = pytest.importorskip("tfsfast.codecs._json")
    twin = importlib.import_module("tfsfast.codecs._json_py")
    inputs = {"x": np.array([1.0, 2.0], np.float32)}
    c = compiled.PredictRequest("s", inputs, True)
    t = twin.PredictRequest("s", inputs, True)
    assert c == t and t == c and not (c != t) and not (t != c)
    expected_repr = f"PredictRequest(signature_name='s', inputs={inputs!r}, columnar=True)"
    assert repr(c) == repr(t) == expected_repr
    assert compiled.PredictRequest(signature_name="s", inputs=inputs, columnar=True) == t
    assert c != twin.PredictRequest("s", inputs, False)
    assert c != twin.PredictRequest("t", inputs, True)
    assert c != compiled.PredictRequest("s", {}, True)
    assert c != ("s", inputs, True)
    for request in (c, t):
        with pytest.raises(TypeError, match="unhashable type"):
            hash(request)
        match request:
            case compiled.PredictRequest(name, got, columnar) | twin.PredictRequest(
                    name, got, columnar):
                assert (name, got, columnar) == ("s", inputs, True)
            case _:
                pytest.fail(f"{request!r} did not match")
    # the compiled fields hold what the codecs put there: a str, a dict and a bool
    with pytest.raises(TypeError):
        compiled.PredictRequest(b"s", inputs, True)
    with pytest.raises(TypeError):
        compiled.PredictRequest("s", [("x", inputs["x"])], True)
    assert compiled.PredictRequest("s", inputs, 1).columnar is True


def test_codecs_with_different_limits_keep_their_own(codec) -> None:
    body = b'{"inputs": [[1, 2], [3, 4]]}'
    default = codec.JsonCodec(CodecLimits())
    few = codec.JsonCodec(CodecLimits(max_tensor_elements=3))
    flat = codec.JsonCodec(CodecLimits(max_tensor_rank=1))
    small = codec.JsonCodec(CodecLimits(max_request_elements=3))
    for _ in range(2):  # alternately, so no codec sees another's limits
        assert parse(default, body).inputs["x"].shape == (2, 2)
        assert error(few, body) == (
            "Input: x has 4 elements, which exceeds the maximum of 3 elements per tensor")
        assert error(flat, body) == (
            "Input: x has rank 2, which exceeds the maximum tensor rank of 1")
        assert error(small, body) == (
            "Request has more than 3 tensor elements, the maximum per request")
    assert parse(codec, body).inputs["x"].shape == (2, 2)  # the module's: the default limits


def test_format_with_output_dtypes_changed_in_place(codec) -> None:
    out = {"y": np.array([1, 2], np.int64)}
    declared = {"y": INT64}
    assert codec.format_predict_response(out, True, declared) == b'{"outputs": [1, 2]}'
    declared["y"] = DOUBLE
    assert codec.format_predict_response(out, True, declared) == b'{"outputs": [1.0, 2.0]}'
    declared["y"] = HALF
    with pytest.raises(ServingError) as info:
        codec.format_predict_response(out, True, declared)
    assert info.value.message == "Failed to write JSON value for tensor type: half"
