"""A real tfsfast process: the V2 health endpoints, and readiness through a SIGTERM shutdown delay.

Every request here opens a fresh connection (``ServerProcess.request``), as a load balancer's
probe and a new client would: what the delay promises is that new connections are still accepted
and served while readiness is off.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfsfast.server.grpc import protos
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/m:predict"
ROW = {"instances": [[2.0]]}
ANSWER = {"predictions": [[3.0]]}
# What a request can meet once the listener closes (refused; reset in the accept queue; closed
# before the answer): no HTTP answer.
NO_ANSWER = (OSError, http.client.HTTPException)


def model_flags(tmp_path: Path, exported_models: dict[str, Path]) -> list[str]:
    base = tmp_path / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    return ["--model_name=m", f"--model_base_path={base}"]


def ready_status(server: ServerProcess) -> int:
    return server.request("GET", "/v2/health/ready", timeout=10)[0]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            return True
    except ConnectionRefusedError:
        return False


@pytest.fixture
def server(tmp_path: Path, exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    with ServerProcess(model_flags(tmp_path, exported_models)) as s:
        yield s


def test_health_endpoints_after_start(server: ServerProcess) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/m/ready",
                 "/v2/models/m/versions/1/ready"):
        status, headers, body = server.request("GET", path)
        assert (status, body, headers.get("Content-Type")) == (200, b"", None), path
    status, headers, body = server.request("GET", "/v2/models/x/ready")
    assert (status, headers["Content-Type"], json.loads(body)) == (
        404, "application/json", {"error": "Model with name x does not exist."})
    status, _, body = server.request("GET", "/v2/models/m/versions/2/ready")
    assert (status, json.loads(body)) == (404, {"error": "Could not find version 2 of model m"})
    status, _, body = server.request("POST", "/v2/health/ready", b"")
    assert (status, json.loads(body)) == (400,
                                          {"error": "Malformed request: POST /v2/health/ready"})
    status, headers, _ = server.request("GET", "/v2/models/m/health")
    assert (status, headers["Content-Type"]) == (404, "text/html")
    # Without --shutdown_delay_seconds a SIGTERM drains at once, as before.
    assert server.stop(signal.SIGTERM) == 0
    assert "Received SIGTERM: draining (up to 30 s), then exiting" in server.log


def test_shutdown_delay_serves_new_connections_with_readiness_off(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    s = ServerProcess([*model_flags(tmp_path, exported_models), "--shutdown_delay_seconds=2"])
    with s:
        assert ready_status(s) == 200
        assert s.process is not None
        s.process.send_signal(signal.SIGTERM)
        s.wait_until(lambda: ready_status(s) == 503, "readiness to turn off")
        assert ("Received SIGTERM: readiness is off; serving 2 s more (--shutdown_delay_seconds), "
                "then draining (up to 30 s) and exiting") in s.log
        # During the delay: TF Serving's API and liveness answer as before, readiness is 503.
        assert s.json("POST", PREDICT, ROW) == (200, ANSWER)
        assert s.request("GET", "/v2/health/live")[0] == 200
        assert s.request("GET", "/v2/models/m/ready")[0] == 503
        assert s.json("GET", "/v1/models/m")[0] == 200
        # Then the listener closes: new connections are refused while the process drains.
        s.wait_until(lambda: not accepts(s.rest_port), "the REST port to close")
        assert s.process.wait(60) == 0
    assert "Server stopped" in s.log


def test_drain_under_load_with_a_shutdown_delay(tmp_path: Path,
                                                exported_models: dict[str, Path]) -> None:
    """Clients loop on predict (a new connection each) while SIGTERM arrives: every request that
    got an HTTP answer got a 200, readiness stays 503 from the moment it turns off, requests
    were served with readiness off, and the process exits 0 within delay + drain timeout."""
    delay, drain = 2, 10
    s = ServerProcess([*model_flags(tmp_path, exported_models),
                       f"--shutdown_delay_seconds={delay}", f"--drain_timeout_seconds={drain}"])
    with s:
        not_ready = threading.Event()
        stop = threading.Event()
        lock = threading.Lock()
        answers: list[tuple[int, object]] = []
        answered_while_not_ready: list[int] = [0]
        unanswered: list[str] = []
        readiness: list[int] = []

        def client() -> None:
            while not stop.is_set():
                after_ready_off = not_ready.is_set()
                try:
                    answer = s.json("POST", PREDICT, ROW)
                except NO_ANSWER as e:
                    with lock:
                        unanswered.append(type(e).__name__)
                    return  # the listener is closing
                with lock:
                    answers.append(answer)
                    answered_while_not_ready[0] += after_ready_off

        def probe() -> None:
            while not stop.is_set():
                try:
                    status = ready_status(s)
                except NO_ANSWER:
                    return
                readiness.append(status)
                if status == 503:
                    not_ready.set()

        threads = [threading.Thread(target=client) for _ in range(4)]
        threads.append(threading.Thread(target=probe))
        for thread in threads:
            thread.start()
        try:
            s.wait_until(lambda: len(answers) >= 20, "the clients to get going")
            assert s.process is not None
            s.process.send_signal(signal.SIGTERM)
            code = s.process.wait(delay + drain)  # TimeoutExpired past the drain deadline
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert code == 0, s.log
        assert {status for status, _ in answers} == {200}, s.log
        assert all(body == ANSWER for _, body in answers)
        assert answered_while_not_ready[0] > 0
        # Readiness went 200 ... 200, 503 ... 503: never back once it had turned off.
        first_off = readiness.index(503)
        assert set(readiness[:first_off]) == {200} and set(readiness[first_off:]) == {503}
        # Requests after the close are refused or reset, never answered with an error.
        assert set(unanswered) <= {"ConnectionRefusedError", "ConnectionResetError",
                                   "RemoteDisconnected", "BrokenPipeError"}, unanswered


def test_a_second_sigterm_ends_the_delay(tmp_path: Path,
                                         exported_models: dict[str, Path]) -> None:
    s = ServerProcess([*model_flags(tmp_path, exported_models), "--shutdown_delay_seconds=600"])
    with s:
        assert s.process is not None
        s.process.send_signal(signal.SIGTERM)
        s.wait_until(lambda: ready_status(s) == 503, "readiness to turn off")
        assert s.json("POST", PREDICT, ROW) == (200, ANSWER)
        s.process.send_signal(signal.SIGTERM)
        # Far less than the 600 s delay: the second signal ended it.
        assert s.process.wait(120) == 0
    assert "Received SIGTERM again: ending the shutdown delay" in s.log


def test_grpc_health_is_not_serving_during_the_delay(tmp_path: Path,
                                                     exported_models: dict[str, Path]) -> None:
    request_cls = protos.message_class("grpc.health.v1.HealthCheckRequest")
    response_cls = protos.message_class("grpc.health.v1.HealthCheckResponse")
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "m"
    x = predict.inputs["x"]
    x.dtype = 1  # DT_FLOAT
    x.float_val.append(2.0)
    x.tensor_shape.dim.add().size = 1
    x.tensor_shape.dim.add().size = 1
    s = ServerProcess([*model_flags(tmp_path, exported_models), "--shutdown_delay_seconds=2",
                       "--enable_grpc_healthcheck_service"])
    with s, grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=request_cls.SerializeToString,
                                    response_deserializer=response_cls.FromString)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert check(request_cls(service=""), timeout=30).status == response_cls.SERVING
        assert s.process is not None
        s.process.send_signal(signal.SIGTERM)
        s.wait_until(lambda: check(request_cls(service=""), timeout=30).status
                     == response_cls.NOT_SERVING, "gRPC health to turn NOT_SERVING")
        # The same moment as REST readiness; Predict is still served, on a new channel too.
        assert ready_status(s) == 503
        assert check(request_cls(service="tensorflow.serving.PredictionService"),
                     timeout=30).status == response_cls.NOT_SERVING
        assert list(stub.Predict(predict, timeout=30).outputs["y"].float_val) == [3.0]
        with grpc.insecure_channel(f"localhost:{s.grpc_port}") as fresh:
            fresh_stub = prediction_service_pb2_grpc.PredictionServiceStub(fresh)
            assert list(fresh_stub.Predict(predict, timeout=30).outputs["y"].float_val) == [3.0]
        assert s.process.wait(60) == 0


def test_rest_workers_turn_not_ready_with_the_server(tmp_path: Path,
                                                     exported_models: dict[str, Path]) -> None:
    s = ServerProcess([*model_flags(tmp_path, exported_models), "--shutdown_delay_seconds=600",
                       "--rest_api_num_workers=2"])
    with s:
        s.wait_until(lambda: re.search(r"REST worker \d+ serving at", s.log) is not None,
                     "the REST worker to serve")
        assert s.process is not None
        s.process.send_signal(signal.SIGTERM)
        # The server's line and the worker's: both processes have turned readiness off.
        s.wait_until(lambda: s.log.count("readiness is off") == 2, "both processes")
        # New connections are spread over both processes: each answers not ready, and serves.
        assert {ready_status(s) for _ in range(20)} == {503}
        assert {s.json("POST", PREDICT, ROW) == (200, ANSWER) for _ in range(20)} == {True}
        # A second signal to the server ends the worker's delay too.
        s.process.send_signal(signal.SIGTERM)
        assert s.process.wait(120) == 0
    assert s.log.count("Server stopped") == 2
