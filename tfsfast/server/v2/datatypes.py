"""The Open Inference Protocol's tensor datatypes and the TensorFlow DataTypes they carry.

The protocol names a tensor's element type with a string (``"FP32"``, ``"BYTES"``, ...). Each
maps to one TensorFlow DataType, so a request's datatype is checked against a signature's dtype
by comparing the two, and a response names an output's dtype the same way. BYTES is TF's
string: arbitrary bytes per element. BF16 is Triton's addition to the protocol's list, which
tritonclient speaks; TF's bfloat16 carries it.

TF DataTypes with no datatype here (complex, quantized, resource, variant, the float8 and 4-bit
types) cannot travel over the protocol: model metadata names them by their TF enum name
(``"DT_COMPLEX64"``, so that no client takes them for a protocol datatype), and an infer request
for such an input or output is INVALID_ARGUMENT.

Binary tensor data (REST's binary extension and gRPC's raw contents) holds each element in
little-endian order with the numpy dtype ``binary_dtype`` gives; BYTES elements are
length-prefixed instead (``binary_tensor``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tfsfast.runtime.dtypes import DataType, to_numpy

__all__ = ["BINARY_DTYPES", "BYTES", "DATATYPES", "binary_dtype", "data_type", "datatype",
           "metadata_datatype"]

BYTES = "BYTES"

# Keyed by DataType members, which any int of the same value finds (an IntEnum).
_DATATYPES: dict[int, str] = {
    DataType.DT_BOOL: "BOOL",
    DataType.DT_UINT8: "UINT8",
    DataType.DT_UINT16: "UINT16",
    DataType.DT_UINT32: "UINT32",
    DataType.DT_UINT64: "UINT64",
    DataType.DT_INT8: "INT8",
    DataType.DT_INT16: "INT16",
    DataType.DT_INT32: "INT32",
    DataType.DT_INT64: "INT64",
    DataType.DT_HALF: "FP16",
    DataType.DT_FLOAT: "FP32",
    DataType.DT_DOUBLE: "FP64",
    DataType.DT_BFLOAT16: "BF16",
    DataType.DT_STRING: BYTES,
}
_DATA_TYPES: dict[str, DataType] = {name: DataType(dtype) for dtype, name in _DATATYPES.items()}
# Little-endian, whatever the host's order: the binary format's (None for BYTES).
_BINARY: dict[int, np.dtype] = {
    dtype: to_numpy(DataType(dtype)).newbyteorder("<") for dtype in _DATATYPES
    if dtype != DataType.DT_STRING
}


# The tables behind ``datatype`` and ``binary_dtype``, for code on every request's path that looks
# them up without a call (the compiled ModelInfer fast path); not to be modified.
DATATYPES: Mapping[int, str] = _DATATYPES
BINARY_DTYPES: Mapping[int, np.dtype] = _BINARY


def datatype(dtype: int) -> str | None:
    """The protocol's datatype for a TF DataType, or None when it has none."""
    # DataType is an IntEnum: a plain int finds its member's entry (on every request's path).
    return _DATATYPES.get(dtype)


def data_type(name: str) -> DataType | None:
    """The TF DataType of a protocol datatype (case-sensitive, as every protocol string), or
    None for a name that is not one."""
    return _DATA_TYPES.get(name)


def metadata_datatype(dtype: int) -> str:
    """What model metadata reports for a tensor of TF DataType ``dtype``: its protocol datatype,
    else the TF enum's name (``DT_COMPLEX64``)."""
    name = datatype(dtype)
    if name is not None:
        return name
    try:
        return DataType(dtype).name
    except ValueError:
        return f"DT_{int(dtype)}"


def binary_dtype(dtype: DataType) -> np.dtype | None:
    """The numpy dtype of one element of ``dtype`` in binary tensor data (little-endian), or
    None for strings (length-prefixed) and dtypes without a protocol datatype."""
    return _BINARY.get(dtype)
