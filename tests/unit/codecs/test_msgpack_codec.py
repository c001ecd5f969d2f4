"""The REST predict msgpack codec (README "msgpack"), compiled and Python twin alike, and the
compiled one against the twin on random tensors and bodies."""

from __future__ import annotations

import importlib
import math
import warnings

import ml_dtypes
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.codecs._msgpack", "tfsfast.codecs._msgpack_py")
IMPL_NAMES = [p.values[0] for p in IMPLS if p.values[0] is not None]
twin = importlib.import_module("tfsfast.codecs._msgpack_py")

FLOAT, DOUBLE, INT32, INT64 = (DataType.DT_FLOAT, DataType.DT_DOUBLE, DataType.DT_INT32,
                               DataType.DT_INT64)
INT8, UINT8, UINT64, BOOL = (DataType.DT_INT8, DataType.DT_UINT8, DataType.DT_UINT64,
                             DataType.DT_BOOL)
STRING, HALF, BFLOAT16 = DataType.DT_STRING, DataType.DT_HALF, DataType.DT_BFLOAT16
COMPLEX64 = DataType.DT_COMPLEX64
WIRE = {name: dt for name, dt in twin.DTYPE_NAMES.items()}


@pytest.fixture(params=IMPLS)
def codec(request):
    return import_impl(request.param)


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def tmap(a: np.ndarray, dtype: str | None = None) -> dict:
    if a.dtype == object:
        return {"dtype": "string", "shape": list(a.shape), "data": list(a.ravel())}
    return {"dtype": dtype or a.dtype.name, "shape": list(a.shape), "data": a.tobytes()}


def parse(codec, obj_or_body, dtypes=None):
    body = obj_or_body if isinstance(obj_or_body, bytes) else pack(obj_or_body)
    dtypes = {"x": FLOAT} if dtypes is None else dtypes
    return codec.parse_predict_request(body, lambda name: dtypes)


def error(codec, obj_or_body, dtypes=None, code=Code.INVALID_ARGUMENT) -> str:
    with pytest.raises(ServingError) as info:
        parse(codec, obj_or_body, dtypes)
    assert info.value.code == code, info.value
    return info.value.message


# ---------------------------------------------------------------------------------------------
# Tensor maps


@pytest.mark.parametrize("name", [n for n in WIRE if n != "string"])
def test_tensor_maps_of_every_numeric_dtype(codec, name) -> None:
    np_dtype = np.dtype(to_numpy(WIRE[name]))
    a = (np.arange(12) % 2).astype(np_dtype).reshape(3, 4)
    got = parse(codec, {"inputs": tmap(a, name)}, {"x": WIRE[name]})
    assert got.columnar is True
    assert got.inputs["x"].dtype == np_dtype
    assert got.inputs["x"].shape == (3, 4)
    assert got.inputs["x"].tobytes() == a.tobytes()


def test_tensor_maps_are_views_over_the_body(codec) -> None:
    a = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 100)
    body = pack({"instances": tmap(a)})
    got = parse(codec, body).inputs["x"]
    np.testing.assert_array_equal(got, a)
    assert not got.flags.writeable  # read-only: it is the request's bytes
    assert np.shares_memory(got, np.frombuffer(body, np.uint8))


def test_string_tensor_maps(codec) -> None:
    body = {"inputs": {"dtype": "string", "shape": [2, 2],
                       "data": [b"a\x00", "é", b"", b"\xff"]}}
    got = parse(codec, body, {"x": STRING}).inputs["x"]
    assert got.dtype == object and got.tolist() == [[b"a\x00", "é".encode()], [b"", b"\xff"]]


def test_named_tensor_maps_and_signature_name(codec) -> None:
    calls = []

    def lookup(name):
        calls.append(name)
        return {"a": INT64, "b": BOOL}

    body = pack({"signature_name": "sig", "inputs": {
        "b": tmap(np.array([True, False])), "a": tmap(np.arange(3)), "extra": [1, 2]}})
    got = codec.parse_predict_request(body, lookup)
    assert calls == ["sig"] and got.signature_name == "sig"
    assert got.inputs["a"].tolist() == [0, 1, 2] and got.inputs["b"].tolist() == [True, False]


