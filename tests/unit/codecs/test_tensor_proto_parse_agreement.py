"""The compiled TensorProto codec, its Python twin and protobuf agree, on hand-made bytes.

PredictRequest parsing follows protobuf's rules (``predict_pb2.PredictRequest.FromString`` is
the reference): ``inputs`` entries with the same key keep the last; one entry's value split
into several occurrences is merged; ``model_spec`` occurrences merge. A tensor part that is not
well-formed on its own is never completed by the next part. The encoder writes the same bytes
in both implementations whatever the array's layout, and the limits raise the same errors.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType
from tfsfast.testing.test_util import implementations, import_impl
from tfsfast.util.status import Code, ServingError

IMPLS = implementations("tfsfast.codecs._tensor_proto", "tfsfast.codecs._tensor_proto_py")
TWIN = "tfsfast.codecs._tensor_proto_py"


@pytest.fixture(params=IMPLS)
def codec(request):
    return import_impl(request.param)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, body: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _entry(*parts: bytes) -> bytes:
    """One ``inputs`` map entry (PredictRequest field 2) made of the given fields."""
    return _ld(2, b"".join(parts))


F32 = np.array([1, 2, 3], np.float32).tobytes()
HEADER = b"\x08\x01" + _ld(2, _ld(2, b"\x08\x03"))  # dtype float, shape [3]
TENSOR = HEADER + _ld(4, F32)
OTHER = HEADER + _ld(4, np.array([7, 8, 9], np.float32).tobytes())

CASES = {
    "same key twice: last wins": _entry(_ld(1, b"x"), _ld(2, TENSOR))
    + _entry(_ld(1, b"x"), _ld(2, OTHER)),
    "value in two parts: merged": _entry(_ld(1, b"x"), _ld(2, HEADER), _ld(2, _ld(4, F32))),
    "value parts around the key": _entry(_ld(2, HEADER), _ld(1, b"x"), _ld(2, _ld(4, F32))),
    "key twice in one entry": _entry(_ld(1, b"y"), _ld(2, TENSOR), _ld(1, b"x")),
    "shape split across parts": _entry(
        _ld(1, b"x"), _ld(2, b"\x08\x01" + _ld(2, _ld(2, b"\x08\x01"))),
        _ld(2, _ld(2, _ld(2, b"\x08\x03")) + _ld(4, F32))),
    "content replaced by a later part": _entry(_ld(1, b"x"), _ld(2, OTHER), _ld(2, _ld(4, F32))),
    "three parts": _entry(_ld(1, b"x"), _ld(2, b"\x08\x01"), _ld(2, _ld(2, _ld(2, b"\x08\x03"))),
                          _ld(2, _ld(4, F32))),
    "model_spec split": _ld(1, _ld(1, b"m") + _ld(2, b"\x08\x05")) + _ld(1, _ld(3, b"sig"))
    + _entry(_ld(1, b"x"), _ld(2, TENSOR)),
    "version, label, empty version": _ld(1, _ld(2, b"\x08\x05")) + _ld(1, _ld(4, b"L"))
    + _ld(1, _ld(2, b"")) + _entry(_ld(1, b"x"), _ld(2, TENSOR)),
    "version then label": _ld(1, _ld(2, b"\x08\x05")) + _ld(1, _ld(4, b"L"))
    + _entry(_ld(1, b"x"), _ld(2, TENSOR)),
    "entries interleaved with model_spec": _entry(_ld(1, b"x"), _ld(2, HEADER))
    + _ld(1, _ld(1, b"m")) + _entry(_ld(1, b"y"), _ld(2, TENSOR))
    + _entry(_ld(1, b"x"), _ld(2, TENSOR)),
}


def _summary_from_protobuf(data: bytes):
    from tensorflow_serving.apis import predict_pb2

    from tfsfast.codecs._tensor_proto_py import tensor_proto_to_ndarray

    request = predict_pb2.PredictRequest.FromString(data)
    spec = request.model_spec
    kind = spec.WhichOneof("version_choice")
    inputs = {k: tensor_proto_to_ndarray(t, k) for k, t in request.inputs.items()}
    return (spec.name, spec.version.value if kind == "version" else None,
            spec.version_label if kind == "version_label" else None, spec.signature_name,
            {k: (a.dtype, a.shape, a.tolist()) for k, a in inputs.items()})


def _summary(codec, data: bytes):
    view = codec.decode_predict_request(data)
    inputs = {k: codec.decode_tensor(t, k) for k, t in view.inputs.items()}
    return (view.model_name, view.version, view.version_label, view.signature_name,
            {k: (a.dtype, a.shape, a.tolist()) for k, a in inputs.items()})


@pytest.mark.parametrize("data", CASES.values(), ids=list(CASES))
def test_predict_request_parses_as_protobuf_does(codec, data) -> None:
    assert _summary(codec, data) == _summary_from_protobuf(data)


@pytest.mark.parametrize("data", CASES.values(), ids=list(CASES))
def test_twins_give_the_same_tensor_bytes(codec, data) -> None:
    twin = import_impl(TWIN)
    ours = {k: bytes(v) for k, v in codec.decode_predict_request(data).inputs.items()}
    assert ours == {k: bytes(v) for k, v in twin.decode_predict_request(data).inputs.items()}


@pytest.mark.parametrize("parts", [
    [HEADER + b"\x22", b"\x0c" + F32],                 # a length prefix finished by the next part
    [HEADER + b"\x22\x0c" + F32[:4], F32[4:]],         # a payload finished by the next part
    [HEADER + b"\x2d", F32[:4]],                       # a fixed32 tag without its value
    [HEADER, b"\x23", b"\x24"],                        # a group opened and closed in two parts
], ids=["length", "payload", "fixed32", "group"])
def test_a_part_is_never_completed_by_the_next(codec, parts) -> None:
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import predict_pb2

    data = _entry(_ld(1, b"x"), *(_ld(2, p) for p in parts))
    # The joined parts would be a valid tensor; protobuf refuses the request.
    assert codec.decode_tensor(b"".join(parts), "x").shape == (3,)
    with pytest.raises(DecodeError):
        predict_pb2.PredictRequest.FromString(data)
    # tfsfast parses tensors lazily: the tensor is refused, as any malformed tensor is.
    view = codec.decode_predict_request(data)
    with pytest.raises(ServingError) as e:
        codec.decode_tensor(view.inputs["x"], "x")
    assert (e.value.code, e.value.message) == (Code.INVALID_ARGUMENT, "tensor parsing error: x")


def test_an_entry_without_value_is_an_empty_tensor(codec) -> None:
    view = codec.decode_predict_request(_entry(_ld(1, b"x")))
    assert bytes(view.inputs["x"]) == b""
    with pytest.raises(ServingError, match="tensor parsing error: x"):
        codec.decode_tensor(view.inputs["x"], "x")


def _shape(dims: list[int]) -> bytes:
    return b"\x08\x01" + _ld(2, b"".join(_ld(2, b"\x08" + _varint(d)) for d in dims))


@pytest.mark.parametrize("dims, message", [
    ([1] * 33, "Input: t has rank 33, which exceeds the maximum tensor rank of 32"),
    ([2**14, 2**14, 2], f"Input: t has {2**29} elements, which exceeds the maximum of "
                        f"{2**28} elements per tensor"),
])
def test_limits_match_the_twin(codec, dims, message) -> None:
    twin = import_impl(TWIN)
    errors = []
    for impl in (codec, twin):
        with pytest.raises(ServingError) as e:
            impl.decode_tensor(_shape(dims), "t")
        errors.append((e.value.code, e.value.message))
    assert errors[0] == errors[1] == (Code.INVALID_ARGUMENT, message)


def test_limits_at_the_bounds_pass(codec) -> None:
    assert codec.decode_tensor(_shape([1] * 32), "t").shape == (1,) * 32
    assert codec.decode_tensor(_shape([2**14, 2**14]), "t").size == 2**28


class _Sub(np.ndarray):
    pass


def _layouts():
    """Arrays of every dtype the codec writes, in layouts that need no copy and ones that do."""
    base = {
        "float32": np.arange(6, dtype=np.float32) - 2.5,
        "float64": np.arange(6, dtype=np.float64) * -1.25,
        "int32": np.array([-2**31, -1, 0, 1, 2**31 - 1, 5], np.int32),
        "int64": np.array([-2**63, -1, 0, 1, 2**63 - 1, 300], np.int64),
        "int16": np.array([-32768, -1, 0, 1, 32767, 128], np.int16),
        "int8": np.array([-128, -1, 0, 1, 127, 64], np.int8),
        "uint8": np.array([0, 1, 127, 128, 255, 9], np.uint8),
        "uint16": np.array([0, 1, 128, 65535, 300, 9], np.uint16),
        "uint32": np.array([0, 1, 2**32 - 1, 2**31, 300, 9], np.uint32),
        "uint64": np.array([0, 1, 2**64 - 1, 2**63, 300, 9], np.uint64),
        "bool": np.array([True, False, True, True, False, False]),
        "float16": np.array([0.5, -0.0, 65504, -1, np.inf, 3], np.float16),
        "bfloat16": np.array([0.5, -0.0, 1e30, -1, np.inf, 3], ml_dtypes.bfloat16),
        "complex64": np.array([1 + 2j, -3j, 0, 1, 2, 3], np.complex64),
        "complex128": np.array([1 + 2j, -3j, 0, 1, 2, 3], np.complex128),
    }
    for name, flat in base.items():
        yield f"{name}-contiguous", flat.reshape(2, 3)
        yield f"{name}-transposed", flat.reshape(2, 3).T
        yield f"{name}-strided", flat[::2]
        yield f"{name}-scalar", flat[1].reshape(())
        raw = bytearray(1 + flat.nbytes)
        raw[1:] = flat.tobytes()
        yield f"{name}-unaligned", np.frombuffer(bytes(raw), flat.dtype, offset=1).reshape(3, 2)
        yield f"{name}-empty", flat[:0].reshape(0, 4)
    yield "float32-big-endian", np.arange(4, dtype=">f4")
    yield "int32-big-endian", np.arange(4, dtype=">i4")
    yield "bool-nonzero-bytes", np.array([0, 2, 255], np.uint8).view(np.bool_)
    yield "list", [[1.0, 2.0]]
    yield "subclass", np.arange(4, dtype=np.int32).reshape(2, 2).view(_Sub)
    yield "strings", np.array([b"a", b"", b"ccc"], object)
    yield "unicode", np.array(["x", "\u00e9"])


LAYOUTS = dict(_layouts())


def _twin_result(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # the same exception type and text in both
        return (type(e), str(e))


@pytest.mark.parametrize("array", LAYOUTS.values(), ids=list(LAYOUTS))
@pytest.mark.parametrize("tensor_content", [False, True])
def test_encoders_write_the_same_bytes(codec, array, tensor_content) -> None:
    twin = import_impl(TWIN)
    ours = _twin_result(codec.encode_tensor, array, None, tensor_content)
    assert ours == _twin_result(twin.encode_tensor, array, None, tensor_content)
    response = _twin_result(codec.encode_predict_response, "m", "s", 3, [("out", array)],
                            tensor_content)
    assert response == _twin_result(twin.encode_predict_response, "m", "s", 3,
                                    [("out", array)], tensor_content)


@pytest.mark.parametrize("dtype", [DataType.DT_FLOAT, DataType.DT_INT8, DataType.DT_UINT64,
                                   DataType.DT_HALF, DataType.DT_BOOL, DataType.DT_DOUBLE])
def test_encoders_agree_with_an_explicit_dtype(codec, dtype) -> None:
    twin = import_impl(TWIN)
    array = np.array([[0, 1], [2, 3]], np.int32).T
    for tensor_content in (False, True):
        assert (codec.encode_tensor(array, dtype, tensor_content)
                == twin.encode_tensor(array, dtype, tensor_content))


def test_encoder_refusals_match(codec) -> None:
    twin = import_impl(TWIN)
    for array, dtype in [(np.zeros(2, np.float32), DataType.DT_QINT8),
                         (np.zeros(2, "datetime64[s]"), None)]:
        assert (_twin_result(codec.encode_tensor, array, dtype)
                == _twin_result(twin.encode_tensor, array, dtype))


def _nested_variants(depth: int) -> bytes:
    """A float tensor holding ``depth`` levels of variant_val -> tensors -> variant_val ...
    (two message levels each)."""
    tensor = b""
    for _ in range(depth):
        tensor = _ld(15, _ld(3, tensor))
    return b"\x08\x01" + tensor


# What upb refuses (or accepts) wherever it sits in a TensorProto, also in fields the tensor's
# dtype does not read. Each was a disagreement between the compiled codec and protobuf.
MALFORMED = {
    "packed double_val of 17 bytes on a float tensor": HEADER + _ld(6, b"\x00" * 17),
    "packed float_val of 6 bytes beside tensor_content": TENSOR + _ld(5, b"\x00" * 6),
    "bad varint in a packed int64_val on a float tensor": HEADER + _ld(10, b"\xff\xff"),
    "malformed variant_val": HEADER + _ld(15, b"\x19"),
    "malformed resource_handle_val on a string tensor":
        b"\x08\x07" + _ld(2, _ld(2, b"\x08\x02")) + _ld(14, b"\x0a\x05ab"),
    "resource handle name not UTF-8": HEADER + _ld(14, _ld(3, b"\xff")),
    "resource handle name UTF-8": HEADER + _ld(14, _ld(3, "é".encode())),
    "dimension name not UTF-8": b"\x08\x01" + _ld(2, _ld(2, b"\x08\x03" + _ld(2, b"\xc3"))),
    "variant holding a malformed tensor": HEADER + _ld(15, _ld(3, _ld(5, b"\x00" * 3))),
    "variant type name not UTF-8": HEADER + _ld(15, _ld(1, b"\xfe")),
    "six-byte tag": HEADER + b"\x88\x80\x80\x80\x80\x00\x01",
    "five-byte tag": HEADER + b"\x88\x80\x80\x80\x00\x01",
    "six-byte tag inside a group": HEADER + b"\x1b\x88\x80\x80\x80\x80\x00\x01\x1c",
    "known field with a wire type it cannot have": HEADER + b"\x35\x00\x00\x00\x00",
    "messages nested 100 deep": _nested_variants(50),
    "messages nested 102 deep": _nested_variants(51),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_tensors_are_refused_as_protobuf_refuses_them(codec, data) -> None:
    from tensorflow.core.framework import tensor_pb2

    try:
        tensor_pb2.TensorProto.FromString(data)
        protobuf_parses = True
    except Exception:
        protobuf_parses = False
    try:
        codec.decode_tensor(data, "x")
        parsed = True
    except ServingError as e:
        assert (e.code, e.message) == (Code.INVALID_ARGUMENT, "tensor parsing error: x")
        parsed = False
    assert parsed == protobuf_parses
