"""Binary tensor data: a tensor's elements as raw bytes, in the Open Inference Protocol's layout.

The layout of REST's binary tensor data extension and of gRPC's ``raw_input_contents`` /
``raw_output_contents``: the elements in row-major order, each in little-endian order with the
width of its datatype (BOOL one byte, 0 or 1); a BYTES element is a 4-byte little-endian length
followed by that many bytes.

``decode`` makes a flat array of ``count`` elements from such bytes: numeric data is a view of
the caller's buffer (``np.frombuffer``: no copy, and read-only over a ``bytes`` body; the runtime
only reads its inputs), strings an object array of ``bytes``. ``encode`` is the inverse for one
output. Errors are INVALID_ARGUMENT naming the tensor.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

from tfsfast.codecs.predict_format import string_bytes
from tfsfast.runtime.dtypes import DataType, to_numpy
from tfsfast.server.v2.datatypes import binary_dtype, datatype
from tfsfast.util.status import invalid_argument

__all__ = ["BinaryData", "decode", "encode"]

# What binary data is read from and written as.
BinaryData = bytes | bytearray | memoryview

_LENGTH = struct.Struct("<I")
_NATIVE_LITTLE = sys.byteorder == "little"


def decode(data: BinaryData, dtype: DataType, count: int, name: str) -> np.ndarray:
    """The ``count`` elements of input ``name`` (TF DataType ``dtype``, one the protocol has a
    datatype for) held in ``data``: all of it, nothing more."""
    element = binary_dtype(dtype)
    view = memoryview(data).cast("B")
    size = view.nbytes
    if element is not None:
        expected = count * element.itemsize
        if size != expected:
            raise invalid_argument(
                f"Input '{name}' has {count} elements of {datatype(dtype)}, which take "
                f"{expected} bytes, but its binary data has {size} bytes")
        array = np.frombuffer(view, dtype=element)
        return array if _NATIVE_LITTLE else array.astype(to_numpy(dtype))
    # Strings: every element costs at least its length prefix, which bounds what ``count`` may
    # make this allocate by the bytes actually sent.
    if count * _LENGTH.size > size:
        raise invalid_argument(
            f"Input '{name}' has {count} elements of BYTES, which take at least "
            f"{count * _LENGTH.size} bytes, but its binary data has {size} bytes")
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + _LENGTH.size > size:
            raise invalid_argument(f"Input '{name}': the binary data ends inside the length of "
                                   f"element {i}")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += _LENGTH.size
        if pos + length > size:
            raise invalid_argument(f"Input '{name}': element {i} of the binary data has length "
                                   f"{length}, but only {size - pos} bytes follow it")
        out[i] = bytes(view[pos:pos + length])
        pos += length
    if pos != size:
        raise invalid_argument(f"Input '{name}': {size - pos} bytes of the binary data follow "
                               f"its {count} elements")
    return out


def encode(array: np.ndarray, dtype: DataType) -> BinaryData:
    """The binary data of an output of TF DataType ``dtype`` (one the protocol has a datatype
    for), row-major; numeric data without a copy when ``array`` already has the layout."""
    element = binary_dtype(dtype)
    if element is not None:
        flat = np.ascontiguousarray(array, dtype=element).reshape(-1)
        # As bytes whatever the dtype: a buffer of a dtype numpy's buffer protocol has no
        # format for (bfloat16) is still its bytes.
        return flat.view(np.uint8).data
    parts: list[bytes] = []
    for x in array.reshape(-1).tolist():
        value = string_bytes(x)
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)