def test_instances_tensor_map_is_the_whole_batch(codec) -> None:
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    got = parse(codec, {"instances": tmap(a)})
    assert got.columnar is False
    np.testing.assert_array_equal(got.inputs["x"], a)
    named = parse(codec, {"instances": {"x": tmap(a), "y": tmap(np.arange(3, dtype=np.int8))}},
                  {"x": FLOAT, "y": INT8})
    assert named.inputs["y"].tolist() == [0, 1, 2]


TENSOR_MAP_ERRORS = [
    ({"inputs": {"dtype": "int32", "shape": [1], "data": b"\0" * 4}},
     "Input: x has dtype int32 but the signature expects float32"),
    ({"inputs": {"dtype": "float", "shape": [1], "data": b"\0" * 4}},
     "Input: x has unknown tensor dtype 'float'; expected one of float16, bfloat16, float32, "
     "float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool, complex64, "
     "complex128, string"),
    ({"inputs": {"dtype": "float32", "shape": [3], "data": b"\0" * 8}},
     "Input: x: tensor data has 8 bytes, shape [3] of float32 needs 12"),
    ({"inputs": {"dtype": "float32", "shape": [2, -5], "data": b""}},
     "Input: x has a negative dimension in shape [2,-5]"),
    ({"inputs": {"dtype": "float32", "shape": [1] * 33, "data": b"\0" * 4}},
     "Input: x has rank 33, which exceeds the maximum tensor rank of 32"),
    ({"inputs": {"dtype": "float32", "shape": [2**32, 2**32, 2**32], "data": b""}},
     "Input: x has shape [4294967296,4294967296,4294967296], more than 268435456 elements, "
     "the maximum per tensor"),
    ({"inputs": {"dtype": "float32", "shape": [2**4, 2**60 + 2], "data": b""}},
     "Input: x has shape [16,1152921504606846978], more than 268435456 elements, the maximum "
     "per tensor"),
    ({"inputs": {"dtype": "float32", "shape": "3", "data": b""}},
     "Input: x: tensor shape must be an array of integers"),
    ({"inputs": {"dtype": "float32", "shape": [1], "data": [1.0]}},
     "Input: x: tensor data must be bin, found array"),
    ({"instances": {"dtype": "float32", "shape": [], "data": b"\0" * 4}},
     "Input: x has no batch dimension (instances need one)"),
    ({"instances": {"dtype": "float32", "shape": [0, 2], "data": b""}},
     "No values in 'instances'"),
]


@pytest.mark.parametrize(("obj", "message"), TENSOR_MAP_ERRORS)
def test_tensor_map_errors(codec, obj, message) -> None:
    assert error(codec, obj) == message


def test_bool_data_must_be_zero_or_one(codec) -> None:
    body = {"inputs": {"dtype": "bool", "shape": [2], "data": b"\x01\x02"}}
    assert error(codec, body, {"x": BOOL}) == "Input: x: bool tensor data must hold bytes 0 or 1"


def test_string_tensor_map_errors(codec) -> None:
    assert error(codec, {"inputs": {"dtype": "string", "shape": [2], "data": [b"a"]}},
                 {"x": STRING}) == "Input: x: string tensor data has 1 values, shape [2] needs 2"
    assert error(codec, {"inputs": {"dtype": "string", "shape": [1], "data": [1]}},
                 {"x": STRING}) == (
        "Input: x: string tensor data must be an array of bin or str, found int")


