"""TF Serving's own metrics: the names, descriptions, labels and buckets of
``servables/tensorflow/util.cc``, ``saved_model_warmup_util.cc``, ``batching/batching_session.cc``
and ``batching/batching_util.h``, and the functions that record them
(``RecordModelRequestCount``, ``RecordRequestLatency``, ...), registered in the default
registry.

Where they are recorded is TF Serving's too (see each function): a dashboard built on TF
Serving's series reads the same values from tfsfast.
"""

from __future__ import annotations

import time

from tfsfast.monitoring import buckets
from tfsfast.monitoring.collection_registry import DEFAULT
from tfsfast.monitoring.metrics import Counter, CounterCell, Sampler, SamplerCell
from tfsfast.util.status import Code

__all__ = [
    "INPUT_BATCH_SIZE",
    "MODEL_WARMUP_LATENCY",
    "MODEL_WARMUP_RECORDS_READ",
    "PADDING_SIZE",
    "PROCESSED_BATCH_SIZE",
    "QUEUING_LATENCY",
    "REQUEST_COUNT",
    "REQUEST_EXAMPLE_COUNTS",
    "REQUEST_EXAMPLE_COUNT_TOTAL",
    "REQUEST_LATENCY",
    "RUNTIME_LATENCY",
    "WRAPPED_RUN_COUNT",
    "RequestRecorder",
    "record_model_request_count",
    "record_request_example_count",
    "record_request_latency",
    "record_runtime_latency",
    "record_warmup",
]

# Scale of 10 µs, power of 1.8, 33 buckets: up to ~20 minutes.
_LATENCY_BUCKETS = buckets.exponential(10, 1.8, 33)

REQUEST_EXAMPLE_COUNTS = DEFAULT.register(Sampler(
    "/tensorflow/serving/request_example_counts",
    buckets.exponential(1, 2, 15),  # [1, 2, 4, ..., 16384, DBL_MAX]
    "The number of tensorflow.Examples per request.", "model"))
REQUEST_EXAMPLE_COUNT_TOTAL = DEFAULT.register(Counter(
    "/tensorflow/serving/request_example_count_total",
    "The total number of tensorflow.Examples.", "model"))
REQUEST_COUNT = DEFAULT.register(Counter(
    "/tensorflow/serving/request_count", "The total number of requests.",
    "model_name", "status"))
RUNTIME_LATENCY = DEFAULT.register(Sampler(
    "/tensorflow/serving/runtime_latency", _LATENCY_BUCKETS,
    "Distribution of wall time (in microseconds) for Tensorflow runtime.",
    "model_name", "API", "runtime"))
REQUEST_LATENCY = DEFAULT.register(Sampler(
    "/tensorflow/serving/request_latency", _LATENCY_BUCKETS,
    "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
    "model_name", "API", "entrypoint"))
MODEL_WARMUP_LATENCY = DEFAULT.register(Sampler(
    "/tensorflow/serving/model_warmup_latency", _LATENCY_BUCKETS,
    "Distribution of wall time (in microseconds) for warming up the model.",
    "model_path", "status"))
MODEL_WARMUP_RECORDS_READ = DEFAULT.register(Counter(
    "/tensorflow/serving/model_warmup_records_read",
    "Total number of warmup records read during model warmup.", "model_path", "status"))

# Batching (BatchingSession's task name is "batching_session").
QUEUING_LATENCY = DEFAULT.register(Sampler(
    "/tensorflow/serving/batching_session/queuing_latency",
    buckets.exponential(100, 1.2, 52),  # scale 100 µs, power 1.2, 52 buckets: ~1 second
    "Distribution of wall time spent (in microseconds) in queuing", "thread_pool_name"))
WRAPPED_RUN_COUNT = DEFAULT.register(Counter(
    "/tensorflow/serving/batching_session/wrapped_run_count",
    "Total count of run calls on the wrapped session"))
_BATCH_SIZE_BUCKETS = buckets.exponential(1, 2, 14)  # [1, 2, ..., 8192, DBL_MAX]
PADDING_SIZE = DEFAULT.register(Sampler(
    "/tensorflow/serving/batching_session/padding_size", _BATCH_SIZE_BUCKETS,
    "Tracks the padding size distribution on batches.", "execution_batch_size"))
