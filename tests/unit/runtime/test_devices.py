"""The startup line about GPUs (tfsfast.runtime.devices).

No GPU runs here, so the GPU cases use a stand-in for the two TensorFlow calls the summary makes;
the CPU cases use the installed TensorFlow itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from tfsfast.runtime import devices


@dataclass
class _PhysicalDevice:
    name: str
    device_type: str = "GPU"


def _tensorflow(built_with_cuda: bool, gpus: list[_PhysicalDevice]) -> Any:
    return SimpleNamespace(
        test=SimpleNamespace(is_built_with_cuda=lambda: built_with_cuda),
        config=SimpleNamespace(
            list_physical_devices=lambda kind: gpus if kind == "GPU" else []))


def test_installed_tensorflow_without_a_gpu() -> None:
    import tensorflow as tf

    expected = devices.NO_GPU_MESSAGE if tf.test.is_built_with_cuda() else None
    assert not tf.config.list_physical_devices("GPU")  # this machine has none
    assert devices.gpu_summary() == expected


def test_cpu_only_tensorflow_says_nothing() -> None:
    assert devices.gpu_summary(_tensorflow(False, [])) is None


def test_cuda_tensorflow_without_a_gpu_says_so() -> None:
    assert devices.gpu_summary(_tensorflow(True, [])) == (
        "No GPU found: TensorFlow is built with CUDA but sees no GPU (check the NVIDIA driver, "
        "and --gpus all / --device nvidia.com/gpu=all for a container); models run on the CPU")


def test_gpus_are_named_with_the_memory_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    tf = _tensorflow(True, [_PhysicalDevice("/physical_device:GPU:0"),
                            _PhysicalDevice("/physical_device:GPU:1")])
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    assert devices.gpu_summary(tf, per_process_gpu_memory_fraction=0.5) == (
        "Found 2 GPU(s): GPU:0, GPU:1; models run on GPU:0 (memory growth on, at most 0.5 of "
        "each GPU's memory)")
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH")
    assert devices.gpu_summary(tf) == (
        "Found 2 GPU(s): GPU:0, GPU:1; models run on GPU:0 (memory growth off)")


def test_log_gpu_summary_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    import tensorflow as tf

    with caplog.at_level(logging.INFO, logger=devices.__name__):
        devices.log_gpu_summary()
    expected = [devices.NO_GPU_MESSAGE] if tf.test.is_built_with_cuda() else []
    assert [r.getMessage() for r in caplog.records] == expected
