"""numpy <-> serialized TensorProto for the gRPC clients: the server's compiled codec.

The client's one use of ``tfsfast.codecs.tensor_proto`` (kept here so that a change of the
codec's interface is met in one place). The compiled codec needs numpy and ``ml_dtypes`` only;
its Python twin (``TFSFAST_NO_EXTENSIONS=1``) parses with TensorFlow's protos, so a client
installed without TensorFlow must keep the compiled module (``tfsfast-client`` builds it).

Requests carry numeric tensors as ``tensor_content`` (the array's bytes, one copy) and strings in
``string_val`` (what TF Serving's own clients send). Responses are decoded with TF's rules,
typed fields or ``tensor_content`` alike; numeric arrays are read-only views of the response
where the layout allows.
"""

from __future__ import annotations

import numpy as np

from tfsfast.client.errors import Code, RequestError
from tfsfast.codecs import tensor_proto
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS
from tfsfast.runtime.dtypes import DataType
from tfsfast.util.status import ServingError

__all__ = ["decode_tensor", "dtype_name", "encode_tensor"]

# A response is bounded by the channel's message limit; the codec's default limits (2^28
# elements per tensor) are far above what it lets through.
_codec = tensor_proto.TensorProtoCodec(DEFAULT_CODEC_LIMITS)


def encode_tensor(value: object) -> bytes:
    """The serialized TensorProto of ``np.asarray(value)``; its dtype is the tensor's (str and
    bytes arrays, and object arrays of them, are DT_STRING)."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype.byteorder == ">":  # the codec knows the wire's (little-endian) dtypes only
        array = array.astype(array.dtype.newbyteorder("<"))
    try:
        return tensor_proto.encode_tensor(array, None, array.dtype.kind not in "OSU")
    except (ServingError, KeyError) as e:
        raise ValueError(f"cannot send an array of dtype {array.dtype} as a tensor") from e


def decode_tensor(data: memoryview, alias: str) -> np.ndarray:
    """The array of the serialized TensorProto ``data`` (output ``alias``)."""
    try:
        return _codec.decode_tensor(data, alias)
    except ServingError as e:
        raise RequestError(Code.INTERNAL,
                           f"malformed tensor {alias!r} in the response: {e.message}") from None


def dtype_name(value: int) -> str:
    """TF's name of a ``DataType`` value (``"DT_FLOAT"``)."""
    try:
        return DataType(value).name
    except ValueError:
        return f"DT_INVALID_{value}"
