"""Type stubs for the compiled msgpack codec (same interface as ``_msgpack_py``)."""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfsfast.codecs._json_py import PredictRequest as PredictRequest
from tfsfast.codecs.codec_limits import CodecLimits
from tfsfast.runtime.dtypes import DataType

DTYPE_NAMES: dict[str, DataType]

class MsgpackCodec:
    limits: CodecLimits
    def __init__(self, limits: CodecLimits) -> None: ...
    def parse_predict_request(
        self,
        body: bytes | bytearray | memoryview,
        input_dtypes: Callable[[str], Mapping[str, DataType]],
    ) -> PredictRequest: ...
    def read_value(self, body: bytes) -> Any: ...
    def format_predict_response(
        self,
        outputs: Mapping[str, np.ndarray],
        columnar: bool,
        output_dtypes: Mapping[str, DataType] | None = None,
    ) -> bytes: ...
    def format_error(self, message: str) -> bytes: ...
    # The fast path alone (None where the twin would take over); for tests and benchmarks.
    def _parse_fast(
        self,
        body: bytes | bytearray | memoryview,
        input_dtypes: Callable[[str], Mapping[str, DataType]],
    ) -> PredictRequest | None: ...

def parse_predict_request(
    body: bytes | bytearray | memoryview,
    input_dtypes: Callable[[str], Mapping[str, DataType]],
) -> PredictRequest: ...
def format_predict_response(
    outputs: Mapping[str, np.ndarray],
    columnar: bool,
    output_dtypes: Mapping[str, DataType] | None = None,
) -> bytes: ...
def format_error(message: str) -> bytes: ...

# The fast paths alone (None where the twin would take over), with the default limits; for tests
# and benchmarks.
def _parse_fast(
    body: bytes | bytearray | memoryview,
    input_dtypes: Callable[[str], Mapping[str, DataType]],
) -> PredictRequest | None: ...
def _format_fast(
    outputs: Mapping[str, np.ndarray],
    columnar: bool,
    output_dtypes: Mapping[str, DataType] | None = None,
) -> bytes | None: ...
