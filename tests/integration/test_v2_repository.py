"""A real tfsfast process: the Open Inference Protocol's model repository extension, driven by
Triton's clients (``tritonclient.http`` here, ``tritonclient.grpc`` in a child process, as in
``test_v2_grpc``).

The repository is the directory of ``--model_base_path`` (TF Serving's container layout,
``/models/<name>``): half_plus_two is served from the start (``hp2``); ``multi`` (the
multi-input, multi-output model) is loaded and unloaded by name; ``broken`` has a version whose
SavedModel does not parse. A server polling its config file refuses load and unload; a server
with REST workers applies a load that reached a worker in the server process, so that every
process serves it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tfsfast.testing import export_models, triton_grpc_child
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

NOT_LOADED_ERROR = "Servable not found for request: Latest(multi)"
BROKEN_ERROR = "UNKNOWN: DecodeError: Error parsing message with type 'tensorflow.SavedModel'"


def _repository(root: Path, hp2: Path) -> Path:
    repository = root / "models"
    shutil.copytree(hp2, repository / "hp2" / "1")
    export_models.export_multi_io(str(repository / "multi" / "1"))
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return repository


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory,
               exported_models: dict[str, Path]) -> Path:
    return _repository(tmp_path_factory.mktemp("v2_repository"), exported_models["tf1"])


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess([f"--model_base_path={repository / 'hp2'}", "--model_name=hp2",
                        "--max_num_load_retries=0"]) as s:
        yield s


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
    yield c
    c.close()


def _error(call: Any) -> tuple[str | None, str]:
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status(), e.value.message()


def _infer_multi(client: triton.InferenceServerClient) -> dict[str, Any]:
    inputs = []
    for name, datatype, array in (("a", "FP32", np.array([[1.0, 2.0]], np.float32)),
                                  ("b", "INT64", np.array([3], np.int64)),
                                  ("s", "BYTES", np.array([b"x"], object))):
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    result = client.infer("multi", inputs, outputs=[triton.InferRequestedOutput("total")])
    return {o["name"]: result.as_numpy(o["name"]).tolist()
            for o in result.get_response()["outputs"]}


def test_index_lists_served_and_repository_models(client: triton.InferenceServerClient) -> None:
    assert client.get_model_repository_index() == [
        {"name": "broken"},
        {"name": "hp2", "version": "1", "state": "READY"},
        {"name": "multi"},
    ]


def test_load_infer_unload(server: ServerProcess, client: triton.InferenceServerClient) -> None:
    assert not _model_ready(client, "multi")
    client.load_model("multi")
    assert client.is_model_ready("multi")
    assert _infer_multi(client) == {"total": [6.0]}
    assert client.get_model_repository_index() == [
        {"name": "broken"},
        {"name": "hp2", "version": "1", "state": "READY"},
        {"name": "multi", "version": "1", "state": "READY"},
    ]
    # TF Serving's API serves it too: the load changed the config in force.
    status, body = server.json("GET", "/v1/models/multi")
    assert (status, body["model_version_status"][0]["state"]) == (200, "AVAILABLE")
    # Loading a model that is served changes nothing.
    client.load_model("multi")
    assert client.is_model_ready("multi")

    client.unload_model("multi")
    assert not _model_ready(client, "multi")
    status, body = server.json("POST", "/v1/models/multi:predict", {"instances": [1.0]})
    assert (status, body) == (404, {"error": NOT_LOADED_ERROR})
    assert client.get_model_repository_index() == [
        {"name": "broken"},
        {"name": "hp2", "version": "1", "state": "READY"},
        {"name": "multi", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
    ]
    # Unloading what is not served, but is in the repository, is done already.
    client.unload_model("multi")
    # hp2 kept serving throughout.
    status, body = server.json("POST", "/v1/models/hp2:predict", {"instances": [2.0]})
    assert (status, body) == (200, {"predictions": [3.0]})


def _model_ready(client: triton.InferenceServerClient, name: str) -> bool:
    """V2 readiness; a model outside the config is NOT_FOUND, which is not ready either."""
    try:
        return bool(client.is_model_ready(name))
    except InferenceServerException:
        return False


def test_failed_load_leaves_the_config_as_it_was(server: ServerProcess,
                                                 client: triton.InferenceServerClient) -> None:
    status, message = _error(lambda: client.load_model("broken"))
    assert status == "500"
    assert message == (f"1 model(s) did not become available: {{{{{{name: broken version: 1}} "
                       f"due to error: {BROKEN_ERROR}}}, }}")
    assert client.is_server_ready()
    index = {e["name"]: e for e in client.get_model_repository_index()}
    assert index["broken"] == {"name": "broken", "version": "1", "state": "UNAVAILABLE",
                               "reason": BROKEN_ERROR}
    # Not served; the status API shows how its load ended, as after a failed reload.
    status, body = server.json("GET", "/v1/models/broken")
    assert (status, body["model_version_status"][0]["state"]) == (200, "END")
    assert server.json("POST", "/v1/models/broken:predict", {"instances": [1.0]}) == (
        404, {"error": "Servable not found for request: Latest(broken)"})
    ready = server.json("POST", "/v2/repository/index", {"ready": True})
    assert ready == (200, [{"name": "hp2", "version": "1", "state": "READY"}])


@pytest.mark.parametrize("method, path, body, status, error", [
    ("POST", "/v2/repository/models/nope/load", None, 400,
     "Could not find base path {repository}/nope for servable nope with error NOT_FOUND: "),
    ("POST", "/v2/repository/models/nope/unload", None, 404,
     "Cannot unload model nope: it is neither served nor in the model repository"),
    ("POST", "/v2/repository/models/..%2Fmodels/load", None, 400,
     "Invalid model name '../models': a model of the repository is named by its directory, "
     "one path segment"),
    ("POST", "/v2/repository/models/multi/load", {"parameters": {"config": "{}"}}, 400,
     "Unsupported parameter 'config' to load model multi (accepted: none); a model is loaded "
     "as its directory in the repository is"),
    ("POST", "/v2/repository/models/multi/unload", {"parameters": {"x": 1}}, 400,
     "Unsupported parameter 'x' to unload model multi (accepted: 'unload_dependents'); a model "
     "is unloaded as its directory in the repository is"),
    ("POST", "/v2/repository/index", {"ready": "yes"}, 400,
     "Repository index 'ready' must be a boolean"),
    ("POST", "/v2/repository/index", "[1]", 400,
     "Malformed repository request body: expected a JSON object"),
    ("GET", "/v2/repository/index", None, 400, "Malformed request: GET /v2/repository/index"),
])
def test_bad_requests(server: ServerProcess, repository: Path, method: str, path: str,
                      body: Any, status: int, error: str) -> None:
    got_status, got = server.json(method, path, body)
    assert got_status == status
    assert got["error"].startswith(error.format(repository=repository)), got
    # The server kept serving.
    assert server.json("POST", "/v1/models/hp2:predict", {"instances": [2.0]})[0] == 200


def test_grpc_repository_calls(server: ServerProcess) -> None:
    result = triton_grpc_child.run(f"127.0.0.1:{server.grpc_port}", """
        def index():
            return [(m.name, m.version, m.state, m.reason)
                    for m in client.get_model_repository_index().models if m.name != "broken"]

        client.load_model("multi")
        loaded = (client.is_model_ready("multi"), index())
        client.unload_model("multi")
        unloaded = index()
        result = [loaded, unloaded, error(lambda: client.unload_model("nope")),
                  error(lambda: client.load_model("multi", config="{}"))]
    """)
    assert result[0] == (True, [("hp2", "1", "READY", ""), ("multi", "1", "READY", "")])
    assert result[1] == [("hp2", "1", "READY", ""), ("multi", "1", "UNAVAILABLE", "unloaded")]
    assert result[2] == ("StatusCode.NOT_FOUND", "Cannot unload model nope: it is neither "
                         "served nor in the model repository")
    assert result[3] == ("StatusCode.INVALID_ARGUMENT", "Unsupported parameter 'config' to "
                         "load model multi (accepted: none); a model is loaded as its "
                         "directory in the repository is")


def test_polled_config_file_refuses_load_and_unload(tmp_path: Path, repository: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "hp2" '
                      f'base_path: "{repository / "hp2"}" model_platform: "tensorflow" }} }}')
    with ServerProcess([f"--model_config_file={config}",
                        "--model_config_file_poll_wait_seconds=60"]) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
        try:
            for call, verb in ((lambda: client.load_model("multi"), "load"),
                               (lambda: client.unload_model("hp2"), "unload")):
                name = "multi" if verb == "load" else "hp2"
                assert _error(call) == (
                    "400", f"Cannot {verb} model {name}: the model config file {config} is "
                    f"polled every 60 s and decides which models are served; change the file "
                    f"instead")
            # The index still answers, from the config file's directory.
            assert client.get_model_repository_index() == [
                {"name": "broken"}, {"name": "hp2", "version": "1", "state": "READY"},
                {"name": "multi"}]
        finally:
            client.close()


def test_rest_workers_apply_loads_in_the_server(repository: Path) -> None:
    with ServerProcess([f"--model_base_path={repository / 'hp2'}", "--model_name=hp2",
                        "--rest_api_num_workers=2"]) as server:
        server.wait_for_log(f"serving at:localhost:{server.rest_port}")
        # Each call on a new connection, which the kernel gives to either process: whichever
        # took the load, both serve the model once it returns, and both drop it at the unload.
        for _ in range(6):
            client = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
            client.load_model("multi")
            client.close()
            for _ in range(4):
                checker = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
                server.wait_until(lambda c=checker: _model_ready(c, "multi"),
                                  "every process serves the loaded model")
                checker.close()
            client = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
            client.unload_model("multi")
            client.close()
            for _ in range(4):
                checker = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
                server.wait_until(lambda c=checker: not _model_ready(c, "multi"),
                                  "no process serves the unloaded model")
                checker.close()
