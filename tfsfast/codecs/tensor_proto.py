"""The gRPC TensorProto codec: compiled, or its Python twin.

``TensorProtoCodec(limits).decode_tensor(data, name, budget)`` (serialized TensorProto ->
ndarray, TF's ``Tensor::FromProto`` rules, within the ``CodecLimits``), ``encode_tensor(array,
dtype, tensor_content)`` (ndarray -> serialized TensorProto, TF's
``AsProtoField``/``AsProtoTensorContent``), ``decode_predict_request`` /
``encode_predict_response`` (the prediction service's wire-level request and response).
``to_ndarray`` / ``from_ndarray`` work on TensorProto *messages* for callers that already hold
one (warmup records, tests), with the default limits. See ``_tensor_proto_py`` for the full
contract. ``IMPLEMENTATION`` says which runs (``"compiled"`` or ``"python"``);
``TFSFAST_NO_EXTENSIONS=1`` selects the twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfsfast import _extensions
from tfsfast.codecs.codec_limits import DEFAULT_CODEC_LIMITS, CodecLimits

_impl = _extensions.load("tfsfast.codecs._tensor_proto", "tfsfast.codecs._tensor_proto_py")
IMPLEMENTATION: str = _extensions.implementation(_impl)

if TYPE_CHECKING or _extensions.NO_EXTENSIONS:
    from tfsfast.codecs._tensor_proto_py import (
        PredictRequestView,
        TensorProtoCodec,
        decode_predict_request,
        encode_predict_response,
        encode_tensor,
    )
else:
    PredictRequestView = _impl.PredictRequestView
    TensorProtoCodec = _impl.TensorProtoCodec
    encode_tensor = _impl.encode_tensor
    decode_predict_request = _impl.decode_predict_request
    encode_predict_response = _impl.encode_predict_response

_default = TensorProtoCodec(DEFAULT_CODEC_LIMITS)


def to_ndarray(proto: Any, name: str = "") -> np.ndarray:
    """The array a TensorProto message holds (what ``tf.make_ndarray`` does, TF's rules)."""
    return _default.decode_tensor(proto.SerializeToString(), name)


def from_ndarray(array: np.ndarray, dtype: int | None = None,
                 tensor_content: bool = False) -> Any:
    """A TensorProto message for ``array`` (see ``encode_tensor``)."""
    from tensorflow.core.framework import tensor_pb2

    return tensor_pb2.TensorProto.FromString(encode_tensor(array, dtype, tensor_content))


__all__ = [
    "IMPLEMENTATION",
    "CodecLimits",
    "PredictRequestView",
    "TensorProtoCodec",
    "decode_predict_request",
    "encode_predict_response",
    "encode_tensor",
    "from_ndarray",
    "to_ndarray",
]
