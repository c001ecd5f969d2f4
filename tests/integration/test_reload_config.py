"""A real tfsfast process: config reloads that fail answer within a bound and wedge nothing.

A reload naming a missing base path, a model that does not load, a model whose load hangs or a
malformed config file is answered with an error naming the model and the cause; the previous
config stays in force (served, in the status API and in V2 readiness); the next reload and the
config-file poller apply as usual; SIGTERM during a reload or a hung load exits 0.

A hung load is real: the version's warmup file is a FIFO nobody writes, so the load blocks in
TensorFlow's read of it. Every gRPC call carries a deadline far above what the server needs, so a
server that never answers fails the test with DEADLINE_EXCEEDED instead of hanging it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# A deadline no answer should come near: reaching it means the server did not answer.
DEADLINE = 120


def config_text(*models: tuple[str, Path]) -> str:
    entries = "".join(f'config {{ name: "{name}" base_path: "{base}" '
                      f'model_platform: "tensorflow" }} ' for name, base in models)
    return f"model_config_list {{ {entries}}}"


def reload_request(*models: tuple[str, Path]) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text(*models), request.config)
    return request


def write_atomically(path: Path, text: str) -> None:
    """Writes the config file as operators should (a rename), so the poller never reads half."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def predict(channel: grpc.Channel, name: str) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(_tensor([[2.0]]))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return list(stub.Predict(request, timeout=DEADLINE).outputs["y"].float_val)


def _tensor(value: list[list[float]]):
    import tensorflow as tf

    return tf.make_tensor_proto(value, dtype=tf.float32)


