"""The container image, run the way TF Serving's image is run (``make image-test``).

``TFSFAST_IMAGE`` names the image to test (``make image-test`` builds ``Dockerfile`` and sets
it; ``make image-test-gpu`` does the same for ``Dockerfile.gpu`` and sets
``TFSFAST_IMAGE_GPU=1``). Without it the module is skipped: a plain ``make test`` builds no image.

The first check is TF Serving's own image test (``docker_test_lib.sh``): the documented recipe

    docker run -p 8501:8501 \\
      --mount type=bind,source=/path/to/my_model/,target=/models/my_model \\
      -e MODEL_NAME=my_model -t tensorflow/serving

waits for ``Exporting HTTP/REST API`` and expects ``{"predictions":[2.5,3.0,4.5]}`` from
half_plus_two, whitespace removed. The rest checks what tfsfast's image promises beyond it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfsfast.testing.container import Container, container_engine, host_port
from tfsfast.testing.server_process import free_port

IMAGE = os.environ.get("TFSFAST_IMAGE", "")
GPU_IMAGE = os.environ.get("TFSFAST_IMAGE_GPU", "") not in ("", "0")
ENGINE = container_engine()

pytestmark = [
    pytest.mark.skipif(not IMAGE, reason="no TFSFAST_IMAGE: run `make image-test`"),
    pytest.mark.skipif(ENGINE is None, reason="neither podman nor docker is installed"),
]

SHARED_MODEL = (Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "tfserving"
                / "saved_model_half_plus_two_cpu")
PREDICT_BODY = '{"instances": [1.0, 2.0, 5.0]}'
EXPECTED = '{"predictions":[2.5,3.0,4.5]}'
DRAIN_TIMEOUT_SECONDS = 30  # the server's default --drain_timeout_seconds


def _world_readable(root: Path) -> None:
    """The server runs as uid 1000 in the container: it must read the bind-mounted model."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        extra = stat.S_IRGRP | stat.S_IROTH
        if path.is_dir():
            extra |= stat.S_IXGRP | stat.S_IXOTH
        path.chmod(mode | extra)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<dir>/my_model/<version>`` (half_plus_two) and ``<dir>/models.config`` naming it."""
    root = tmp_path_factory.mktemp("image_models")
    model = root / "my_model"
    if SHARED_MODEL.is_dir():
        shutil.copytree(SHARED_MODEL, model)
    else:
        from tfsfast.testing import export_models

        export_models.export_half_plus_two_tf1(str(model / "1"))
    (root / "models.config").write_text(
        'model_config_list { config { name: "from_config" base_path: "/models/my_model" '
        'model_platform: "tensorflow" } }\n')
    _world_readable(root)
    root.chmod(0o755)
    for parent in root.parents:  # pytest's temporary root is 0700
        if parent == Path(tmp_path_factory.getbasetemp()).parent:
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    return root


def _request(port: int, method: str, path: str, body: str | None = None,
             timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Recipe:
    def __init__(self, container: Container, rest_port: int, grpc_port: int) -> None:
        self.container = container
        self.rest_port = rest_port
        self.grpc_port = grpc_port


@pytest.fixture(scope="module")
def recipe(models_dir: Path) -> Iterator[_Recipe]:
    """The documented recipe, with gRPC published too."""
    assert ENGINE is not None
    rest_port, grpc_port = host_port(8501), host_port(8500)
    container = Container(ENGINE, IMAGE, run_args=[
        "-p", f"{rest_port}:8501", "-p", f"{grpc_port}:8500",
        "--mount", f"type=bind,source={models_dir / 'my_model'}/,target=/models/my_model",
        "-e", "MODEL_NAME=my_model", "-t"])
    with container:
        yield _Recipe(container, rest_port, grpc_port)


def test_recipe_answers_predict(recipe: _Recipe) -> None:
    status, body = _request(recipe.rest_port, "POST", "/v1/models/my_model:predict",
                            PREDICT_BODY)
    assert status == 200
    assert EXPECTED in "".join(body.decode().split())


def test_recipe_answers_grpc_predict(recipe: _Recipe) -> None:
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "my_model"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0], [2.0], [5.0]],
                                                               np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{recipe.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).ravel().tolist() == [2.5, 3.0, 4.5]


def test_recipe_serves_health_endpoints(recipe: _Recipe) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/my_model/ready"):
        status, _ = _request(recipe.rest_port, "GET", path)
        assert (path, status) == (path, 200)
    status, _ = _request(recipe.rest_port, "GET", "/v2/models/not_served/ready")
    assert status == 404


def test_server_is_pid_1_and_not_root(recipe: _Recipe) -> None:
    """`exec` in the entrypoint: the server itself gets `docker stop`'s SIGTERM."""
    cmdline = recipe.container.exec("cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")
    assert any(part.endswith("tensorflow_model_server") for part in cmdline), cmdline
    assert "--model_base_path=/models/my_model" in cmdline
    uid = recipe.container.exec("stat", "-c", "%u:%g", "/proc/1").stdout.strip()
    assert uid == "1000:1000"
    assert recipe.container.inspect("{{.Config.User}}") == "1000:1000"


