"""TensorFlow's SavedModel read counters, read from TensorFlow when collected."""

from __future__ import annotations

from pathlib import Path

from tfsfast import runtime
from tfsfast.monitoring.collection_registry import CollectionRegistry
from tfsfast.monitoring.tensorflow_metrics import install_tensorflow_metrics
from tfsfast.runtime.session_options import server_session_config


def _points(registry: CollectionRegistry, name: str) -> dict[tuple[str, ...], object]:
    (metric,) = [m for m in registry.collect() if m.descriptor.name == name]
    return {p.labels: p.value for p in metric.points}


def test_a_load_counts_one_read_by_write_version_and_by_the_runtimes_api(
        exported_models: dict[str, Path]) -> None:
    registry = CollectionRegistry()
    assert install_tensorflow_metrics(registry)
    label = "cc_load" if runtime.IMPLEMENTATION == "compiled" else "loader"
    reads = _points(registry, "/tensorflow/core/saved_model/read/count")
    apis = _points(registry, "/tensorflow/core/saved_model/read/api")
    assert set(reads) == {("1",), ("2",)} and set(apis) == {("cc_load",), ("loader",)}

    session = runtime.load_saved_model(str(exported_models["tf1"]), ["serve"],
                                       server_session_config().SerializeToString())
    try:
        after = _points(registry, "/tensorflow/core/saved_model/read/count")
        assert after == {**reads, ("1",): reads[("1",)] + 1}  # type: ignore[operator]
        after_api = _points(registry, "/tensorflow/core/saved_model/read/api")
        assert after_api == {**apis, (label,): apis[(label,)] + 1}  # type: ignore[operator]
    finally:
        session.close()
