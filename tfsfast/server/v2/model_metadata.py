"""Server and model metadata of the Open Inference Protocol, from a servable's signature.

Protocol-neutral: the answers are plain dicts in the protocol's JSON field names, which REST
writes as they are and the gRPC service copies into its messages (the field names are the
same); ``served_model_metadata`` resolves a served model's for both.

- Server metadata: ``name`` ``tfsfast``, ``version`` the package's, ``extensions`` the protocol
  extensions this server serves (``binary_tensor_data``, ``model_repository``, and Triton's
  ``model_configuration``; none other: no classification, shared memory or statistics
  extension).
- Model metadata: ``name``; ``versions``, the version asked for, else every AVAILABLE version
  (ascending), as strings; ``platform`` ``tensorflow_savedmodel``, what Triton reports for a
  TensorFlow SavedModel; ``inputs`` and ``outputs``, the tensors of the signature (the
  ``serving_default`` one), in alias order, each with its alias as ``name``, its ``datatype``
  (``datatypes.metadata_datatype``) and its ``shape``, -1 for a dimension the signature leaves
  unknown and ``[-1]`` for a tensor of unknown rank (the protocol has no way to say "any rank";
  one variable dimension is what a client building inputs from metadata can best use).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tfsfast import __version__
from tfsfast.core.servable_state import ManagerState
from tfsfast.runtime.signature import Signature, TensorInfo
from tfsfast.server.predict.predict_signatures import SignatureCache
from tfsfast.server.server_core import ServerCore
from tfsfast.server.v2.datatypes import metadata_datatype

__all__ = ["EXTENSIONS", "PLATFORM", "SERVER_NAME", "model_metadata", "served_model_metadata",
           "server_metadata", "tensor_metadata"]

SERVER_NAME = "tfsfast"
PLATFORM = "tensorflow_savedmodel"
# The protocol extensions served, by the names Triton's server metadata gives them.
EXTENSIONS = ("binary_tensor_data", "model_repository", "model_configuration")


def server_metadata() -> dict[str, Any]:
    """The server metadata response."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def tensor_metadata(info: TensorInfo) -> dict[str, Any]:
    """One input or output of a signature as model metadata describes it."""
    shape = [-1] if info.shape is None else [int(d) for d in info.shape]
    return {"name": info.alias, "datatype": metadata_datatype(info.dtype), "shape": shape}


def model_metadata(name: str, versions: Iterable[int], signature: Signature) -> dict[str, Any]:
    """The model metadata response for model ``name`` of ``versions``, whose interface is
    ``signature``."""
    return {
        "name": name,
        "versions": [str(v) for v in sorted(versions)],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(signature.inputs[a]) for a in sorted(signature.inputs)],
        "outputs": [tensor_metadata(signature.outputs[a]) for a in sorted(signature.outputs)],
    }


def served_model_metadata(core: ServerCore, signatures: SignatureCache, name: str,
                          version: int | None) -> dict[str, Any]:
    """The model metadata response for model ``name`` (``version``, None: the latest) as
    ``core`` serves it: the version that answers the lookup, with every other AVAILABLE one
    when none was asked for; the interface of its ``serving_default`` signature resolved
    through ``signatures``. NOT_FOUND (TF Serving's text) for a model or version not served."""
    with core.get_servable_handle(name, version, None) as handle:
        signature = signatures.of(handle.servable, handle.id).get("")
        served = handle.id.version
    if version is not None:
        versions = [served]
    else:
        states = core.servable_state_monitor.get_version_states(name)
        versions = [v for v, s in states.items()
                    if s.state.manager_state is ManagerState.AVAILABLE]
        if served not in versions:  # unloaded since the lookup: still what answered
            versions.append(served)
    return model_metadata(name, versions, signature.signature)
