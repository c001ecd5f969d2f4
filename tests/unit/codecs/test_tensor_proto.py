"""The gRPC TensorProto codec against TensorFlow's own converters and TF's FromProto rules.

``tf.make_tensor_proto`` / ``tf.make_ndarray`` (TensorFlow's reference converters) are the
oracle here; the server never calls them. Every test runs on the compiled codec and its twin, and
property tests check that the two agree on arbitrary arrays and on arbitrary bytes.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.codecs._tensor_proto", "tfsfast.codecs._tensor_proto_py")


@pytest.fixture(params=IMPLS)
def codec(request):
    return import_impl(request.param)


def _tf():
    import tensorflow as tf

    return tf


def _proto(dtype: int, dims: list[int], **fields):
    from tensorflow.core.framework import tensor_pb2

    p = tensor_pb2.TensorProto(dtype=dtype)
    p.tensor_shape.SetInParent()
    for d in dims:
        p.tensor_shape.dim.add(size=d)
    for name, values in fields.items():
        if name == "tensor_content":
            p.tensor_content = values
        else:
            getattr(p, name).extend(values)
    return p.SerializeToString()


ARRAYS = [
    np.array([[2.0]], np.float32),
    np.arange(6, dtype=np.int32).reshape(2, 3) - 3,
    np.array([1.5, -2.0], np.float64),
    np.array([True, False, True]),
    np.array(7, np.int64),
    np.array([-1, 200, -32768], np.int16),
    np.array([-128, 127], np.int8),
    np.array([0, 255], np.uint8),
    np.array([0, 65535], np.uint16),
    np.array([4_000_000_000], np.uint32),
    np.array([2**63 + 5], np.uint64),
    np.array([1.5, 2.25, -0.0], np.float16),
    np.array([1.5, -3.0], ml_dtypes.bfloat16),
    np.array([1 + 2j, -3.5j], np.complex64),
    np.array([[1 - 1j]], np.complex128),
    np.zeros((0, 3), np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("tensor_content", [False, True], ids=["fields", "content"])
def test_round_trip_and_tensorflow_reads_what_we_write(codec, array, tensor_content) -> None:
    data = codec.encode_tensor(array, None, tensor_content)
    back = codec.decode_tensor(data, "x")
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto.FromString(data)
    assert proto.HasField("tensor_shape")
    assert bool(proto.tensor_content) == (tensor_content and array.size > 0)
    tf_view = _tf().make_ndarray(proto)
    assert tf_view.shape == array.shape and np.array_equal(tf_view, array)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_decodes_what_tensorflow_writes(codec, array) -> None:
    proto = _tf().make_tensor_proto(array)
    got = codec.decode_tensor(proto.SerializeToString(), "x")
    assert got.dtype == array.dtype and np.array_equal(got, array)


def test_strings(codec) -> None:
    array = np.array([[b"ab", b""], [b"\xff\x00", "é"]], dtype=object)
    expected = [[b"ab", b""], [b"\xff\x00", "é".encode()]]
    for tensor_content in (False, True):
        got = codec.decode_tensor(codec.encode_tensor(array, None, tensor_content), "s")
        assert got.dtype == object and got.tolist() == expected
    # TF's own string-list tensor_content encoding decodes too.
    from tensorflow.core.framework import tensor_pb2

    tf_proto = _tf().make_tensor_proto([b"a", b"bcd"])
    assert codec.decode_tensor(tf_proto.SerializeToString()).tolist() == [b"a", b"bcd"]
    content = tensor_pb2.TensorProto.FromString(codec.encode_tensor(
        np.array([b"a", b"bcd"], dtype=object), None, True)).tensor_content
    assert content == b"\x01\x03abcd"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"float_val": [1.0, 2.0]}, [[1, 2, 2], [2, 2, 2]]),  # the last value repeats
    ({}, [[0, 0, 0], [0, 0, 0]]),  # no values: zeros
])
def test_typed_values_follow_tensorflows_fill_rule(codec, fields, expected) -> None:
    data = _proto(DataType.DT_FLOAT, [2, 3], **fields)
    got = codec.decode_tensor(data, "x")
    assert got.tolist() == expected
    from tensorflow.core.framework import tensor_pb2

    assert _tf().make_ndarray(tensor_pb2.TensorProto.FromString(data)).tolist() == expected


def test_extra_typed_values_are_ignored(codec) -> None:
    # C++ Tensor::FromProto copies the first N values (tf.make_ndarray would refuse instead).
    data = _proto(DataType.DT_FLOAT, [2, 3], float_val=[1, 2, 3, 4, 5, 6, 7, 8])
    assert codec.decode_tensor(data, "x").tolist() == [[1, 2, 3], [4, 5, 6]]


def test_padding_for_every_typed_field(codec) -> None:
    cases = [
        (DataType.DT_INT32, "int_val", [-7], np.int32),
        (DataType.DT_INT8, "int_val", [-100], np.int8),
        (DataType.DT_INT64, "int64_val", [-2**40], np.int64),
        (DataType.DT_BOOL, "bool_val", [True], np.bool_),
        (DataType.DT_DOUBLE, "double_val", [0.25], np.float64),
        (DataType.DT_UINT32, "uint32_val", [7], np.uint32),
        (DataType.DT_UINT64, "uint64_val", [2**64 - 1], np.uint64),
        (DataType.DT_HALF, "half_val", [0x3C00], np.float16),  # the bits of 1.0
        (DataType.DT_BFLOAT16, "half_val", [0x3F80], ml_dtypes.bfloat16),  # 1.0
        (DataType.DT_STRING, "string_val", [b"s"], object),
    ]
    from tensorflow.core.framework import tensor_pb2

    for dtype, field, values, np_dtype in cases:
        data = _proto(dtype, [3], **{field: values})
        got = codec.decode_tensor(data, "x")
        assert got.dtype == np.dtype(np_dtype), field
        reference = _tf().make_ndarray(tensor_pb2.TensorProto.FromString(data))
        assert got.tolist() == reference.tolist(), field


def test_int_val_narrows_as_cpp_does(codec) -> None:
    assert codec.decode_tensor(_proto(DataType.DT_INT8, [2], int_val=[300])).tolist() == [44, 44]


def test_complex_pairs(codec) -> None:
    got = codec.decode_tensor(_proto(DataType.DT_COMPLEX64, [2], scomplex_val=[1, 2]), "c")
    assert got.tolist() == [1 + 2j, 1 + 2j]


def test_tensor_content_is_zero_copy_over_the_request(codec) -> None:
    if not codec.__name__.endswith("_tensor_proto"):
        pytest.skip("only the compiled codec promises views over the request bytes")
    values = np.arange(4, dtype=np.float32)
    data = _proto(DataType.DT_FLOAT, [4], tensor_content=values.tobytes())
    got = codec.decode_tensor(data, "x")
    assert np.array_equal(got, values)
    assert not got.flags.writeable and got.base is not None
    view = memoryview(data)
    assert np.shares_memory(got, np.frombuffer(view, np.uint8))


@pytest.mark.parametrize(("data_fn", "name"), [
    (lambda: _proto(DataType.DT_INVALID, [1], float_val=[1]), "dtype invalid"),
    (lambda: _proto(DataType.DT_RESOURCE, [1]), "resource"),
    (lambda: _proto(DataType.DT_FLOAT, [-1], float_val=[1]), "negative dim"),
    (lambda: _proto(DataType.DT_FLOAT, [3], tensor_content=b"\0" * 8), "content size"),
    (lambda: _proto(DataType.DT_FLOAT, [2**40, 2**40]), "overflow"),
    (lambda: _proto(DataType.DT_STRING, [2], tensor_content=b"\x05ab"), "string list"),
    (lambda: b"\x0a\x05\x12", "truncated"),
    (lambda: b"\xff", "garbage"),
])
def test_refusals_are_tensor_parsing_errors(codec, data_fn, name) -> None:
    with pytest.raises(ServingError) as e:
        codec.decode_tensor(data_fn(), "in")
    assert (e.value.code, e.value.message) == (Code.INVALID_ARGUMENT, "tensor parsing error: in")


def test_limits_name_the_input(codec) -> None:
    with pytest.raises(ServingError) as e:
        codec.decode_tensor(_proto(DataType.DT_FLOAT, [2**20, 2**10], float_val=[1.0]), "x")
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == (f"Input: x has {2**30} elements, which exceeds the maximum of "
                                f"{2**28} elements per tensor")
    with pytest.raises(ServingError) as e:
        codec.decode_tensor(_proto(DataType.DT_FLOAT, [1] * 33), "r")
    assert "has rank 33, which exceeds the maximum tensor rank of 32" in e.value.message
    budget = [2**29 - 1]
    with pytest.raises(ServingError) as e:
        codec.decode_tensor(_proto(DataType.DT_FLOAT, [2]), "b", budget)
    assert "the maximum per request" in e.value.message


def test_limits_are_the_codecs(codec) -> None:
    small = codec.TensorProtoCodec(CodecLimits(max_tensor_rank=1, max_tensor_elements=3,
                                               max_request_elements=5))
    assert small.decode_tensor(_proto(DataType.DT_FLOAT, [3], float_val=[1.0]), "x").size == 3
    with pytest.raises(ServingError) as e:
        small.decode_tensor(_proto(DataType.DT_FLOAT, [4], float_val=[1.0]), "x")
    assert e.value.message == (
        "Input: x has 4 elements, which exceeds the maximum of 3 elements per tensor")
    with pytest.raises(ServingError) as e:
        small.decode_tensor(_proto(DataType.DT_FLOAT, [1, 1]), "r")
    assert e.value.message == "Input: r has rank 2, which exceeds the maximum tensor rank of 1"
    budget = [0]
    small.decode_tensor(_proto(DataType.DT_FLOAT, [3]), "a", budget)
    with pytest.raises(ServingError) as e:
        small.decode_tensor(_proto(DataType.DT_FLOAT, [3]), "b", budget)
    assert e.value.message == "Request has more than 5 tensor elements, the maximum per request"
    assert budget == [3]
    assert codec.decode_tensor(_proto(DataType.DT_FLOAT, [4]), "x").size == 4  # the module's


def test_unknown_fields_and_wrong_wire_types_are_skipped(codec) -> None:
    base = _proto(DataType.DT_FLOAT, [1], float_val=[2.5])
    # field 99 varint, field 5 (float_val) sent as a varint: an unknown field to any parser
    extra = b"\x98\x06\x01" + b"\x28\x07"
    from tensorflow.core.framework import tensor_pb2

    reference = _tf().make_ndarray(tensor_pb2.TensorProto.FromString(base + extra))
    assert codec.decode_tensor(base + extra).tolist() == reference.tolist() == [2.5]


def test_encode_rejects_types_it_cannot_carry(codec) -> None:
    with pytest.raises(ServingError) as e:
        codec.encode_tensor(np.array([1.0]), DataType.DT_RESOURCE)
    assert e.value.code == Code.INVALID_ARGUMENT


# --- PredictRequest / PredictResponse ---------------------------------------------------------


def test_decode_predict_request(codec) -> None:
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.model_spec.signature_name = "sig"
    req.model_spec.version.value = 0  # set, even though it is the default value
    req.inputs["x"].CopyFrom(_tf().make_tensor_proto(np.array([1.0, 2.0], np.float32)))
    req.inputs["s"].dtype = DataType.DT_STRING
    req.output_filter.extend(["y", "z"])
    req.client_id = b"ignored"
    view = codec.decode_predict_request(req.SerializeToString())
    assert (view.has_model_spec, view.model_name, view.version, view.version_label,
            view.signature_name, view.output_filter) == (True, "m", 0, None, "sig", ["y", "z"])
    assert sorted(view.inputs) == ["s", "x"]
    assert codec.decode_tensor(view.inputs["x"]).tolist() == [1.0, 2.0]

    req.model_spec.version_label = "stable"
    view = codec.decode_predict_request(req.SerializeToString())
    assert (view.version, view.version_label) == (None, "stable")
    empty = codec.decode_predict_request(b"")
    assert (empty.has_model_spec, empty.model_name, empty.inputs) == (False, "", {})


def test_decode_predict_request_refuses_garbage(codec) -> None:
    for data in (b"\x0a\x05ab", b"\x12\x03\x0a\x01\xff"):  # truncated; invalid UTF-8 key
        with pytest.raises(ServingError) as e:
            codec.decode_predict_request(data)
        assert e.value.code == Code.INVALID_ARGUMENT


def test_encode_predict_response(codec) -> None:
    from tensorflow_serving.apis import predict_pb2

    outputs = [("y", np.array([[3.0]], np.float32)), ("s", np.array([b"a"], dtype=object))]
    data = codec.encode_predict_response("default", "serving_default", 123, outputs)
    response = predict_pb2.PredictResponse.FromString(data)
    assert (response.model_spec.name, response.model_spec.signature_name,
            response.model_spec.version.value) == ("default", "serving_default", 123)
    assert response.model_spec.HasField("version")
    assert list(response.outputs["y"].float_val) == [3.0]
    assert [d.size for d in response.outputs["y"].tensor_shape.dim] == [1, 1]
    assert list(response.outputs["s"].string_val) == [b"a"]
    unversioned = predict_pb2.PredictResponse.FromString(
        codec.encode_predict_response("m", "", None, {}, True))
    assert not unversioned.model_spec.HasField("version")


# --- the compiled codec and its twin agree ------------------------------------------------------

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.int16, np.int8, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.float16, np.complex64, np.complex128]


@settings(max_examples=150, deadline=None)
@given(array=st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))),
       tensor_content=st.booleans())
def test_twins_agree_on_arrays(array, tensor_content) -> None:
    twins = [import_impl(p.values[0]) for p in IMPLS if p.values[0] is not None]
    encoded = [t.encode_tensor(array, None, tensor_content) for t in twins]
    for data in encoded:
        for t in twins:
            got = t.decode_tensor(data, "x")
            assert got.dtype == array.dtype and got.shape == array.shape
            assert np.array_equal(got, array, equal_nan=array.dtype.kind in "fc")


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=40),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from([_proto(DataType.DT_FLOAT, [2]), _proto(DataType.DT_INT32, [3]),
                               _proto(DataType.DT_STRING, [2]), _proto(DataType.DT_HALF, [1])]),
              st.binary(max_size=24))))
def test_twins_agree_on_arbitrary_bytes(data) -> None:
    outcomes = []
    for p in IMPLS:
        if p.values[0] is None:
            continue
        try:
            got = import_impl(p.values[0]).decode_tensor(data, "x")
            outcomes.append(("ok", got.dtype, got.shape, got.tobytes() if got.dtype != object
                             else got.tolist()))
        except ServingError as e:
            outcomes.append(("error", e.code, e.message))
    assert all(o == outcomes[0] for o in outcomes), outcomes
