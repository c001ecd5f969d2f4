"""A real tfsfast process, driven over HTTP: predict, status, errors, version swaps, shutdown."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.test_util import tfserving_testdata
from tfsfast.testing.wait import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]):
    base = tmp_path_factory.mktemp("served") / "half_plus_two"
    shutil.copytree(exported_models["tf2"], base / "1")
    with ServerProcess(["--model_name=half_plus_two", f"--model_base_path={base}"]) as s:
        yield s


def test_predict_row_format_answers_like_tf_serving(server: ServerProcess) -> None:
    status, _, body = server.request("POST", "/v1/models/half_plus_two:predict",
                                     '{"instances": [1.0, 2.0, 5.0]}')
    assert status == 200
    assert json.loads(body) == {"predictions": [2.5, 3.0, 4.5]}
    # TF Serving's own Docker test compares the body with whitespace removed.
    assert b'{"predictions":[2.5,3.0,4.5]}' in body.replace(b" ", b"").replace(b"\n", b"")


def test_startup_says_once_whether_models_run_on_a_gpu(server: ServerProcess) -> None:
    """This machine has no GPU: a CUDA-built TensorFlow is said to serve on the CPU, once."""
    import tensorflow as tf

    from tfsfast.runtime.devices import NO_GPU_MESSAGE

    lines = [line for line in server.log_lines if "GPU" in line and "tfsfast/" in line]
    expected = 1 if tf.test.is_built_with_cuda() else 0
    assert [line.endswith(NO_GPU_MESSAGE) for line in lines] == [True] * expected


def test_startup_says_which_implementations_run(server: ServerProcess) -> None:
    """One line, a module family at a time: all compiled, or all pure-Python twins when
    TFSFAST_NO_EXTENSIONS says so (a twin otherwise would be a broken build)."""
    from tfsfast import _extensions

    [line] = [line for line in server.log_lines if "Implementations: " in line]
    listed = line.split("Implementations: ", 1)[1]
    if _extensions.NO_EXTENSIONS:
        listed = listed.removesuffix(" (TFSFAST_NO_EXTENSIONS is set)")
    families = dict(item.split("=") for item in listed.split(", "))
    assert {"codecs.json", "runtime.session", "server.grpc.fast_unary",
            "server.http.http_protocol"} <= set(families)
    assert set(families.values()) == {"twin" if _extensions.NO_EXTENSIONS else "compiled"}


def test_predict_columnar_and_versions(server: ServerProcess) -> None:
    assert server.json("POST", "/v1/models/half_plus_two/versions/1:predict",
                       {"inputs": [1.0, 2.0]}) == (200, {"outputs": [2.5, 3.0]})
    assert server.json("POST", "/V1/MODELS/half_plus_two:predict",
                       {"inputs": {"x": [2.0]}}) == (200, {"outputs": [3.0]})


def test_status(server: ServerProcess) -> None:
    status, headers, body = server.request("GET", "/v1/models/half_plus_two")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]}
    assert server.json("GET", "/v1/models/half_plus_two/versions/1")[0] == 200


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/half_plus_two/versions/7:predict", '{"instances": [1.0]}', 404,
     "Servable not found for request: Specific(half_plus_two, 7)"),
    ("POST", "/v1/models/half_plus_two/labels/canary:predict", '{"instances": [1.0]}', 400,
     "Unrecognized servable version label: canary"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/half_plus_two/versions/9", None, 404,
     "Could not find version 9 of model half_plus_two"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("PUT", "/v1/models/half_plus_two:predict", "{}", 400,
     "Malformed request: PUT /v1/models/half_plus_two:predict"),
    ("GET", "/v1/models/half_plus_two:predict", None, 400,
     "Malformed request: GET /v1/models/half_plus_two:predict"),
    ("POST", "/v1/models/half_plus_two/versions/18446744073709551615:predict", "{}", 400,
     "Failed to convert version: 18446744073709551615 to numeric."),
    ("POST", "/v1/models/half_plus_two:predict", "", 400,
     "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/half_plus_two:predict", '{"instances": [1.0,', 400, "JSON Parse error"),
    ("POST", "/v1/models/half_plus_two:predict", '{"instances": [{"z": 1.0}]}', 400,
     "Failed to process element: 0 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "object: does not have named input: z"),
    ("POST", "/v1/models/half_plus_two:predict", '{"instances": [{"x": 1.0}, {}]}', 400,
     "Failed to process element: 1 of 'instances' list. JSON object: {} keys must be equal "
     "to: x"),
    ("POST", "/v1/models/half_plus_two:predict", '{"inputs": {"z": [1.0]}}', 400,
     "Missing named input: x in 'inputs' object."),
    ("POST", "/v1/models/half_plus_two:predict",
     '{"signature_name": "nope", "instances": [1.0]}', 400,
     'Serving signature name: "nope" not found in signature def'),
])
def test_errors_have_tf_serving_status_and_message(server: ServerProcess, method: str, path: str,
                                                   body: str | None, status: int,
                                                   error: str) -> None:
    got_status, headers, payload = server.request(method, path, body)
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    message = json.loads(payload)["error"]
    assert message.startswith(error), message
    # The server keeps serving after every error.
    assert server.json("POST", "/v1/models/half_plus_two:predict",
                       {"instances": [2.0]}) == (200, {"predictions": [3.0]})


def test_unrouted_path_is_a_plain_404(server: ServerProcess) -> None:
    status, headers, _ = server.request("GET", "/nothing/here")
    assert status == 404 and "json" not in headers.get("Content-Type", "")


def test_oversized_body_is_refused_with_413(server: ServerProcess) -> None:
    status, _, payload = server.request(
        "POST", "/v1/models/half_plus_two:predict", b"x",
        headers={"Content-Length": str(1 << 40)})
    assert status == 413
    assert "--rest_api_max_body_bytes" in json.loads(payload)["error"]


@pytest.mark.parametrize("export", ["saved_model_half_plus_two_cpu",
                                    "saved_model_half_plus_two_tf2_cpu"])
def test_serves_tf_serving_test_exports(export: str) -> None:
    base = tfserving_testdata(export)
    body = ('{"instances": [[1.0], [2.0], [5.0]]}' if export.endswith("_cpu")
            and "tf2" not in export else '{"instances": [[1.0]]}')
    want = [[2.5], [3.0], [4.5]] if "tf2" not in export else [[2.5]]
    with ServerProcess(["--model_name=m", f"--model_base_path={base}"]) as s:
        assert s.json("POST", "/v1/models/m:predict", body) == (200, {"predictions": want})
        assert s.json("GET", "/v1/models/m")[1]["model_version_status"][0]["version"] == "123"


def test_new_version_is_served_with_no_failed_request(tmp_path: Path,
                                                      exported_models: dict[str, Path]) -> None:
    """A client loops on predict while a new version directory is copied in (not atomically)."""
    base = tmp_path / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    with ServerProcess(["--model_name=m", f"--model_base_path={base}",
                        "--file_system_poll_wait_seconds=1"]) as s:
        results: list[tuple[int, object]] = []
        switched = threading.Event()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                status, body = s.json("POST", "/v1/models/m:predict", {"instances": [[2.0]]})
                results.append((status, body))
                if body == {"predictions": [[4.0]]}:
                    switched.set()

        thread = threading.Thread(target=client)
        thread.start()
        try:
            shutil.copytree(exported_models["tf1_three"], base / "2")
            assert switched.wait(60), s.log
            # Keep going a little after the switch, across the unload of version 1.
            for _ in range(50):
                s.json("GET", "/v1/models/m")
        finally:
            stop.set()
            thread.join()
        failures = [r for r in results if r[0] != 200]
        assert failures == []
        assert {json.dumps(b) for _, b in results} <= {'{"predictions": [[3.0]]}',
                                                       '{"predictions": [[4.0]]}'}
        versions = s.json("GET", "/v1/models/m")[1]["model_version_status"]
        assert [(v["version"], v["state"]) for v in versions] == [("2", "AVAILABLE"),
                                                                  ("1", "END")]


def test_sigterm_drains_and_exits_zero(exported_models: dict[str, Path], tmp_path: Path) -> None:
    base = tmp_path / "m"
    shutil.copytree(exported_models["tf2"], base / "1")
    s = ServerProcess(["--model_name=m", f"--model_base_path={base}"]).start()
    assert s.json("POST", "/v1/models/m:predict", {"instances": [2.0]})[0] == 200
    assert s.stop(signal.SIGTERM) == 0
    assert "Server stopped" in s.log


def run_cli(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfsfast", *flags], capture_output=True,
                          text=True, timeout=120, env=env)


def test_startup_errors_exit_255_with_tf_serving_text() -> None:
    result = run_cli("--rest_api_port=0")
    assert result.returncode == 255
    assert ("Failed to start server. Error: INVALID_ARGUMENT: Both "
            "server_options.model_base_path and server_options.model_config_file are empty!"
            ) in result.stderr


def test_unserved_flag_stops_startup_naming_the_flag(tmp_path: Path) -> None:
    result = run_cli("--platform_config_file=/p", f"--model_base_path={tmp_path}")
    assert result.returncode == 255
    assert "--platform_config_file is not supported by tfsfast" in result.stderr


def test_unreadable_monitoring_config_stops_startup(tmp_path: Path) -> None:
    result = run_cli("--monitoring_config_file=/nonexistent", f"--model_base_path={tmp_path}")
    assert result.returncode == 255
    assert ("Failed to start server. Error: INVALID_ARGUMENT: Could not read "
            "--monitoring_config_file /nonexistent: No such file or directory") in result.stderr


def test_version_flag() -> None:
    import re

    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"TensorFlow ModelServer: (2\.21\.\S+)\+tfsfast\.(\S+)\n"
                        r"TensorFlow Library: \1\ntfsfast: \2\n", result.stdout), result.stdout


def _tflite_base(tmp_path: Path) -> Path:
    from tfsfast.testing.runtime_models import export_half_plus_two_tf1, export_tflite_half_plus_two

    base = tmp_path / "tflite"
    version = base / "1"
    export_half_plus_two_tf1(str(version))  # a SavedModel beside it: the flag picks the .tflite
    export_tflite_half_plus_two(str(tmp_path / "lite"))
    shutil.copy(tmp_path / "lite" / "model.tflite", version / "model.tflite")
    return base


def test_prefer_tflite_model_serves_the_tflite_file(tmp_path: Path) -> None:
    base = _tflite_base(tmp_path)
    with ServerProcess(["--model_name=m", f"--model_base_path={base}", "--prefer_tflite_model",
                        "--num_tflite_pools=2"]) as s:
        status, body = s.json("POST", "/v1/models/m:predict", {"instances": [[2.0]]})
        assert (status, body) == (200, {"predictions": [[3.0]]})


def test_tf_serving_tflite_export() -> None:
    base = tfserving_testdata("saved_model_half_plus_two_tflite")
    with ServerProcess(["--model_name=m", f"--model_base_path={base}",
                        "--prefer_tflite_model"]) as s:
        status, body = s.json("POST", "/v1/models/m:predict", {"instances": [[2.0]]})
        assert (status, body) == (200, {"predictions": [[3.0]]})


def test_rest_workers_share_the_port_and_stop_with_the_server(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    import os
    import re

    base = tmp_path / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    s = ServerProcess(["--model_name=m", f"--model_base_path={base}",
                       "--rest_api_num_workers=2"]).start()
    try:
        match = re.search(r"REST worker (\d+) serving at", s.wait_for_log("serving at", 120))
        assert match is not None
        worker_pid = int(match.group(1))
        # Both processes answer on the one port; every answer is right.
        for _ in range(40):
            assert s.json("POST", "/v1/models/m:predict", {"instances": [[2.0]]}) == (
                200, {"predictions": [[3.0]]})
    finally:
        assert s.stop() == 0

    def worker_gone() -> bool:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(worker_gone, "the REST worker to end with the server")