def test_request_element_limit(codec) -> None:
    few = codec.MsgpackCodec(CodecLimits(max_request_elements=5))
    body = {"inputs": {"a": tmap(np.zeros(3, np.float32)), "b": tmap(np.zeros(3, np.float32))}}
    assert error(few, body, {"a": FLOAT, "b": FLOAT}) == (
        "Request has more than 5 tensor elements, the maximum per request")
    small = codec.MsgpackCodec(CodecLimits(max_request_elements=5, max_tensor_elements=2))
    assert error(small, {"inputs": tmap(np.zeros(3, np.float32))}) == (
        "Input: x has shape [3], more than 2 elements, the maximum per tensor")
    assert parse(codec, body, {"a": FLOAT, "b": FLOAT}).inputs["a"].size == 3  # the module's


# ---------------------------------------------------------------------------------------------
# Plain values (JSON's rules)


def test_plain_rows_and_columns(codec) -> None:
    got = parse(codec, {"instances": [[1, 2.5], [3, 4]]})
    assert got.columnar is False and got.inputs["x"].dtype == np.float32
    assert got.inputs["x"].tolist() == [[1.0, 2.5], [3.0, 4.0]]
    got = parse(codec, {"inputs": [[True], [False]]}, {"x": BOOL})
    assert got.inputs["x"].tolist() == [[True], [False]]
    got = parse(codec, {"inputs": ["é", b"\xff"]}, {"x": STRING})
    assert got.inputs["x"].tolist() == ["é".encode(), b"\xff"]
    got = parse(codec, {"inputs": 7}, {"x": UINT64})
    assert got.inputs["x"].shape == () and got.inputs["x"].item() == 7
    got = parse(codec, {"inputs": [[], []]}, {"x": HALF})
    assert got.inputs["x"].dtype == np.float16 and got.inputs["x"].shape == (2, 0)
    got = parse(codec, {"inputs": [1.5]}, {"x": BFLOAT16})
    assert got.inputs["x"].dtype == ml_dtypes.bfloat16


def test_rows_of_maps_stack_per_input(codec) -> None:
    body = {"instances": [{"a": [1, 2], "b": tmap(np.array([0.5], np.float32))},
                          {"b": [1.5], "a": [3, 4]}]}
    got = parse(codec, body, {"a": INT32, "b": FLOAT})
    assert got.inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert got.inputs["b"].tolist() == [[0.5], [1.5]]