INPUT_BATCH_SIZE = DEFAULT.register(Sampler(
    "/tensorflow/serving/batching_session/input_batch_size", _BATCH_SIZE_BUCKETS,
    "Tracks the batch size distribution on the inputs."))
PROCESSED_BATCH_SIZE = DEFAULT.register(Sampler(
    "/tensorflow/serving/batching_session/processed_batch_size", _BATCH_SIZE_BUCKETS,
    "Tracks the batch size distribution on processing."))


def record_model_request_count(model_name: str, code: int) -> None:
    """One request for ``model_name`` ended with ``code``; labelled with the code's name
    (``OK``, ``NOT_FOUND``)."""
    REQUEST_COUNT.get_cell(model_name, Code(code).name).increment_by(1)


def record_request_latency(model_name: str, api: str, entrypoint: str,
                           latency_usec: int) -> None:
    """A successful request's wall time: ``api`` ``Predict``/``Classify``/``Regress`` (gRPC) or
    ``predict``/``classify``/``regress`` (REST), ``entrypoint`` ``GRPC`` or ``REST``."""
    REQUEST_LATENCY.get_cell(model_name, api, entrypoint).add(latency_usec)


def record_runtime_latency(model_name: str, api: str, runtime: str, latency_usec: int) -> None:
    RUNTIME_LATENCY.get_cell(model_name, api, runtime).add(latency_usec)


def record_request_example_count(model_name: str, count: int) -> None:
    REQUEST_EXAMPLE_COUNTS.get_cell(model_name).add(count)
    REQUEST_EXAMPLE_COUNT_TOTAL.get_cell(model_name).increment_by(count)


def record_warmup(export_dir: str, status: str, latency_usec: int, records_read: int) -> None:
    """One warmup of the version at ``export_dir``; ``status`` is TensorFlow's
    ``Status::ToString``: ``OK``, or ``<CODE>: <message>``."""
    MODEL_WARMUP_LATENCY.get_cell(export_dir, status).add(latency_usec)
    MODEL_WARMUP_RECORDS_READ.get_cell(export_dir, status).increment_by(records_read)


class RequestRecorder:
    """``RecordModelRequestCount`` and ``RecordRequestLatency`` of one entrypoint (``REST`` or
    ``GRPC``), as its request paths call them once per request: ``start`` when processing
    begins, then ``ok`` or ``error`` when the answer is known.

    The cells of the (model, API) pairs seen are kept here, so a request costs two cell updates
    and no label lookup; they are the metrics' own cells, so the page sums nothing twice.
    Thread-safe as the cells are (a race on the cache builds the same entry).
    """

    __slots__ = ("_entrypoint", "_errors", "_ok")

    def __init__(self, entrypoint: str) -> None:
        self._entrypoint = entrypoint
        self._ok: dict[tuple[str, str], tuple[CounterCell, SamplerCell]] = {}
        self._errors: dict[tuple[str, int], CounterCell] = {}

    @staticmethod
    def start() -> int:
        """The time processing began (what ``ok`` measures the latency from)."""
        return time.perf_counter_ns()

    def ok(self, model_name: str, api: str, start: int) -> None:
        """A request answered OK: ``request_count{model_name, "OK"}`` and, in µs since
        ``start``, ``request_latency{model_name, api, entrypoint}``."""
        cells = self._ok.get((model_name, api))
        if cells is None:
            cells = (REQUEST_COUNT.get_cell(model_name, "OK"),
                     REQUEST_LATENCY.get_cell(model_name, api, self._entrypoint))
            self._ok[(model_name, api)] = cells
        cells[0].increment_by(1)
        cells[1].add((time.perf_counter_ns() - start) // 1000)

    def error(self, model_name: str, code: int) -> None:
        """A request that failed with ``code``: ``request_count{model_name, <code's name>}``."""
        cell = self._errors.get((model_name, code))
        if cell is None:
            cell = REQUEST_COUNT.get_cell(model_name, Code(code).name)
            self._errors[(model_name, code)] = cell
        cell.increment_by(1)