def test_image_holds_no_build_tools_sources_or_caches(recipe: _Recipe) -> None:
    probe = ("import importlib.util as u, os, sys; "
             "print(*[m for m in ('Cython', 'setuptools', 'pytest', 'tfsfast.testing') "
             "if u.find_spec(m)]); "
             "print(*[p for p in ('/src', '/root/.cache', '/tmp/pip-build') if os.path.exists(p)])")
    result = recipe.container.exec("python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["", ""]
    for tool in ("gcc", "cc", "g++", "c++"):
        found = recipe.container.exec("sh", "-c", f"command -v {tool}")
        assert found.stdout.strip() == "", f"{tool} is in the image"


def test_image_has_every_compiled_module(recipe: _Recipe) -> None:
    result = recipe.container.exec("python", "-m", "tfsfast.check_extensions")
    assert result.returncode == 0, result.stdout + result.stderr


def test_tensorflow_model_server_help_and_version(recipe: _Recipe) -> None:
    assert ENGINE is not None
    help_run = recipe.container.engine_command(
        "run", "--rm", "--entrypoint", "tensorflow_model_server", IMAGE, "--help", check=False)
    assert "--model_base_path" in help_run.stdout
    version = recipe.container.engine_command(
        "run", "--rm", "--entrypoint", "/usr/bin/tensorflow_model_server", IMAGE, "--version")
    assert version.stdout.startswith("TensorFlow ModelServer: ")
    assert "TensorFlow Library: 2." in version.stdout


@pytest.mark.skipif(not GPU_IMAGE, reason="the CPU image says nothing about GPUs")
def test_gpu_image_without_a_gpu_says_so_and_serves_on_the_cpu(recipe: _Recipe) -> None:
    logs = recipe.container.logs()
    lines = [line for line in logs.splitlines() if "No GPU found" in line]
    assert len(lines) == 1, logs
    status, body = _request(recipe.rest_port, "POST", "/v1/models/my_model:predict",
                            PREDICT_BODY)
    assert (status, "".join(body.decode().split())) == (200, EXPECTED)


def test_extra_arguments_are_appended(models_dir: Path) -> None:
    """`docker run IMAGE --model_config_file=... --enable_batching`, as with TF Serving."""
    assert ENGINE is not None
    rest_port = free_port()
    with Container(ENGINE, IMAGE, run_args=[
            "-p", f"{rest_port}:8501",
            "--mount", f"type=bind,source={models_dir},target=/models"],
            args=["--model_config_file=/models/models.config", "--enable_batching"]) as c:
        status, body = _request(rest_port, "POST", "/v1/models/from_config:predict",
                                PREDICT_BODY)
        assert (status, "".join(body.decode().split())) == (200, EXPECTED)
        status, _ = _request(rest_port, "GET", "/v1/models/my_model")
        assert status == 404  # the config file, not MODEL_NAME, chose the models
        cmdline = c.exec("cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")
        assert cmdline[-2:] == ["--model_config_file=/models/models.config",
                                "--enable_batching"]


def test_stop_drains_in_flight_requests_and_exits_zero(models_dir: Path) -> None:
    """`docker stop`: SIGTERM reaches the server, which answers what it has read, exits 0,
    well within the drain timeout (never killed at the stop timeout). The root file system is
    read-only with a tmpfs /tmp, as the Kubernetes manifests run it."""
    assert ENGINE is not None
    rest_port = free_port()
    # A request waits up to 2 s in its batch: it is in flight when SIGTERM comes.
    params = models_dir / "slow_batching.config"
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000000 }\n"
                      "num_batch_threads { value: 1 }\n")
    params.chmod(0o644)
    container = Container(ENGINE, IMAGE, run_args=[
        "-p", f"{rest_port}:8501", "--read-only", "--tmpfs", "/tmp",
        "--mount", f"type=bind,source={models_dir},target=/models",
        "-e", "MODEL_NAME=my_model"],
        args=["--enable_batching", "--batching_parameters_file=/models/slow_batching.config"])
    with container:
        answers: list[tuple[int, bytes]] = []

        def predict() -> None:
            answers.append(_request(rest_port, "POST", "/v1/models/my_model:predict",
                                    PREDICT_BODY))

        client = threading.Thread(target=predict)
        client.start()
        time.sleep(0.5)  # the request is read and waiting in its batch
        took = container.stop(timeout=DRAIN_TIMEOUT_SECONDS + 30)
        client.join(30)
        assert container.exit_code() == 0, container.logs()
        assert took < DRAIN_TIMEOUT_SECONDS, container.logs()
        assert [(s, "".join(b.decode().split())) for s, b in answers] == [(200, EXPECTED)]
        assert "Server stopped" in container.logs()