def reload_error(stub: model_service_pb2_grpc.ModelServiceStub,
                 request: model_management_pb2.ReloadConfigRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        stub.HandleReloadConfigRequest(request, timeout=DEADLINE)
    return e.value.code(), e.value.details()


def reload_ok(stub: model_service_pb2_grpc.ModelServiceStub,
              request: model_management_pb2.ReloadConfigRequest) -> None:
    response = stub.HandleReloadConfigRequest(request, timeout=DEADLINE)
    assert (response.status.error_code, response.status.error_message) == (0, "")


def version_status(server: ServerProcess, name: str) -> tuple[int, object]:
    status, body = server.json("GET", f"/v1/models/{name}")
    return status, body.get("model_version_status", body)


def ready(server: ServerProcess, path: str = "/v2/health/ready") -> int:
    return server.request("GET", path, timeout=DEADLINE)[0]


def hung_model(base: Path, exported: Path) -> Path:
    """A version whose load blocks for ever: its warmup file is a FIFO with no writer."""
    shutil.copytree(exported, base / "1")
    (base / "1" / "assets.extra").mkdir()
    os.mkfifo(base / "1" / WARMUP_FILE)
    return base


def release(base: Path) -> None:
    """Lets a hung load finish (an empty warmup file) if the server still waits on it."""
    try:
        fd = os.open(base / "1" / WARMUP_FILE, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader: the server has gone
        return
    os.close(fd)


@pytest.fixture
def models(tmp_path: Path, exported_models: dict[str, Path]) -> dict[str, Path]:
    """``a`` (y = x/2 + 2, served from the start) and ``c`` (y = x/2 + 3), with one version."""
    shutil.copytree(exported_models["tf1"], tmp_path / "a" / "1")
    shutil.copytree(exported_models["tf1_three"], tmp_path / "c" / "1")
    (tmp_path / "models.config").write_text(config_text(("a", tmp_path / "a")))
    return {"a": tmp_path / "a", "c": tmp_path / "c", "config": tmp_path / "models.config"}


def check_previous_config_serving(server: ServerProcess, channel: grpc.Channel,
                                  *unknown: str) -> None:
    """``a`` alone is served and ready; the models of the failed reload are not in the config."""
    assert predict(channel, "a") == [3.0]
    assert ready(server) == 200
    assert ready(server, "/v2/models/a/ready") == 200
    for name in unknown:
        status, _, body = server.request("GET", f"/v2/models/{name}/ready")
        assert (status, json.loads(body)) == (
            404, {"error": f"Model with name {name} does not exist."})


def test_a_missing_base_path_fails_at_once_and_the_next_reload_applies(
        tmp_path: Path, models: dict[str, Path]) -> None:
    missing = tmp_path / "missing"
    with ServerProcess([f"--model_config_file={models['config']}"]) as s, \
            grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        assert reload_error(stub, reload_request(("a", models["a"]), ("b", missing))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Could not find base path {missing} for servable b with error NOT_FOUND: "
            f"{missing}; No such file or directory")
        check_previous_config_serving(s, channel, "b")
        assert s.json("GET", "/v1/models/b") == (
            404, {"error": "Could not find any versions of model b"})
        # A model without a version yet: the caller's deadline bounds the wait, and the answer
        # comes before it, with the cause.
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(grpc.RpcError) as e:
            stub.HandleReloadConfigRequest(reload_request(("a", models["a"]), ("empty", empty)),
                                           timeout=10)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.UNKNOWN,
            f"1 model(s) did not become available: {{{{empty: no version found under base path "
            f"{empty} within the caller's deadline}}, }}")
        check_previous_config_serving(s, channel, "b", "empty")
        # The same failure again, then a good config: each is answered, the good one applied.
        assert reload_error(stub, reload_request(("b", missing)))[0] == (
            grpc.StatusCode.INVALID_ARGUMENT)
        reload_ok(stub, reload_request(("a", models["a"]), ("c", models["c"])))
        assert predict(channel, "c") == [4.0]
        assert ready(s, "/v2/models/c/ready") == 200
        assert ready(s) == 200
        assert s.stop() == 0


def test_a_model_that_fails_to_load_rolls_the_whole_reload_back(
        tmp_path: Path, models: dict[str, Path]) -> None:
    """``c`` loads and ``broken`` does not: neither enters the config, ``c`` is unloaded again,
    and the status API keeps what happened to each version."""
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    with ServerProcess([f"--model_config_file={models['config']}",
                        "--max_num_load_retries=0"]) as s, \
            grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        code, details = reload_error(stub, reload_request(
            ("a", models["a"]), ("c", models["c"]), ("broken", broken)))
        assert code == grpc.StatusCode.UNKNOWN
        # The status API keeps the failed version with TensorFlow's error, which the reload's
        # answer names.
        status, versions = version_status(s, "broken")
        assert status == 200 and len(versions) == 1 and versions[0]["state"] == "END"
        error = versions[0]["status"]
        assert error["error_code"] != "OK" and error["error_message"]
        assert details == (f"1 model(s) did not become available: {{{{{{name: broken version: 1}}"
                           f" due to error: {error['error_code']}: {error['error_message']}}}, }}")
        check_previous_config_serving(s, channel, "broken", "c")
        with pytest.raises(grpc.RpcError) as e:
            predict(channel, "c")
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(c)")
        assert version_status(s, "c") == (200, [{
            "version": "1", "state": "END", "status": {"error_code": "OK", "error_message": ""}}])
        reload_ok(stub, reload_request(("a", models["a"]), ("c", models["c"])))
        assert predict(channel, "c") == [4.0]
        assert s.stop() == 0


def test_the_poller_skips_a_malformed_file_and_a_missing_path_then_applies_a_good_one(
        tmp_path: Path, models: dict[str, Path]) -> None:
    config = models["config"]
    missing = tmp_path / "missing"
    with ServerProcess([f"--model_config_file={config}",
                        "--model_config_file_poll_wait_seconds=1"]) as s, \
            grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        read_error = ("Failed to read ModelServerConfig file: Error parsing text-format "
                      "tensorflow.serving.ModelServerConfig: ")
        write_atomically(config, "model_config_list { config { name: ")
        s.wait_for_log(read_error, DEADLINE)
        check_previous_config_serving(s, channel)
        partial = config.with_suffix(".partial")
        partial.write_bytes(b"\xff\xfe model_config_list {}")
        os.replace(partial, config)
        s.wait_for_log(f"{read_error}{config} is not UTF-8 text (byte 0)", DEADLINE)
        check_previous_config_serving(s, channel)

        write_atomically(config, config_text(("a", models["a"]), ("b", missing)))
        failure = (f"PollFilesystemAndReloadConfig failed to ReloadConfig: "
                   f"Could not find base path {missing} for servable b with error NOT_FOUND")
        s.wait_for_log(failure, DEADLINE)
        check_previous_config_serving(s, channel, "b")

        write_atomically(config, config_text(("a", models["a"]), ("c", models["c"])))
        s.wait_until(lambda: ready(s, "/v2/models/c/ready") == 200, "c to be served", DEADLINE)
        assert predict(channel, "c") == [4.0]
        assert ready(s) == 200
        assert s.stop() == 0


def test_a_hung_load_fails_its_reload_at_the_bound_and_wedges_nothing(
        tmp_path: Path, models: dict[str, Path], exported_models: dict[str, Path]) -> None:
    """With ``--reload_config_timeout_seconds=2``: an empty base path and a load that never ends
    each fail their reload at the bound; the next reload loads ``c`` although the hung load still
    holds its thread, and SIGTERM exits 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    hung = hung_model(tmp_path / "hung", exported_models["tf1"])
    s = ServerProcess([f"--model_config_file={models['config']}",
                       "--reload_config_timeout_seconds=2", "--drain_timeout_seconds=1"])
    try:
        with s, grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            assert reload_error(stub, reload_request(("a", models["a"]), ("empty", empty))) == (
                grpc.StatusCode.UNKNOWN,
                f"1 model(s) did not become available: {{{{empty: no version found under base "
                f"path {empty} within the reload timeout of 2 s}}, }}")
            assert reload_error(stub, reload_request(("a", models["a"]), ("hung", hung))) == (
                grpc.StatusCode.UNKNOWN,
                "1 model(s) did not become available: {{{name: hung version: 1} did not finish "
                "loading within the reload timeout of 2 s}, }")
            check_previous_config_serving(s, channel, "empty", "hung")
            # The status API says what the manager is doing: the load is still under way.
            assert version_status(s, "hung") == (200, [{
                "version": "1", "state": "LOADING",
                "status": {"error_code": "OK", "error_message": ""}}])
            reload_ok(stub, reload_request(("a", models["a"]), ("c", models["c"])))
            assert predict(channel, "c") == [4.0]
            assert s.process is not None
            s.process.send_signal(signal.SIGTERM)
            assert s.process.wait(DEADLINE) == 0
        check_stopped_without_the_hung_load(s)
    finally:
        release(hung)
        s.stop(signal.SIGKILL)


def check_stopped_without_the_hung_load(server: ServerProcess) -> None:
    """The shutdown ran to its end without waiting for the load that never returns."""
    assert ("Not waiting for the load of servable version {name: hung version: 1} to finish"
            in server.log)
    assert "Server stopped" in server.log


def test_sigterm_during_a_reload_waiting_on_a_hung_load_exits_zero(
        tmp_path: Path, models: dict[str, Path], exported_models: dict[str, Path]) -> None:
    """The reload (bounded at 600 s by default) is answered UNAVAILABLE at SIGTERM, the previous
    config drains, and the process exits 0 although the load never ends."""
    hung = hung_model(tmp_path / "hung", exported_models["tf1"])
    s = ServerProcess([f"--model_config_file={models['config']}", "--drain_timeout_seconds=1"])
    outcome: list[tuple[grpc.StatusCode, str]] = []
    try:
        with s, grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)

            def reload() -> None:
                outcome.append(reload_error(stub, reload_request(("a", models["a"]),
                                                                 ("hung", hung))))

            reloading = threading.Thread(target=reload)
            reloading.start()
            s.wait_for_log("Loading servable version {name: hung version: 1}", DEADLINE)
            check_previous_config_serving(s, channel, "hung")
            assert s.process is not None
            s.process.send_signal(signal.SIGTERM)
            assert s.process.wait(DEADLINE) == 0
            reloading.join(DEADLINE)
        # The reload rolls back and answers as the drain starts; the drain closes the gRPC
        # connections without waiting for ModelService calls, so an answer still on its way
        # then is replaced by grpcio's own UNAVAILABLE.
        assert len(outcome) == 1 and outcome[0] in (
            (grpc.StatusCode.UNAVAILABLE, "Config reload not applied: the server is shutting down"),
            (grpc.StatusCode.UNAVAILABLE, "Cancelling all calls"))
        assert "ReloadConfig failed: Config reload not applied: the server is shutting down" in (
            s.log)
        check_stopped_without_the_hung_load(s)
    finally:
        release(hung)
        s.stop(signal.SIGKILL)
