"""Model warmup: replays ``assets.extra/tf_serving_warmup_requests`` before a version serves.

The file is TF Serving's: a TFRecord of ``PredictionLog`` protos. Each record's request runs
``num_request_iterations`` times right after the bundle loads and before the version becomes
AVAILABLE, so the first real requests do not pay for lazy initialisation. Any failure fails the
load (which the manager then retries), as in TF Serving; the messages are TF Serving's.

Metrics, where TF Serving records them (``saved_model_warmup_util.cc``): a warmup that read its
file to the end (``OK``) or failed reading it (``DATA_LOSS: ...``) adds its wall time to
``/tensorflow/serving/model_warmup_latency`` and its records to ``model_warmup_records_read``,
labelled with the version's directory and the status; a warmup that stops at a bad record or a
failed run records nothing, as there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tfsfast.monitoring import serving_metrics
from tfsfast.servables.saved_model_bundle import SavedModelBundle
from tfsfast.util.status import Code, ServingError

_log = logging.getLogger(__name__)

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


class _ReadError(Exception):
    """The TFRecord file could not be read: TensorFlow's DATA_LOSS message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _records(path: str) -> Iterator[bytes]:
    import tensorflow as tf

    try:
        yield from tf.data.TFRecordDataset(path).as_numpy_iterator()
    except tf.errors.DataLossError as e:
        raise _ReadError(e.message) from None


def _serialized_examples(input_proto: Any) -> np.ndarray:
    """A classify/regress ``Input`` as the string tensor the signature's ``inputs`` takes."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        # Concatenated serialized protos merge; the example's own values win on duplicates.
        examples = [context + e.SerializeToString()
                    for e in input_proto.example_list_with_context.examples]
    else:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    out = np.empty(len(examples), dtype=object)
    out[:] = examples
    return out


def _run_record(bundle: SavedModelBundle, log: Any) -> None:
    import tensorflow as tf

    from tfsfast.servables import predict_util

    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        signature = predict_util.get_predict_signature(bundle, request.model_spec.signature_name)
        inputs = {alias: tf.make_ndarray(t) for alias, t in request.inputs.items()}
        predict_util.check_inputs_match_signature(signature, inputs)
        outputs = predict_util.resolve_output_filter(signature, list(request.output_filter))
        predict_util.run_predict(bundle, signature, inputs, outputs)
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        name = predict_util.resolve_signature_name(request.model_spec.signature_name)
        bundle.run(name, {"inputs": _serialized_examples(request.input)})
    elif kind == "multi_inference_log":
        request = log.multi_inference_log.request
        examples = _serialized_examples(request.input)
        for task in request.tasks:
            name = predict_util.resolve_signature_name(task.model_spec.signature_name)
            bundle.run(name, {"inputs": examples})
    else:
        number = log.DESCRIPTOR.fields_by_name[kind].number if kind else 0
        raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {number}")


def run_saved_model_warmup(bundle: SavedModelBundle, num_request_iterations: int = 1) -> None:
    """Replays the version's warmup file, if it has one; raises ``ServingError`` on failure."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(bundle.export_dir, WARMUP_FILE)
    if not os.path.exists(path):
        _log.info("No warmup data file found at %s", path)
        return
    start = time.monotonic()
    count = 0
    records = _records(path)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except _ReadError as e:
            serving_metrics.record_warmup(bundle.export_dir, f"DATA_LOSS: {e.message}",
                                          int((time.monotonic() - start) * 1e6), count)
            raise ServingError(Code.DATA_LOSS, f"{e.message}. Please verify your warmup data "
                                               "is in TFRecord format.") from None
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Number of warmup records exceeds the maximum "
                               f"({MAX_WARMUP_RECORDS}) at {path}")
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Failed to parse warmup record: {record[:64]!r} from {path}"
                               ) from None
        for _ in range(max(1, num_request_iterations)):
            _run_record(bundle, log)
    elapsed = int((time.monotonic() - start) * 1e6)
    serving_metrics.record_warmup(bundle.export_dir, "OK", elapsed, count)
    _log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
              "Elapsed time (microseconds): %d.", path, count, elapsed)
