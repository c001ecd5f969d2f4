"""Binary tensor data: raw little-endian elements, BYTES length-prefixed."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.server.v2 import binary_tensor
from tfsfast.util.status import Code, ServingError

NUMERIC = [DataType.DT_BOOL, DataType.DT_UINT8, DataType.DT_UINT16, DataType.DT_UINT32,
           DataType.DT_UINT64, DataType.DT_INT8, DataType.DT_INT16, DataType.DT_INT32,
           DataType.DT_INT64, DataType.DT_HALF, DataType.DT_FLOAT, DataType.DT_DOUBLE,
           DataType.DT_BFLOAT16]


def _values(dtype: DataType) -> np.ndarray:
    if dtype == DataType.DT_BOOL:
        return np.array([[True, False, True], [False, False, True]])
    return np.array([[0, 1, 2], [3, 100, 7]]).astype(to_numpy(dtype))


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: d.name)
def test_numeric_round_trip(dtype: DataType) -> None:
    values = _values(dtype)
    data = binary_tensor.encode(values, dtype)
    assert bytes(data) == values.astype(values.dtype.newbyteorder("<")).tobytes()
    decoded = binary_tensor.decode(data, dtype, 6, "x")
    assert decoded.dtype == to_numpy(dtype)
    assert decoded.tolist() == values.reshape(-1).tolist()


def test_numeric_decode_is_a_view_of_the_buffer() -> None:
    body = bytearray(np.array([1.0, 2.0], np.float32).tobytes())
    decoded = binary_tensor.decode(memoryview(body), DataType.DT_FLOAT, 2, "x")
    body[0:4] = np.array([9.0], np.float32).tobytes()
    assert decoded.tolist() == [9.0, 2.0]
    # A request body is bytes: the view cannot write into it.
    assert not binary_tensor.decode(bytes(body), DataType.DT_FLOAT, 2, "x").flags.writeable


def test_numeric_decode_of_a_slice_at_an_odd_offset() -> None:
    body = b"JSON!" + np.array([7, -1], np.int64).tobytes()
    decoded = binary_tensor.decode(memoryview(body)[5:], DataType.DT_INT64, 2, "x")
    assert decoded.tolist() == [7, -1]


def test_encode_is_row_major_whatever_the_layout() -> None:
    values = np.arange(6, dtype=np.int32).reshape(2, 3).T  # Fortran-ordered view
    assert bytes(binary_tensor.encode(values, DataType.DT_INT32)) == (
        np.array([0, 3, 1, 4, 2, 5], "<i4").tobytes())


def test_encode_writes_the_declared_dtype() -> None:
    assert bytes(binary_tensor.encode(np.array([1.5, 2.0]), DataType.DT_FLOAT)) == (
        np.array([1.5, 2.0], "<f4").tobytes())


def test_bool_elements_are_one_byte_zero_or_one() -> None:
    assert bytes(binary_tensor.encode(np.array([True, False, True]), DataType.DT_BOOL)) == (
        b"\x01\x00\x01")


def test_bf16_elements_are_two_bytes() -> None:
    values = np.array([1.0, -2.5], ml_dtypes.bfloat16)
    data = binary_tensor.encode(values, DataType.DT_BFLOAT16)
    assert bytes(data) == b"\x80\x3f\x20\xc0"
    assert binary_tensor.decode(data, DataType.DT_BFLOAT16, 2, "x").tolist() == [1.0, -2.5]


def test_bytes_round_trip() -> None:
    values = np.array([[b"ab", b""], [b"\xff\x00", "h\u00e9".encode()]], dtype=object)
    data = binary_tensor.encode(values, DataType.DT_STRING)
    assert data == (b"\x02\x00\x00\x00ab" b"\x00\x00\x00\x00" b"\x02\x00\x00\x00\xff\x00"
                    b"\x03\x00\x00\x00h\xc3\xa9")
    decoded = binary_tensor.decode(data, DataType.DT_STRING, 4, "s")
    assert decoded.dtype == object
    assert decoded.tolist() == [b"ab", b"", b"\xff\x00", b"h\xc3\xa9"]


def test_bytes_encode_takes_str_elements_as_utf8() -> None:
    assert binary_tensor.encode(np.array(["h\u00e9"], dtype=object), DataType.DT_STRING) == (
        b"\x03\x00\x00\x00h\xc3\xa9")


def _error(data: bytes, dtype: DataType, count: int) -> str:
    with pytest.raises(ServingError) as raised:
        binary_tensor.decode(data, dtype, count, "x")
    assert raised.value.code == Code.INVALID_ARGUMENT
    return raised.value.message


@pytest.mark.parametrize(("data", "dtype", "count", "message"), [
    (b"\x00" * 8, DataType.DT_FLOAT, 3,
     "Input 'x' has 3 elements of FP32, which take 12 bytes, but its binary data has 8 bytes"),
    (b"\x00" * 16, DataType.DT_FLOAT, 3,
     "Input 'x' has 3 elements of FP32, which take 12 bytes, but its binary data has 16 bytes"),
    (b"\x00" * 7, DataType.DT_STRING, 2,
     "Input 'x' has 2 elements of BYTES, which take at least 8 bytes, but its binary data has 7 "
     "bytes"),
    (b"\x01\x00\x00\x00a\x00\x00\x00", DataType.DT_STRING, 2,
     "Input 'x': the binary data ends inside the length of element 1"),
    (b"\x09\x00\x00\x00abc\x00\x00\x00\x00", DataType.DT_STRING, 2,
     "Input 'x': element 0 of the binary data has length 9, but only 7 bytes follow it"),
    (b"\x01\x00\x00\x00a\x00\x00\x00\x00zz", DataType.DT_STRING, 2,
     "Input 'x': 2 bytes of the binary data follow its 2 elements"),
    (b"\xff\xff\xff\xff" * 2, DataType.DT_STRING, 2,
     "Input 'x': element 0 of the binary data has length 4294967295, but only 4 bytes follow "
     "it"),
])
def test_decode_errors(data: bytes, dtype: DataType, count: int, message: str) -> None:
    assert _error(data, dtype, count) == message


def test_a_huge_bytes_count_is_refused_before_allocating() -> None:
    assert _error(b"", DataType.DT_STRING, 1 << 40) == (
        f"Input 'x' has {1 << 40} elements of BYTES, which take at least {4 << 40} bytes, but "
        "its binary data has 0 bytes")


def test_empty_tensors() -> None:
    assert binary_tensor.decode(b"", DataType.DT_FLOAT, 0, "x").shape == (0,)
    assert binary_tensor.decode(b"", DataType.DT_STRING, 0, "x").shape == (0,)
    assert bytes(binary_tensor.encode(np.zeros((0, 3), np.float32), DataType.DT_FLOAT)) == b""
    assert binary_tensor.encode(np.zeros((2, 0), object), DataType.DT_STRING) == b""
