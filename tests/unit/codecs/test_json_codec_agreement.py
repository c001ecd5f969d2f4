"""The compiled JSON codec against its Python twin, the reference: same bytes out, same tensors
in, same errors, on random tensors of every dtype and shape and on random (also broken) bodies.

The compiled codec hands every body it does not fully understand to the twin, so agreement
alone could hide a fast path that never runs; ``_parse_fast`` (the fast path without the
hand-off) shows which bodies it carries, and the tests below pin the common ones to it.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.util.status import Code, ServingError

pytest.importorskip("tfsfast.codecs._json", reason="the compiled JSON codec is not built")
compiled = importlib.import_module("tfsfast.codecs._json")
twin = importlib.import_module("tfsfast.codecs._json_py")

FLOAT, DOUBLE, INT32, INT64 = (DataType.DT_FLOAT, DataType.DT_DOUBLE, DataType.DT_INT32,
                               DataType.DT_INT64)
INT8, INT16, UINT8, UINT16 = (DataType.DT_INT8, DataType.DT_INT16, DataType.DT_UINT8,
                              DataType.DT_UINT16)
UINT32, UINT64, BOOL, STRING = (DataType.DT_UINT32, DataType.DT_UINT64, DataType.DT_BOOL,
                                DataType.DT_STRING)
HALF, BFLOAT16 = DataType.DT_HALF, DataType.DT_BFLOAT16
JSON_DTYPES = [FLOAT, DOUBLE, INT8, INT16, INT32, INT64, UINT8, UINT32, UINT64, BOOL, STRING]
SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------
# Outcomes, compared exactly


def canon(a: np.ndarray) -> tuple:
    """An array as comparable data: dtype, shape and the exact bytes (NaN bit patterns too)."""
    if a.dtype == object:
        return ("object", a.shape, tuple(a.ravel().tolist()))
    return (a.dtype.str, a.shape, a.tobytes())


def parse_outcome(impl, body: bytes, dtypes) -> tuple:
    calls: list[str] = []

    def lookup(name: str):
        calls.append(name)
        return dtypes

    try:
        request = impl.parse_predict_request(body, lookup)
    except ServingError as e:
        return ("error", e.code, e.message, calls)
    # Each codec's own type, also for the bodies the compiled one hands over to the twin.
    own = compiled if impl is compiled or isinstance(impl, compiled.JsonCodec) else twin
    assert type(request) is own.PredictRequest
    return ("ok", request.signature_name, request.columnar,
            {k: canon(v) for k, v in request.inputs.items()}, calls)


def format_outcome(impl, outputs, columnar, output_dtypes=None) -> tuple:
    try:
        with np.errstate(invalid="ignore"):  # the twin casts signalling NaNs
            return ("ok", impl.format_predict_response(outputs, columnar, output_dtypes))
    except ServingError as e:
        return ("error", e.code, e.message)


def assert_parse_agrees(body: bytes, dtypes) -> tuple:
    expected = parse_outcome(twin, body, dtypes)
    assert parse_outcome(compiled, body, dtypes) == expected
    return expected


# ---------------------------------------------------------------------------------------------
# Random tensors of every dtype and shape


def float_elements(width: int):
    return st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True)


def int_elements(np_dtype):
    info = np.iinfo(np_dtype)
    return st.integers(int(info.min), int(info.max))


def byte_strings():
    return st.binary(max_size=12) | st.sampled_from(
        [b"", b'"', b"\\", b"\x00\x1f\x7f", "é日本😀".encode(), b"\xff\xfe", b"\xed\xa0\x80"])


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def tensors(draw, dtype=None):
    dtype = draw(st.sampled_from(JSON_DTYPES)) if dtype is None else dtype
    shape = draw(shapes)
    if dtype == STRING:
        size = math.prod(shape)
        values = draw(st.lists(byte_strings(), min_size=size, max_size=size))
        a = np.empty(size, dtype=object)
        a[:] = values
        return dtype, a.reshape(shape)
    np_dtype = to_numpy(dtype)
    if dtype in (FLOAT, DOUBLE):
        elements = float_elements(32 if dtype == FLOAT else 64)
    elif dtype == BOOL:
        elements = st.booleans()
    else:
        elements = int_elements(np_dtype)
    return dtype, draw(hnp.arrays(np_dtype, shape, elements=elements))


def request_from(response: bytes, columnar: bool) -> bytes:
    old, new = (b'{"outputs"', b'{"inputs"') if columnar else (b'{"predictions"', b'{"instances"')
    assert response.startswith(old)
    return new + response[len(old):]


@SLOW
@given(tensors(), st.booleans(), st.sampled_from(["t", "t_bytes"]))
def test_one_tensor_round_trips_identically(tensor, columnar, alias) -> None:
    dtype, a = tensor
    out = format_outcome(twin, {alias: a}, columnar)
    assert format_outcome(compiled, {alias: a}, columnar) == out
    if out[0] == "ok":
        assert_parse_agrees(request_from(out[1], columnar), {alias: dtype})


@SLOW
@given(st.lists(tensors(), min_size=2, max_size=3), st.booleans(), st.integers(0, 3))
def test_several_tensors_round_trip_identically(tensor_list, columnar, batch) -> None:
    outputs, dtypes = {}, {}
    for k, (dtype, a) in enumerate(tensor_list):
        if not columnar:  # row format needs a shared first dimension
            a = np.resize(a, (batch, *a.shape[1:])) if a.ndim else np.resize(a, (batch,))
        outputs[f"out{k}"], dtypes[f"out{k}"] = a, dtype
    out = format_outcome(twin, outputs, columnar)
    assert format_outcome(compiled, outputs, columnar) == out
    if out[0] == "ok":
        assert_parse_agrees(request_from(out[1], columnar), dtypes)


@SLOW
@given(st.sampled_from([HALF, BFLOAT16, UINT16, DataType.DT_COMPLEX64, FLOAT, INT8, BOOL, STRING]),
       tensors(), st.booleans())
def test_declared_output_dtypes_agree(declared, tensor, columnar) -> None:
    # a declared dtype the array does not have: both cast, or both refuse, identically
    _, a = tensor
    # (numbers declared as strings would be bytes(n): n zero bytes, which is no test of a codec)
    assume(declared != STRING or a.dtype == object)
    try:
        expected = format_outcome(twin, {"y": a}, columnar, {"y": declared})
    except (TypeError, ValueError) as e:  # e.g. strings to numbers
        with pytest.raises(type(e)):
            compiled.format_predict_response({"y": a}, columnar, {"y": declared})
        return
    assert format_outcome(compiled, {"y": a}, columnar, {"y": declared}) == expected


def test_special_floats_and_empty_dimensions() -> None:
    values = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-45, 3.4028235e38,
              1e308, 16777217.0, 0.1, 1 / 3]
    for np_dtype, dtype in ((np.float32, FLOAT), (np.float64, DOUBLE)):
        with np.errstate(over="ignore"):
            a = np.array(values, np_dtype)
        for columnar in (False, True):
            out = format_outcome(twin, {"y": a}, columnar)
            assert format_outcome(compiled, {"y": a}, columnar) == out
            assert_parse_agrees(request_from(out[1], columnar), {"y": dtype})
    for shape in [(0,), (2, 0), (0, 3), (2, 0, 3), (1, 1, 0)]:
        for dtype in JSON_DTYPES:
            a = np.zeros(shape, to_numpy(dtype))
            for columnar in (False, True):
                out = format_outcome(twin, {"y": a}, columnar)
                assert format_outcome(compiled, {"y": a}, columnar) == out
                if out[0] == "ok":
                    assert_parse_agrees(request_from(out[1], columnar), {"y": dtype})


# ---------------------------------------------------------------------------------------------
# Float text, in bulk: every branch of the compiled float writer against the twin's printf rule


def float_text(impl, a: np.ndarray) -> list[bytes]:
    with np.errstate(invalid="ignore"):  # signalling NaN bit patterns
        body = impl.format_predict_response({"y": a.ravel()}, True)
    return body[len(b'{"outputs": ['):-2].split(b", ")


def neighbours_of_powers_of_ten(np_dtype, int_dtype, ulps: int) -> np.ndarray:
    centers = np.array([m * 10.0**k for k in range(-46, 40) for m in (1, 2, 5, 9.99999)],
                       np.float64)
    with np.errstate(over="ignore"):
        centers = centers.astype(np_dtype)
    bits = centers.view(int_dtype)[:, None] + np.arange(-ulps, ulps + 1, dtype=int_dtype)
    return bits.ravel().view(np_dtype)


def test_float32_text_agrees_in_bulk() -> None:
    rng = np.random.default_rng(20240611)
    samples = [
        rng.integers(0, 2**32, 60_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        rng.standard_normal(20_000).astype(np.float32),
        (rng.integers(-10**6, 10**6, 20_000) / 10.0 ** rng.integers(0, 12, 20_000)).astype(
            np.float32),
        neighbours_of_powers_of_ten(np.float32, np.int32, 40),
        np.arange(0, 2**20, 7, dtype=np.uint32).view(np.float32),  # subnormals
    ]
    a = np.concatenate(samples)
    assert float_text(compiled, a) == float_text(twin, a)


def test_float64_text_agrees_in_bulk() -> None:
    rng = np.random.default_rng(20240612)
    samples = [
        rng.integers(0, 2**63, 40_000, dtype=np.int64).view(np.float64),
        -rng.integers(0, 2**63, 20_000, dtype=np.int64).view(np.float64),
        rng.standard_normal(20_000),
        rng.integers(-10**9, 10**9, 20_000) / 10.0 ** rng.integers(0, 18, 20_000),
        neighbours_of_powers_of_ten(np.float64, np.int64, 20),
    ]
    a = np.concatenate(samples)
    assert float_text(compiled, a) == float_text(twin, a)


def test_integer_text_agrees_in_bulk() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**63, 50_000, dtype=np.int64) >> rng.integers(0, 63, 50_000)
    signed = bits * rng.choice([-1, 1], 50_000)
    edges = np.array([0, 1, -1, 9, 10, 99, 100, 10**8 - 1, 10**8, 10**16 - 1, 10**16,
                      2**63 - 1, -2**63], np.int64)
    for a in (np.concatenate([signed, edges]), bits.astype(np.uint64) * 2 + 1,
              np.array([0, 2**64 - 1, 10**19, 10**19 - 1], np.uint64)):
        assert float_text(compiled, a) == float_text(twin, a)


# ---------------------------------------------------------------------------------------------
# Number tokens read identically


number_tokens = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.9g}"),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.17e}"),
    st.builds(lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
              st.sampled_from(["", "-"]),
              st.sampled_from(["0", "1", "12", "9007199254740993", "1" * 25]),
              st.sampled_from(["", ".5", ".000001", ".1234567890123456789", "." + "0" * 30 + "1"]),
              st.sampled_from(["", "e0", "E+5", "e-7", "e22", "e23", "e-22", "e-23", "e99",
                               "e-320", "e-400"])),
    st.sampled_from(["NaN", "-NaN", "Infinity", "-Infinity", "Inf", "-Inf", "-0", "-0.0", "0e5",
                     "1e400", "01", "1.", ".5", "+1", "1e", "2.e3", "-", "Infinit"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(number_tokens, min_size=1, max_size=6),
       st.sampled_from([FLOAT, DOUBLE, INT8, INT32, INT64, UINT32, UINT64, BOOL, STRING]))
def test_number_tokens_read_identically(tokens, dtype) -> None:
    body = ('{"inputs": [' + ", ".join(tokens) + "]}").encode()
    assert_parse_agrees(body, {"x": dtype})


# ---------------------------------------------------------------------------------------------
# Random bodies (well-formed or not)


json_strings = st.text(max_size=8) | st.sampled_from(
    ["", "b64", "\\", '"', "\x00", "é", "😀", "\ud800", "inputs", "instances"])
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65),
    st.floats(allow_nan=True, allow_infinity=True), json_strings,
    st.builds(lambda s: {"b64": s}, st.sampled_from(["aGk=", "aGVsbG8", "", "@@", "aGk=aGk="])))


def dense(leaf, depth: int):
    return st.recursive(leaf, lambda inner: st.lists(inner, min_size=0, max_size=3),
                        max_leaves=12) if depth else leaf


@st.composite
def bodies(draw) -> tuple[bytes, dict]:
    names = draw(st.lists(st.sampled_from(["x", "y", "b64", "z_bytes"]), min_size=1,
                          max_size=3, unique=True))
    dtypes = {n: draw(st.sampled_from([*JSON_DTYPES, HALF])) for n in names}
    value = dense(leaves, 1)
    if draw(st.booleans()):
        if draw(st.booleans()):
            rows = draw(st.lists(st.dictionaries(st.sampled_from([*names, "w"]), value,
                                                 max_size=3), min_size=0, max_size=3))
        else:
            rows = draw(st.lists(value, min_size=0, max_size=4))
        doc: dict = {"instances": rows}
    elif draw(st.booleans()):
        doc = {"inputs": draw(st.dictionaries(st.sampled_from([*names, "w"]), value,
                                              max_size=3))}
    else:
        doc = {"inputs": draw(value)}
    if draw(st.booleans()):
        doc["signature_name"] = draw(st.sampled_from(["", "serving_default", "s", 1]))
    if draw(st.booleans()):
        doc["other"] = draw(value)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True,
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "),
                                                       (" ,\n", " :\t")])))
    return text.encode("utf-8", "surrogatepass"), dtypes


@SLOW
@given(bodies())
def test_random_bodies_agree(body_and_dtypes) -> None:
    body, dtypes = body_and_dtypes
    assert_parse_agrees(body, dtypes)


FUZZ_SEEDS = [
    b'{"instances": [[1, 2.5, -3e2], [4, 5, 6]], "signature_name": "s"}',
    b'{"inputs": {"x": ["x\\u00e9\\"", {"b64": "aGk="}], "y": [true, false, null]}}',
    b'{"instances": [{"x": 1.0e-5, "y": "\\ud83d\\ude00"}, {"x": 0, "y": "q\\\\"}]}',
    b'{"inputs": [NaN, Infinity, -Inf, 0.5, 12345678901234567890, 1e308]}',
    b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}',
    b'{"inputs": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}',
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


@settings(max_examples=300, deadline=None)
@given(mutated_bodies(), st.sampled_from([{"x": FLOAT}, {"x": STRING, "y": STRING},
                                          {"x": INT64, "y": BOOL}, {"x": DOUBLE, "y": INT8}]))
def test_mutated_bodies_agree(body, dtypes) -> None:
    assert_parse_agrees(body, dtypes)


# ---------------------------------------------------------------------------------------------
# The fast path carries the common bodies (else agreement would be the twin agreeing with itself)


def fast(body: bytes, dtypes) -> object:
    return compiled._parse_fast(body, lambda name: dtypes)


@pytest.mark.parametrize(("body", "dtypes"), [
    (b'{"instances": [[1.5, -2.25e-3, 3], [4, 5, 6.0]]}', {"x": FLOAT}),
    (b'{"instances": [1, 2, 3]}', {"x": INT64}),
    (b'{"signature_name": "serving_default", "inputs": [[1, 2], [3, 4]]}', {"x": INT32}),
    (b'{"inputs": [[1, 2], [3, 4]], "signature_name": "other"}', {"x": INT8}),
    (b'{"inputs": {"a": [1.0, NaN, Infinity, -Infinity], "b": [true, false], "extra": [1]}}',
     {"a": DOUBLE, "b": BOOL}),
    (b'{"instances": [{"a": [1, 2], "b": "s"}, {"b": "t", "a": [3, 4]}]}',
     {"a": UINT8, "b": STRING}),
    (b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', {"x": STRING}),
    (b'{"inputs": {"b64": "aGVsbG8="}}', {"x": STRING}),
    (b'{"inputs": ["a\\"b\\\\c\\n\\u00e9\\ud83d\\ude00", "\xc3\xa9\xe6\x97\xa5"]}', {"x": STRING}),
    (b'{"inputs": [[], []]}', {"x": FLOAT}),
    (b'{"inputs": 7}', {"x": UINT64}),
    (b' \n{ "inputs" : [ 1 , 2 ] , "meta": {"k": [null, {"z": []}]} } \n', {"x": FLOAT}),
    (b'{"inputs": [18446744073709551615, 0]}', {"x": UINT64}),
    (b'{"inputs": [-9223372036854775808, 9223372036854775807]}', {"x": INT64}),
    (b'{"inputs": [0.1, 123456789012345678901234567890, 1e-320, 2.5e+30]}', {"x": DOUBLE}),
])
def test_common_bodies_take_the_fast_path(body, dtypes) -> None:
    request = fast(body, dtypes)
    assert request is not None
    expected = parse_outcome(twin, body, dtypes)
    assert expected[0] == "ok"
    assert ({k: canon(v) for k, v in request.inputs.items()}, request.columnar) == (
        expected[3], expected[2])


@pytest.mark.parametrize("body", [
    b'{"inputs": [1, 2',  # syntax
    b'{"inputs": [[1, 2], [3]]}',  # ragged
    b'{"inputs": ["a"]}',  # type
    b'{"inputs": [1]} x',  # bytes after the value
    b'{"inputs": [1], "inputs": [2]}',  # duplicate key
    b'{"inp\\u0075ts": [1]}',  # escaped key
    b'{"inputs": [Inf.5]}',  # rapidjson quirk
    b'{"inputs": ["\\udc00"]}',  # lone surrogate
    b'{"inputs": [1e400]}',  # too big for rapidjson
    b'\xef\xbb\xbf{"inputs": [1]}',  # BOM
])
def test_unusual_bodies_leave_the_fast_path(body) -> None:
    assert fast(body, {"x": FLOAT}) is None
    assert_parse_agrees(body, {"x": FLOAT})


def test_large_tensors_take_the_fast_path() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 50)).astype(np.float32)
    body = b'{"instances": ' + json.dumps(a.tolist()).encode() + b"}"
    request = fast(body, {"x": FLOAT})
    assert request is not None
    np.testing.assert_array_equal(request.inputs["x"], a)
    # large numeric tensors are 64-byte aligned so TensorFlow can borrow them
    assert request.inputs["x"].ctypes.data % 64 == 0


# ---------------------------------------------------------------------------------------------
# Limits, lookups and threads


def test_a_codecs_limits_bound_its_fast_path_and_the_twin_it_hands_over_to() -> None:
    codec = compiled.JsonCodec(CodecLimits(max_tensor_elements=4))
    assert codec._parse_fast(b'{"inputs": [[1,2],[3,4]]}',
                             lambda _: {"x": FLOAT}).inputs["x"].size == 4
    over = b'{"inputs": [[1,2],[3,4],[5,6]]}'
    assert codec._parse_fast(over, lambda _: {"x": FLOAT}) is None  # the twin's to refuse
    with pytest.raises(ServingError) as info:
        codec.parse_predict_request(over, lambda _: {"x": FLOAT})
    assert info.value.message == (
        "Input: x has 6 elements, which exceeds the maximum of 4 elements per tensor")
    assert compiled.parse_predict_request(over, lambda _: {"x": FLOAT}).inputs["x"].size == 6
    shallow = compiled.JsonCodec(CodecLimits(max_json_depth=2))
    with pytest.raises(ServingError) as info:
        shallow.parse_predict_request(b'{"inputs": [[1]]}', lambda _: {"x": FLOAT})
    assert info.value.message == "JSON nesting depth exceeds the maximum of 2"


LIMITS = [CodecLimits(), CodecLimits(max_json_depth=2), CodecLimits(max_tensor_rank=1),
          CodecLimits(max_tensor_rank=0), CodecLimits(max_tensor_elements=3),
          CodecLimits(max_request_elements=5), CodecLimits(max_int_digits=2),
          CodecLimits(max_tensor_elements=0, max_request_elements=0),
          CodecLimits(max_tensor_elements=2**70, max_request_elements=2**70)]


@pytest.mark.parametrize("limits", LIMITS, ids=repr)
@pytest.mark.parametrize(("body", "dtypes"), [
    (b'{"inputs": [[1, 2], [3, 4]]}', {"x": FLOAT}),
    (b'{"instances": [[1, 2], [3, 4], [5, 6]]}', {"x": INT64}),
    (b'{"inputs": {"a": [1, 2, 3], "b": [[4], [5], [6]]}}', {"a": INT32, "b": DOUBLE}),
    (b'{"instances": [{"a": 1, "b": [2, 3]}]}', {"a": INT64, "b": INT64}),
    (b'{"inputs": [123, 4567]}', {"x": INT64}),
    (b'{"inputs": 7}', {"x": FLOAT}),
])
def test_compiled_and_twin_codecs_agree_under_the_same_limits(limits, body, dtypes) -> None:
    expected = parse_outcome(twin.JsonCodec(limits), body, dtypes)
    assert parse_outcome(compiled.JsonCodec(limits), body, dtypes) == expected


@pytest.mark.parametrize("body", [
    b'{"inputs": [[1, 2], [3]]}',  # the fast path looks the signature up, then hands over
    b'{"inputs": [1, 2]}',
])
def test_signature_is_looked_up_once_even_when_the_twin_takes_over(body) -> None:
    calls = []

    def lookup(name):
        calls.append(name)
        return {"x": FLOAT}

    try:
        compiled.parse_predict_request(body, lookup)
    except ServingError:
        pass
    assert calls == ["serving_default"]


def test_lookup_errors_propagate_unchanged() -> None:
    def lookup(name):
        raise ServingError(Code.NOT_FOUND, f"no {name}")

    for impl in (compiled, twin):
        with pytest.raises(ServingError) as info:
            impl.parse_predict_request(b'{"signature_name": "q", "inputs": [1]}', lookup)
        assert (info.value.code, info.value.message) == (Code.NOT_FOUND, "no q")


def test_deep_and_huge_bodies_agree_without_crashing() -> None:
    for body in [b'{"instances": ' + b"[" * 100_000, b'{"inputs": ' + b"[" * 50_000 + b"1"
                 + b"]" * 50_000 + b"}", b'{"inputs": [' + b"1," * 200_000 + b"1]}",
                 b'{"inputs": [' + b"9" * 100_000 + b"]}"]:
        assert_parse_agrees(body, {"x": FLOAT})


def test_concurrent_calls_are_independent() -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((64, 33)).astype(np.float32) for _ in range(4)]
    bodies = [compiled.format_predict_response({"x": a}, False) for a in arrays]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(30):
                request = compiled.parse_predict_request(
                    request_from(bodies[k], False), lambda _: {"x": FLOAT})
                np.testing.assert_array_equal(request.inputs["x"], arrays[k])
                assert compiled.format_predict_response({"x": arrays[k]}, False) == bodies[k]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_format_error_is_the_twins() -> None:
    assert compiled.format_error is twin.format_error


@pytest.mark.parametrize("outputs", [
    {"y": np.zeros((3, 4), np.float32)},
    {"y": np.arange(5, dtype=np.int64), "z": np.array([[True], [False]] * 2 + [[True]])},
    {"y": np.array([b"a", b"\xff"], dtype=object), "y_bytes": np.array([b"\x00", b""], object)},
    {"d": np.array([0.1, 1e300, -0.0]), "u": np.array([1, 2, 3], np.uint64)},
])
def test_common_outputs_take_the_compiled_writer(outputs) -> None:
    for columnar in (False, True):
        body = compiled._format_fast(outputs, columnar, None)
        assert body is not None
        assert body == twin.format_predict_response(outputs, columnar)


# ---------------------------------------------------------------------------------------------
# The small-response writer (model outputs, written from the array structs) and the inputs it
# leaves to the general writer: the same bytes as the twin either way


class _Sub(np.ndarray):
    pass


def _unaligned(n: int) -> np.ndarray:
    buf = np.zeros(4 * n + 1, np.uint8)
    a = buf[1:].view(np.float32)
    a[:] = np.arange(n, dtype=np.float32) + 0.5
    assert not a.flags.aligned
    return a


_F = np.array([[2.5], [3.0], [4.5]], np.float32)


@pytest.mark.parametrize(("outputs", "declared"), [
    ({"y": _F}, {"y": FLOAT}),
    ({"y": _F}, None),
    ({"y": _F.astype(">f4")}, {"y": FLOAT}),  # foreign byte order
    ({"y": _F.astype(">f4")}, None),
    ({"y": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]}, {"y": FLOAT}),  # a view
    ({"y": _unaligned(3)}, {"y": FLOAT}),
    ({"y": _F.view(_Sub)}, {"y": FLOAT}),
    ({"y": [[1.5], [2.0]]}, {"y": FLOAT}),  # not an array
    ({"y": _F}, {"y": 1}),  # declared as a plain int, a bool, a float, a string, out of range
    ({"y": _F}, {"y": True}),
    ({"y": _F}, {"y": 1.0}),
    ({"y": _F}, {"y": 1.5}),
    ({"y": _F}, {"y": "DT_FLOAT"}),
    ({"y": _F}, {"y": 2**70}),
    ({"y": _F}, {"y": -1}),
    ({"y": _F}, {"y": 40}),
    ({"y": _F}, {"y": DOUBLE}),  # a conversion
    ({"y": np.arange(3, dtype=np.int64)}, {"y": FLOAT}),
    ({"y": np.arange(3, dtype=np.longlong)}, {"y": INT64}),  # int64 of another numpy type
    ({"y": np.arange(3, dtype=np.longlong)}, None),
    ({"y": np.arange(3, dtype=np.uint16)}, None),
    ({"y": np.arange(3, dtype=np.float16)}, None),
    ({"y": np.array([True, False])}, {"y": BOOL}),
    ({"y": np.array([1, 0], np.uint8)}, {"y": BOOL}),
    ({"y": np.array(7.5, np.float32)}, {"y": FLOAT}),  # 0-d
    ({"y": np.zeros((2, 0, 3), np.float32)}, {"y": FLOAT}),
    ({"a": _F, "b": np.arange(3, dtype=np.int32)}, {"a": FLOAT, "b": INT32}),
    ({"b": np.arange(3, dtype=np.int32), "a": _F}, {"a": FLOAT}),
    ({"a": _F, "b": np.arange(4, dtype=np.int32)}, None),  # batch sizes differ
    ({'q"uote': _F, "\x01é": _F, "日本": _F}, None),  # keys to escape
    ({f"o{i}": _F for i in range(9)}, None),  # more outputs than the small writer takes
    ({f"o{i}": _F for i in range(8)}, None),
    ({"y": _F, "y_bytes": np.array([b"a", b"b", b"\xff"], object)}, None),
])
def test_small_and_general_writers_agree_with_the_twin(outputs, declared) -> None:
    def outcome(impl, columnar):
        try:
            return format_outcome(impl, outputs, columnar, declared)
        except Exception as e:  # not a ServingError: then the same exception
            return ("raised", type(e), str(e))

    for columnar in (False, True):
        assert outcome(compiled, columnar) == outcome(twin, columnar)


def test_writers_take_other_mappings() -> None:
    outputs = types.MappingProxyType({"y": _F})
    declared = types.MappingProxyType({"y": FLOAT})
    for columnar in (False, True):
        assert (compiled.format_predict_response(outputs, columnar, declared)
                == twin.format_predict_response(outputs, columnar, declared))


def test_an_unencodable_alias_fails_the_same_way() -> None:
    outputs = {"\ud800": _F, "b": _F}
    for impl in (twin, compiled):
        with pytest.raises(UnicodeEncodeError):
            impl.format_predict_response(outputs, True)
    # one output has no key text: both write it
    assert (compiled.format_predict_response({"\ud800": _F}, True)
            == twin.format_predict_response({"\ud800": _F}, True))


def test_cached_signatures_never_leak_between_alias_sets() -> None:
    # Same aliases, different dtypes, and same dtypes, different aliases, in quick succession.
    cases = [({"x": FLOAT}, b'{"inputs": {"x": [1]}}'), ({"x": INT8}, b'{"inputs": {"x": [1]}}'),
             ({"w": INT8}, b'{"inputs": {"x": [1]}}'), ({"w": INT8, "x": FLOAT},
                                                         b'{"instances": [{"x": 1, "w": 2}]}')]
    for _ in range(2):
        for dtypes, body in cases:
            assert_parse_agrees(body, dtypes)
