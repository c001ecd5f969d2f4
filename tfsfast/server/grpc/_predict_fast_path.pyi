"""Type stubs for the compiled gRPC Predict fast path (the twin, ``_predict_fast_path_py``, holds
the contract and is typed inline)."""

from collections.abc import Callable
from typing import Any

class PredictFastPath:
    def __init__(self, find: Callable[[str, int | None, int], Any],
                 label_version: Callable[[str, str], int], costs: Any,
                 fallback: Callable[[bytes, Any], Any], enforce_method_name: bool = ...,
                 tensor_content: bool = ..., max_inline_bytes: int = ...,
                 tensors: Any = ...) -> None: ...
    def __call__(self, data: bytes, context: Any) -> Any: ...
    def answer(self, data: bytes, context: Any) -> bytes | None: ...
