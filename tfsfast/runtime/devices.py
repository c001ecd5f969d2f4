"""The GPUs this process can run models on, said once at startup.

A TensorFlow built with CUDA (the ``tensorflow`` wheel, ``tensorflow[and-cuda]`` in
Dockerfile.gpu) places a model's ops on ``GPU:0`` when a GPU is visible and on the CPU otherwise,
silently but for TensorFlow's own scattered warnings. A server that an operator believes is on a
GPU and is not serves 10-100x slower, so the server says which it is in one line. A CPU-only
TensorFlow (``tensorflow-cpu``, the default image) has nothing to say.

GPU memory: TensorFlow's allocator honours ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (set by
Dockerfile.gpu), which makes each process take the memory its models need rather than nearly
all of the GPU's, and ``--per_process_gpu_memory_fraction`` (the session's
``gpu_options.per_process_gpu_memory_fraction``), which caps it; the line reports both.
"""

from __future__ import annotations

import logging
import os
from typing import Any

_log = logging.getLogger(__name__)

NO_GPU_MESSAGE = ("No GPU found: TensorFlow is built with CUDA but sees no GPU (check the NVIDIA "
                  "driver, and --gpus all / --device nvidia.com/gpu=all for a container); "
                  "models run on the CPU")


def gpu_summary(tf: Any = None, per_process_gpu_memory_fraction: float = 0.0) -> str | None:
    """The startup line about GPUs, or None for a TensorFlow built without CUDA.

    ``tf`` is the ``tensorflow`` module (imported when None). Listing the physical devices does
    not initialise them, so the sessions the models are loaded into still configure the GPU.
    """
    if tf is None:
        import tensorflow

        tf = tensorflow
    if not tf.test.is_built_with_cuda():
        return None
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return NO_GPU_MESSAGE
    growth = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
    memory = "memory growth on" if growth else "memory growth off"
    if per_process_gpu_memory_fraction > 0:
        memory += f", at most {per_process_gpu_memory_fraction:g} of each GPU's memory"
    names = ", ".join(gpu.name.removeprefix("/physical_device:") for gpu in gpus)
    return f"Found {len(gpus)} GPU(s): {names}; models run on GPU:0 ({memory})"


def log_gpu_summary(per_process_gpu_memory_fraction: float = 0.0) -> None:
    line = gpu_summary(per_process_gpu_memory_fraction=per_process_gpu_memory_fraction)
    if line is not None:
        _log.info("%s", line)