PLAIN_ERRORS = [
    ({"instances": []}, {"x": FLOAT}, "No values in 'instances' array"),
    ({"instances": 1}, {"x": FLOAT},
     "Expecting 'instances' to be an array, a tensor map or a map of named tensors, got int"),
    ({"instances": [1, 2]}, {"a": FLOAT, "b": FLOAT},
     "instances is a plain list, but expecting list of maps as multiple input tensors required "
     "as per the signature"),
    ({"instances": [[1], {"x": 1}]}, {"x": FLOAT},
     "Expecting value/list but got map at item 1 of input list"),
    ({"instances": [{"x": 1}, {"y": 2}]}, {"x": FLOAT},
     "Failed to process element: 1 of 'instances' list. Keys must be equal to: x"),
    ({"instances": [{"x": [1, 2]}, {"x": [1]}]}, {"x": FLOAT},
     "Failed to process element: 1 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting shape [2] but got: [1]"),
    ({"inputs": [[1, 2], [3]]}, {"x": FLOAT},
     "Input: x is ragged: found a list of 1 at level 1 where 2 were expected"),
    ({"inputs": [1, [2]]}, {"x": FLOAT},
     "Input: x is ragged: found a list at level 1 where values were expected"),
    ({"inputs": [[1], 2]}, {"x": FLOAT},
     "Input: x is ragged: found int at level 1 where a list of 1 was expected"),
    ({"inputs": ["a"]}, {"x": FLOAT}, "Input: x: msgpack str is not of expected type: float32"),
    ({"inputs": [None]}, {"x": INT64}, "Input: x: msgpack nil is not of expected type: int64"),
    ({"inputs": [1.0]}, {"x": INT32}, "Input: x: msgpack float is not of expected type: int32"),
    ({"inputs": [300]}, {"x": INT8}, "Input: x: value 300 is out of range for int8"),
    ({"inputs": [-1]}, {"x": UINT8}, "Input: x: value -1 is out of range for uint8"),
    ({"inputs": [1]}, {"x": BOOL}, "Input: x: msgpack int is not of expected type: bool"),
    ({"inputs": [1]}, {"x": STRING}, "Input: x: msgpack int is not of expected type: string"),
    ({"inputs": [[1.0]]}, {"x": COMPLEX64},
     "Input: x: complex64 tensors must be sent as tensor maps"),
    ({"inputs": {"a": 1}}, {"a": FLOAT, "b": FLOAT}, "Missing named input: b in 'inputs' map."),
    ({"inputs": [1]}, {"a": FLOAT, "b": FLOAT},
     "inputs is a single tensor, but expecting a map as multiple input tensors required as per "
     "the signature"),
    ({"signature_name": 1, "inputs": 1}, {"x": FLOAT}, "'signature_name' must be a string"),
    ({"inputs": 1, "instances": [1]}, {"x": FLOAT},
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    ({"signature_name": "s"}, {"x": FLOAT}, "Missing 'inputs' or 'instances' key"),
    ({"inputs": 1}, {}, "Failed to get input map for signature: DEFAULT"),
]


@pytest.mark.parametrize(("obj", "dtypes", "message"), PLAIN_ERRORS)
def test_plain_value_errors(codec, obj, dtypes, message) -> None:
    assert error(codec, obj, dtypes) == message


def test_plain_value_of_a_dtype_without_msgpack_values_is_unimplemented(codec) -> None:
    assert error(codec, {"inputs": [1]}, {"x": DataType.DT_QINT8}, Code.UNIMPLEMENTED) == (
        "Input: x: conversion of a msgpack value to type: qint8 is not supported")


# ---------------------------------------------------------------------------------------------
# Hostile bodies: a clear INVALID_ARGUMENT, never a crash


HOSTILE = [
    (b"", "msgpack parse error: the body is empty"),
    (pack({"inputs": [1.0, 2.0]})[:-3], "msgpack parse error: the body is truncated (24 bytes)"),
    (b"\x81\xa6inputs" + b"\x91" * 100_000 + b"\x01",
     "msgpack nesting depth exceeds the maximum of 100"),
    (b"\x81\xa6inputs" + b"\x81\xa1a" * 200 + b"\x01",
     "msgpack nesting depth exceeds the maximum of 100"),
    (b"\x81\xa6inputs\xdd\x3b\x9a\xca\x00\x01",  # an array claiming 10^9 elements
     "msgpack parse error: 1000000000 exceeds max_array_len(14)"),
    (b"\x81\xa6inputs\xc6\xff\xff\xff\xff",  # a bin claiming 4 GiB
     "msgpack parse error: the body is truncated (13 bytes)"),
    (b"\x81\xa6inputs\xa2\xff\xfe", "msgpack parse error: a str is not valid UTF-8"),
    (b"\x81\xa6inputs\xc1", "msgpack parse error: invalid type byte 0xc1"),
    (pack({"inputs": 1}) + b"\x00", "msgpack parse error: 1 bytes after the top-level map"),
    (b"\x82\xa6inputs\x01\xa6inputs\x02", "Duplicate key in msgpack map: 'inputs'"),
    (b"\x81\x01\x02", "msgpack map keys must be strings, found int"),
    # Maps inside arrays (decoded by msgpack, not walked) follow the same key rules.
    (pack({"instances": [{1: [1.0]}]}), "msgpack map keys must be strings, found int"),
    (pack({"instances": [{None: [1.0]}]}), "msgpack map keys must be strings, found nil"),
    (b"\x81\xa9instances\x91\x81\x91\x01\x01", "msgpack map keys must be strings, found array"),
    (b"\x81\xa9instances\x91\x81\x80\x01", "msgpack map keys must be strings, found map"),
    (b"\x81\xa9instances\x91\x82\xa1x\x91\x01\xa1x\x91\x02",
     "Duplicate key in msgpack map: 'x'"),
    (pack({"inputs": [msgpack.ExtType(5, b"ab")]}),
     "Input: x: msgpack ext is not of expected type: float32"),
    (pack({"inputs": [msgpack.Timestamp(1)]}),
     "Input: x: msgpack ext is not of expected type: float32"),
    (b"\x81\xa6inputs\x91\xd5\xff\x00\x00",
     "msgpack parse error: invalid timestamp data (length 2)"),
    (pack([1, 2]), "msgpack body must be a map with an 'instances' or 'inputs' key, got array"),
    (pack(tmap(np.zeros(1, np.float32))),
     "msgpack body must be a map with an 'instances' or 'inputs' key, got a tensor map"),
]


@pytest.mark.parametrize(("body", "message"), HOSTILE)
def test_hostile_bodies(codec, body, message) -> None:
    assert error(codec, body) == message


def test_depth_at_the_limit_is_accepted(codec) -> None:
    body = b"\x81\xa6inputs" + b"\x91" * 31 + b"\x01"  # map 1 + 31 arrays
    assert parse(codec, body).inputs["x"].shape == (1,) * 31


def test_nesting_limit_is_the_codecs(codec) -> None:
    shallow = codec.MsgpackCodec(CodecLimits(max_msgpack_depth=3))
    assert parse(shallow, {"inputs": [[1]]}).inputs["x"].shape == (1, 1)
    assert error(shallow, {"inputs": [[[1]]]}) == "msgpack nesting depth exceeds the maximum of 3"
    assert twin.read_value(pack([[[1]]]), CodecLimits(max_msgpack_depth=3)) == [[[1]]]
    with pytest.raises(ServingError) as info:
        shallow.read_value(pack([[[[1]]]]))
    assert info.value.message == "msgpack nesting depth exceeds the maximum of 3"


# ---------------------------------------------------------------------------------------------
# Responses


def unpack(body: bytes):
    return msgpack.unpackb(body, raw=False)


def test_single_output_is_a_tensor_map(codec) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = unpack(codec.format_predict_response({"y": a}, False))
    assert got == {"predictions": {"dtype": "float32", "shape": [2, 3], "data": a.tobytes()}}
    got = unpack(codec.format_predict_response({"y": np.array(7, np.int64)}, True))
    assert got == {"outputs": {"dtype": "int64", "shape": [], "data": (7).to_bytes(8, "little")}}


def test_several_outputs_are_a_map_of_tensor_maps_in_row_format_too(codec) -> None:
    outputs = {"b": np.array([[True], [False]]), "a": np.array([1.5, 2.5])}
    for columnar, key in ((False, "predictions"), (True, "outputs")):
        got = unpack(codec.format_predict_response(outputs, columnar))
        assert list(got[key]) == ["a", "b"]
        assert got[key]["a"] == {"dtype": "float64", "shape": [2],
                                 "data": np.array([1.5, 2.5]).tobytes()}
        assert got[key]["b"] == {"dtype": "bool", "shape": [2, 1], "data": b"\x01\x00"}


def test_string_and_declared_outputs(codec) -> None:
    got = unpack(codec.format_predict_response(
        {"s": np.array([b"a", "é"], dtype=object)}, True))
    assert got == {"outputs": {"dtype": "string", "shape": [2], "data": [b"a", "é".encode()]}}
    got = unpack(codec.format_predict_response({"y": np.array([0.1])}, True, {"y": FLOAT}))
    assert got["outputs"]["dtype"] == "float32"
    assert got["outputs"]["data"] == np.array([0.1], np.float32).tobytes()


def test_response_errors(codec) -> None:
    def message(outputs, columnar, dtypes=None):
        with pytest.raises(ServingError) as info:
            codec.format_predict_response(outputs, columnar, dtypes)
        return info.value.message

    assert message({}, True) == "Cannot convert empty tensor map to msgpack"
    assert message({"t": np.array(1)}, False) == "Tensor name: t has no shape information "
    assert message({"a": np.zeros(2), "b": np.zeros(3)}, False) == (
        "Tensor name: b has inconsistent batch size: 3 expecting: 2")
    assert message({"y": np.zeros(1)}, True, {"y": DataType.DT_QINT8}) == (
        "Failed to write msgpack value for tensor type: qint8")


def test_format_error(codec) -> None:
    assert unpack(codec.format_error('bad "key"\n é')) == {"error": 'bad "key"\n é'}


def test_facade_exports_the_implementation() -> None:
    import tfsfast.codecs.msgpack_codec as facade
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(facade)
    expected = {"compiled": "tfsfast.codecs._msgpack",
                "python": "tfsfast.codecs._msgpack_py"}[facade.IMPLEMENTATION]
    impl = importlib.import_module(expected)
    assert facade.MsgpackCodec is impl.MsgpackCodec
    assert facade.format_predict_response is impl.format_predict_response
    # the JSON codec's of the same implementation
    json_impl = importlib.import_module(expected.replace("_msgpack", "_json"))
    assert facade.PredictRequest is impl.PredictRequest is json_impl.PredictRequest


# ---------------------------------------------------------------------------------------------
# Compiled against the twin


def outcome(impl, body: bytes, dtypes) -> tuple:
    calls: list[str] = []

    def lookup(name):
        calls.append(name)
        return dtypes

    try:
        r = impl.parse_predict_request(body, lookup)
    except ServingError as e:
        return ("error", e.code, e.message, calls)
    return ("ok", r.signature_name, r.columnar,
            {k: (v.dtype.str, v.shape, tuple(v.ravel().tolist()) if v.dtype == object
                 else v.tobytes()) for k, v in r.inputs.items()}, calls)


def agree(body: bytes, dtypes) -> tuple:
    expected = outcome(twin, body, dtypes)
    for name in IMPL_NAMES:
        assert outcome(importlib.import_module(name), body, dtypes) == expected, name
    return expected


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
NUMERIC = [n for n in WIRE if n != "string"]


@st.composite
def tensors(draw):
    name = draw(st.sampled_from([*NUMERIC, "string"]))
    shape = draw(shapes)
    if name == "string":
        size = math.prod(shape)
        a = np.empty(size, dtype=object)
        a[:] = draw(st.lists(st.binary(max_size=6), min_size=size, max_size=size))
        return name, a.reshape(shape)
    np_dtype = np.dtype(to_numpy(WIRE[name]))
    raw = draw(st.binary(min_size=math.prod(shape) * np_dtype.itemsize,
                         max_size=math.prod(shape) * np_dtype.itemsize))
    a = np.frombuffer(raw, np_dtype).reshape(shape).copy()
    if name == "bool":
        a = a.view(np.uint8) & 1
        a = a.view(np.bool_)
    return name, a


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans(), st.integers(1, 3))
def test_random_tensors_round_trip_identically(tensor_list, columnar, batch) -> None:
    outputs, dtypes = {}, {}
    for k, (name, a) in enumerate(tensor_list):
        if not columnar:
            a = np.resize(a, (batch, *a.shape[1:])) if a.ndim else np.resize(a, (batch,))
        outputs[f"t{k}"], dtypes[f"t{k}"] = a, WIRE[name]
    bodies = {name: importlib.import_module(name).format_predict_response(outputs, columnar)
              for name in IMPL_NAMES}
    assert len(set(bodies.values())) == 1
    response = unpack(next(iter(bodies.values())))
    value = response["outputs" if columnar else "predictions"]
    request = pack({"inputs" if columnar else "instances": value})
    result = agree(request, dtypes)
    assert result[0] == "ok"
    for name, a in outputs.items():
        got = result[3][name]
        assert got[1] == a.shape
        if a.dtype != object:
            assert got[2] == np.ascontiguousarray(a).tobytes()


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=4), st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["x", "y", "dtype", "shape", "data"]), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["inputs", "instances", "signature_name", "other"]),
                       values, max_size=3),
       st.sampled_from([{"x": FLOAT}, {"x": INT8, "y": STRING}, {"x": BOOL}, {"x": UINT64}]))
