"""What ``model_status`` and ``model_metadata`` return, the same over REST and gRPC.

TF Serving answers these with protos (gRPC) or their JSON mapping (REST, int64 values as
strings and enums by name); the client gives both as these plain values. ``predict`` returns
numpy arrays, ``classify`` and ``regress`` lists (see the clients' docstrings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tfsfast.util.status import Code

__all__ = ["ModelMetadata", "ModelVersionStatus", "SignatureDef", "TensorInfo"]


@dataclass(frozen=True)
class ModelVersionStatus:
    """One version of a model, as ``GetModelStatusResponse.model_version_status`` has it.

    ``state`` is the ``ModelVersionStatus.State`` name (``"START"``, ``"LOADING"``,
    ``"AVAILABLE"``, ``"UNLOADING"``, ``"END"``, ``"UNKNOWN"``); ``error_code`` and
    ``error_message`` are the version's status (``OK`` and ``""`` unless its load failed).
    """

    version: int
    state: str
    error_code: Code
    error_message: str


@dataclass(frozen=True)
class TensorInfo:
    """An input or output of a signature.

    ``name``: the graph tensor (``"x:0"``; empty for sparse and composite tensors);
    ``dtype``: TF's ``DataType`` name (``"DT_FLOAT"``, ``"DT_STRING"``); ``shape``: the
    dimensions, -1 where unknown; None when even the rank is unknown.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class SignatureDef:
    """A signature: its ``method_name`` (``"tensorflow/serving/predict"`` ...) and its inputs
    and outputs by alias."""

    method_name: str
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    """``GetModelMetadata``'s answer: the model and version that answered, and the
    signatures of that version by key."""

    name: str
    version: int
    signature_defs: Mapping[str, SignatureDef]
