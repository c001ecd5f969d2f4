"""Type stub of the compiled runtime (``_session.pyx``); its twin is ``_session_py``."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfsfast.runtime.signature import Signature

IMPLEMENTATION: str
TENSOR_ALIGNMENT: int
STAGE_MAX_BYTES: int

class TensorBuffer:
    """Owns the TF_Tensor an output array is built on (the array's ``base``)."""

class SavedModelSession:
    signatures: dict[str, Signature]
    meta_graph_def: Any
    export_dir: str
    def __init__(self, export_dir: str, tags: Sequence[str],
                 session_config: bytes | Any | None = None) -> None: ...
    def run(self, signature_key: str, inputs: Mapping[str, np.ndarray],
            output_aliases: Sequence[str] | None = None,
            timeout_in_ms: float = 0) -> dict[str, np.ndarray]: ...
    def run_signature(self, signature: Any, inputs: Mapping[str, np.ndarray],
                      output_aliases: Sequence[str] | None = None,
                      timeout_in_ms: float = 0) -> dict[str, np.ndarray]: ...
    def close(self) -> None: ...

def load_saved_model(export_dir: str, tags: Sequence[str],
                     session_config: bytes | Any | None = None) -> SavedModelSession: ...