def test_random_bodies_agree(doc, dtypes) -> None:
    agree(pack(doc), dtypes)


FUZZ_SEEDS = [
    pack({"instances": tmap(np.arange(6, dtype=np.float32).reshape(3, 2))}),
    pack({"signature_name": "s", "inputs": {
        "x": tmap(np.arange(3, dtype=np.int8)),
        "y": {"dtype": "string", "shape": [1], "data": [b"a"]}}}),
    pack({"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FUZZ_SEEDS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                             min_size=1, max_size=4),
       st.integers(0, 300))
def test_mutated_bodies_agree(seed, edits, cut) -> None:
    body = bytearray(seed)
    for i, byte in edits:
        if i < len(body):
            body[i] = byte
    body = bytes(body[:max(cut, 1)]) if cut < len(body) else bytes(body)
    for dtypes in ({"x": FLOAT}, {"x": INT8, "y": STRING}):
        result = agree(body, dtypes)
        if result[0] == "error":
            assert result[1] in (Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED)


def test_tensor_map_bodies_take_the_compiled_fast_path() -> None:
    compiled = pytest.importorskip("tfsfast.codecs._msgpack")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    cases = [
        (pack({"instances": tmap(a)}), {"x": FLOAT}),
        (pack({"inputs": tmap(a), "signature_name": "s"}), {"x": FLOAT}),
        (pack({"inputs": {"b": tmap(np.array([True])), "a": tmap(np.arange(2**17))}}),
         {"a": INT64, "b": BOOL}),
        (pack({"instances": {"x": tmap(a), "y": tmap(np.zeros((3, 300), np.float16))}}),
         {"x": FLOAT, "y": HALF}),
    ]
    for body, dtypes in cases:
        request = compiled._parse_fast(body, lambda _, d=dtypes: d)
        assert request is not None
        assert outcome(compiled, body, dtypes) == outcome(twin, body, dtypes)
    # and the rest goes to the twin, whose request comes back as the compiled codec's type
    assert compiled._parse_fast(pack({"inputs": [1.0]}), lambda _: {"x": FLOAT}) is None
    request = compiled.parse_predict_request(pack({"inputs": [1.0]}), lambda _: {"x": FLOAT})
    assert type(request) is compiled.PredictRequest
    fast = compiled.parse_predict_request(cases[0][0], lambda _: {"x": FLOAT})
    assert type(fast) is compiled.PredictRequest
    assert compiled._parse_fast(pack({"inputs": tmap(a, "int32")}),
                                lambda _: {"x": FLOAT}) is None


def test_numeric_outputs_take_the_compiled_writer_with_every_header_width() -> None:
    compiled = pytest.importorskip("tfsfast.codecs._msgpack")
    cases = [
        ({"y": np.zeros((200,), np.float32)}, True),  # uint8 dimension, bin16 data
        ({"y": np.zeros((1, 70_000), np.uint8)}, False),  # uint32 dimension, bin32 data
        ({"y": np.zeros((2, 3), np.int8)}, False),  # bin8 data
        ({"y": np.zeros((0, 5), np.float64)}, False),  # empty data
        ({"y": np.ones((16,) + (1,) * 15, np.bool_)}, True),  # array16 shape header
        ({f"out{k}": np.full((2,), k, np.int32) for k in range(17)}, False),  # map16
        ({"a_rather_long_output_alias_name_of_40ch": np.zeros(2, ml_dtypes.bfloat16),
          "b": np.zeros(2, np.complex128)}, True),  # str8 key, exotic dtypes
    ]
    for outputs, columnar in cases:
        body = compiled._format_fast(outputs, columnar)
        assert body is not None
        assert body == twin.format_predict_response(outputs, columnar)
