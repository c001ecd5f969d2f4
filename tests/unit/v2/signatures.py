"""A signature with a tensor of each kind the protocol's metadata and configuration describe:
a batch dimension, a fixed shape, an unknown rank, a scalar, and a dtype without a protocol
datatype."""

from __future__ import annotations

from tfsfast.runtime.dtypes import DataType
from tfsfast.runtime.signature import Signature, TensorInfo


def tensor_info(alias: str, dtype: DataType, shape: tuple[int, ...] | None) -> TensorInfo:
    return TensorInfo(alias, f"{alias}:0", dtype, shape)


SIGNATURE = Signature(
    "serving_default", "tensorflow/serving/predict",
    inputs={"z": tensor_info("z", DataType.DT_FLOAT, (-1, 3)),
            "a": tensor_info("a", DataType.DT_STRING, None),
            "m": tensor_info("m", DataType.DT_HALF, ())},
    outputs={"out": tensor_info("out", DataType.DT_INT64, (-1,)),
             "c": tensor_info("c", DataType.DT_COMPLEX64, (2, -1))})
