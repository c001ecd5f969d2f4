"""Warmup replay at load: valid records run, bad ones fail the load with TF Serving's errors.

Whether the records ran is read from the model itself: warmup requests that increment a counter
leave it at the sum of their increments, once per iteration.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfsfast.core.servable_id import ServableId
from tfsfast.monitoring import serving_metrics
from tfsfast.servables.saved_model_bundle_factory import (
    SavedModelBundleFactory,
    SessionBundleConfig,
)
from tfsfast.testing import runtime_models
from tfsfast.util.status import Code, ServingError

# Where TF Serving looks for a version's warmup requests.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write_warmup(version_dir: Path, logs: list[object] | None = None,
                 raw: bytes | None = None) -> None:
    import tensorflow as tf

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
        return
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs or []:
            writer.write(log.SerializeToString())


def predict_log(x: list[list[float]], alias: str = "x") -> object:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "m"
    log.predict_log.request.inputs[alias].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    return log


def increment_log(delta: float) -> object:
    """A predict record that adds ``delta`` to the counter model's counter."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "incr_counter_by"
    log.predict_log.request.inputs["delta"].CopyFrom(tf.make_tensor_proto(np.float32(delta)))
    return log


def regress_log() -> object:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    example = log.regress_log.request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(2.0)
    log.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    assert tf is not None
    return log


@pytest.fixture
def version_dir(tmp_path: Path, exported_models: dict[str, Path]) -> Path:
    target = tmp_path / "1"
    shutil.copytree(exported_models["tf1"], target)
    return target


@pytest.fixture
def counter_dir(tmp_path: Path) -> Path:
    """A version of the counter model (``incr_counter_by``, ``get_counter``), counter at 0."""
    return Path(runtime_models.export_counter(str(tmp_path / "counter" / "1")))


def load(version_dir: Path, **config: Any) -> Any:
    return SavedModelBundleFactory(SessionBundleConfig(**config)).create_saved_model_bundle(
        ServableId("m", 1), str(version_dir))


def counter(bundle: Any) -> float:
    return float(bundle.run("get_counter", {})["output"])


def test_valid_warmup_records_run_and_the_model_loads(version_dir: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    write_warmup(version_dir, [predict_log([[1.0], [2.0]]), regress_log()])
    with caplog.at_level(logging.INFO, "tfsfast.servables.saved_model_warmup"):
        bundle = load(version_dir)
    try:
        out = bundle.run("serving_default", {"x": np.array([[2.0]], np.float32)})
        assert out["y"].tolist() == [[3.0]]
    finally:
        bundle.close()
    assert any(r.getMessage().startswith(
        f"Finished reading warmup data for model at {version_dir / WARMUP_FILE}. Number of "
        f"warmup records read: 2. Elapsed time (microseconds): ") for r in caplog.records)
    # TF Serving's warmup metrics, labelled with the version's directory and the status.
    latency = serving_metrics.MODEL_WARMUP_LATENCY.get_cell(str(version_dir), "OK").value()
    assert latency.count == 1
    assert serving_metrics.MODEL_WARMUP_RECORDS_READ.get_cell(
        str(version_dir), "OK").value() == 2


@pytest.mark.parametrize(("iterations", "expected"), [(1, 11.0), (3, 33.0), (0, 11.0)])
def test_each_record_runs_num_request_iterations_times(counter_dir: Path, iterations: int,
                                                       expected: float) -> None:
    # TF Serving uses the flag only when it is positive: 0 replays each record once.
    write_warmup(counter_dir, [increment_log(1.0), increment_log(10.0)])
    bundle = load(counter_dir, num_request_iterations_for_warmup=iterations)
    try:
        assert counter(bundle) == expected
    finally:
        bundle.close()


def test_warmup_off_runs_nothing(counter_dir: Path) -> None:
    write_warmup(counter_dir, [increment_log(1.0)])
    bundle = load(counter_dir, enable_model_warmup=False)
    try:
        assert counter(bundle) == 0.0
    finally:
        bundle.close()


def test_no_warmup_file_is_fine(counter_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "tfsfast.servables.saved_model_warmup"):
        bundle = load(counter_dir)
    try:
        assert counter(bundle) == 0.0
    finally:
        bundle.close()
    assert f"No warmup data file found at {counter_dir / WARMUP_FILE}" in caplog.messages


def test_unsupported_record_type_fails_the_load(version_dir: Path) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    log.session_run_log.SetInParent()
    write_warmup(version_dir, [log])
    with pytest.raises(ServingError) as e:
        load(version_dir)
    assert e.value.code == Code.UNIMPLEMENTED
    assert e.value.message == "Unsupported log_type for warmup: 5"


def test_corrupt_warmup_file_is_data_loss(version_dir: Path) -> None:
    write_warmup(version_dir, raw=b"\x01\x02\x03 not a tfrecord at all, but long enough")
    with pytest.raises(ServingError) as e:
        load(version_dir)
    assert e.value.code == Code.DATA_LOSS
    assert e.value.message.endswith("Please verify your warmup data is in TFRecord format.")
    # The metric's status is TensorFlow's, without the advice.
    (status,) = [labels[1] for labels, cell in serving_metrics.MODEL_WARMUP_LATENCY.cells()
                 if labels[0] == str(version_dir)]
    assert status == "DATA_LOSS: " + e.value.message.removesuffix(
        ". Please verify your warmup data is in TFRecord format.")


def test_a_failed_record_records_no_metric(version_dir: Path) -> None:
    write_warmup(version_dir, [predict_log([[1.0]], alias="z")])
    with pytest.raises(ServingError):
        load(version_dir)
    assert not [labels for labels, _ in serving_metrics.MODEL_WARMUP_LATENCY.cells()
                if labels[0] == str(version_dir)]


def test_warmup_request_error_fails_the_load(version_dir: Path) -> None:
    write_warmup(version_dir, [predict_log([[1.0]], alias="z")])
    with pytest.raises(ServingError) as e:
        load(version_dir)
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message.startswith("input size does not match signature: 1!=1 len({z}) != "
                                      "len({x}). Sent extra: {z}. Missing but required: {x}.")


def test_too_many_records(version_dir: Path) -> None:
    write_warmup(version_dir, [predict_log([[1.0]])] * 1001)
    with pytest.raises(ServingError) as e:
        load(version_dir)
    assert e.value.message.startswith("Number of warmup records exceeds the maximum (1000) at ")
