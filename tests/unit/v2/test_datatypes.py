"""The protocol's datatypes against TF's DataTypes, and their binary element layout."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tfsfast.runtime.dtypes import DataType
from tfsfast.server.v2.datatypes import binary_dtype, data_type, datatype, metadata_datatype

PAIRS = [
    ("BOOL", DataType.DT_BOOL, "|b1"), ("UINT8", DataType.DT_UINT8, "|u1"),
    ("UINT16", DataType.DT_UINT16, "<u2"), ("UINT32", DataType.DT_UINT32, "<u4"),
    ("UINT64", DataType.DT_UINT64, "<u8"), ("INT8", DataType.DT_INT8, "|i1"),
    ("INT16", DataType.DT_INT16, "<i2"), ("INT32", DataType.DT_INT32, "<i4"),
    ("INT64", DataType.DT_INT64, "<i8"), ("FP16", DataType.DT_HALF, "<f2"),
    ("FP32", DataType.DT_FLOAT, "<f4"), ("FP64", DataType.DT_DOUBLE, "<f8"),
]


@pytest.mark.parametrize(("name", "dtype", "element"), PAIRS)
def test_numeric_datatypes_map_both_ways(name: str, dtype: DataType, element: str) -> None:
    assert (datatype(dtype), data_type(name), metadata_datatype(dtype)) == (name, dtype, name)
    assert binary_dtype(dtype) == np.dtype(element)


def test_bytes_is_tf_string_and_has_no_element_width() -> None:
    assert (datatype(DataType.DT_STRING), data_type("BYTES")) == ("BYTES", DataType.DT_STRING)
    assert binary_dtype(DataType.DT_STRING) is None


def test_bf16_is_carried_by_bfloat16() -> None:
    assert (datatype(DataType.DT_BFLOAT16), data_type("BF16")) == ("BF16", DataType.DT_BFLOAT16)
    assert binary_dtype(DataType.DT_BFLOAT16) == np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("name", ["fp32", "FLOAT32", "TYPE_FP32", "STRING", ""])
def test_names_that_are_not_datatypes(name: str) -> None:
    assert data_type(name) is None


@pytest.mark.parametrize(("dtype", "reported"), [
    (DataType.DT_COMPLEX64, "DT_COMPLEX64"), (DataType.DT_RESOURCE, "DT_RESOURCE"),
    (DataType.DT_QINT8, "DT_QINT8"), (250, "DT_250"),
])
def test_dtypes_the_protocol_cannot_carry(dtype: int, reported: str) -> None:
    assert (datatype(dtype), metadata_datatype(dtype)) == (None, reported)
    if dtype in DataType.__members__.values():
        assert binary_dtype(DataType(dtype)) is None
