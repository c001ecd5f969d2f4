"""TensorFlow's own metrics that this process can read, under their TensorFlow names.

TF Serving's page shows every metric of TensorFlow's C++ ``CollectionRegistry``, since TF Serving
links TensorFlow statically and collects that registry itself. The TensorFlow pip package that
tfsfast runs on has no API that reads the C++ registry; what it offers is a reader for the
SavedModel metrics (``tensorflow/cc/saved_model/metrics.h``, through the Python bindings of
``pywrap_saved_model``), which ``LoadSavedModel`` (the loader behind the C API that loads
tfsfast's models) increments. So these are on the page, read at each collection:

- ``/tensorflow/core/saved_model/read/count`` counter {write_version}: SavedModels read, by the
  version of the API that wrote them ("1": TF1 ``SavedModelBuilder``, "2": ``tf.saved_model.save``).
- ``/tensorflow/core/saved_model/read/api`` counter {api_label}: SavedModel reads by the API that
  read them: ``cc_load`` for the C API's ``LoadSavedModel`` (the compiled runtime's), ``loader``
  for TensorFlow's Python TF1 loader (the pure-Python runtime's).

TensorFlow's other core metrics are not readable from this process and are not on the page:
``/tensorflow/cc/saved_model/load_attempt_count`` and ``load_latency`` (kept in ``loader.cc``,
outside any binding), and the runtime's ``/tensorflow/core/graph_runs``,
``graph_run_time_usecs`` and the like. tfsfast's ``runtime_latency`` and ``:tfsfast:model:*``
metrics cover what they measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfsfast.monitoring.collection_registry import DEFAULT, CollectionRegistry, Point
from tfsfast.monitoring.metrics import MetricDescriptor

__all__ = ["READ_API_LABELS", "WRITE_VERSIONS", "install_tensorflow_metrics"]

# The label values TensorFlow uses (``saved_model/metrics.cc`` and its callers): the writer's API
# version, and the API labels of the readers tfsfast's runtimes load with.
WRITE_VERSIONS = ("1", "2")
READ_API_LABELS = ("cc_load", "loader")


def _metrics_module() -> Any:
    """TensorFlow's SavedModel metric bindings, or None where this TensorFlow has none."""
    try:
        from tensorflow.python.saved_model.pywrap_saved_model import metrics
    except ImportError:
        return None
    return metrics


def install_tensorflow_metrics(registry: CollectionRegistry = DEFAULT) -> bool:
    """Registers the readable SavedModel metrics (see the module docstring); False, and nothing
    registered, when this TensorFlow does not expose them."""
    metrics = _metrics_module()
    if metrics is None:
        return False

    def read_count() -> Sequence[Point]:
        return [Point((version,), int(metrics.GetRead(write_version=version)))
                for version in WRITE_VERSIONS]

    def read_api() -> Sequence[Point]:
        return [Point((label,), int(metrics.GetReadApi(label))) for label in READ_API_LABELS]

    registry.register_collector(MetricDescriptor(
        "/tensorflow/core/saved_model/read/count",
        "The number of SavedModels successfully loaded.", ("write_version",), "cumulative",
        "int64"), read_count)
    registry.register_collector(MetricDescriptor(
        "/tensorflow/core/saved_model/read/api",
        "The API used to load the SavedModel.", ("api_label",), "cumulative", "int64"), read_api)
    return True
