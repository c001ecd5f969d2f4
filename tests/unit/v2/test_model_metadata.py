"""Server and model metadata from a signature."""

from __future__ import annotations

from tfsfast import __version__
from tfsfast.server.v2 import model_metadata

from .signatures import SIGNATURE


def test_server_metadata() -> None:
    assert model_metadata.server_metadata() == {
        "name": "tfsfast", "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository", "model_configuration"]}


def test_model_metadata_in_alias_order_with_v2_datatypes_and_shapes() -> None:
    assert model_metadata.model_metadata("m", [3, 1, 12], SIGNATURE) == {
        "name": "m",
        "versions": ["1", "3", "12"],
        "platform": "tensorflow_savedmodel",
        "inputs": [
            {"name": "a", "datatype": "BYTES", "shape": [-1]},  # unknown rank
            {"name": "m", "datatype": "FP16", "shape": []},
            {"name": "z", "datatype": "FP32", "shape": [-1, 3]},
        ],
        "outputs": [
            {"name": "c", "datatype": "DT_COMPLEX64", "shape": [2, -1]},
            {"name": "out", "datatype": "INT64", "shape": [-1]},
        ],
    }
