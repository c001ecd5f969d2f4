"""A real tfsfast process with ``--access_log_file``: REST and gRPC requests (TF Serving's own
stubs), SIGTERM, then exactly one line per request in the file, with what each request was."""

from __future__ import annotations

import http.client
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
ROW = json.dumps({"instances": [[1.0], [2.0]]})


def read_lines(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    # logfmt: shlex reads the quoted values (JSON strings of printable ASCII are shell-safe).
    return [dict(token.split("=", 1) for token in shlex.split(line)) for line in lines]


def predict_request(name: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.version.value = 1
    tensor = request.inputs["x"]
    tensor.dtype = 1
    tensor.float_val.append(2.0)
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 1
    return request


def test_one_line_per_request(tmp_path: Path, model_base: Callable[..., Path]) -> None:
    log = tmp_path / "access.log"
    server = ServerProcess([f"--model_base_path={model_base('m', v1='tf1')}", "--model_name=m",
                            f"--access_log_file={log}"])
    before = time.time()
    server.start()
    try:
        rest = [
            ("POST", "/v1/models/m:predict", ROW),
            ("POST", "/v1/models/nope:predict", ROW),
            ("POST", "/v1/models/m/versions/1:predict", "{not json"),
            ("GET", "/v1/models/m/labels/stable?x=1", None),
        ]
        answers = [server.request(method, path, body) for method, path, body in rest]
        assert [status for status, _, _ in answers] == [200, 404, 400, 200]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            predict = predict_request("m")
            prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict, timeout=30)
            with pytest.raises(grpc.RpcError) as missing:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                    predict_request("gone"), timeout=30)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            status_request = get_model_status_pb2.GetModelStatusRequest()
            status_request.model_spec.name = "m"
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status_request, timeout=30)
    finally:
        assert server.stop() == 0
    after = time.time()

    lines = read_lines(log)
    assert len(lines) == 7, log.read_text()
    for line in lines:
        assert list(line) == ["time", "peer", "protocol", "method", "route", "model", "version",
                              "status", "bytes_in", "bytes_out", "latency_us"]
        stamp = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before <= stamp.timestamp() <= after
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"]), line
        assert re.fullmatch(r"\d+", line["latency_us"]), line
    described = sorted((line["protocol"], line["method"], line["route"], line["model"],
                        line["version"], line["status"], int(line["bytes_in"]),
                        int(line["bytes_out"])) for line in lines)
    assert described == sorted([
        ("REST", "POST", "/v1/models/m:predict", "m", "", "200", len(ROW), len(answers[0][2])),
        ("REST", "POST", "/v1/models/nope:predict", "nope", "", "404", len(ROW),
         len(answers[1][2])),
        ("REST", "POST", "/v1/models/m/versions/1:predict", "m", "1", "400", 9,
         len(answers[2][2])),
        ("REST", "GET", "/v1/models/m/labels/stable", "m", "stable", "200", 0,
         len(answers[3][2])),
        ("GRPC", PREDICT, "", "m", "1", "OK", predict.ByteSize(), prediction.ByteSize()),
        ("GRPC", PREDICT, "", "gone", "1", "NOT_FOUND", predict_request("gone").ByteSize(), 0),
        ("GRPC", GET_MODEL_STATUS, "", "m", "", "OK", status_request.ByteSize(),
         status.ByteSize()),
    ])


def test_rest_workers_append_whole_lines_to_one_file(tmp_path: Path,
                                                    model_base: Callable[..., Path]) -> None:
    """Two processes serve the REST port, each with its own log on the same file: every request
    has its line, whole, whichever process answered it."""
    log = tmp_path / "access.log"
    server = ServerProcess([f"--model_base_path={model_base('m', v1='tf1')}", "--model_name=m",
                            f"--access_log_file={log}", "--rest_api_num_workers=2"])
    server.start()
    try:
        # Both processes serve the port once each has said so.
        server.wait_for_log("REST worker ")
        for _ in range(40):
            # A connection each: the kernel spreads connections over the processes.
            connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
            try:
                connection.request("POST", "/v1/models/m/versions/1:predict", ROW)
                response = connection.getresponse()
                assert (response.status, json.loads(response.read())) == (
                    200, {"predictions": [[2.5], [3.0]]})
            finally:
                connection.close()
    finally:
        assert server.stop() == 0
    lines = read_lines(log)
    assert sorted(line["route"] for line in lines) == ["/v1/models/m/versions/1:predict"] * 40
    assert {(line["model"], line["version"], line["status"]) for line in lines} == {
        ("m", "1", "200")}


def test_a_path_that_cannot_be_opened_stops_startup(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tfsfast", f"--model_base_path={tmp_path}",
         f"--access_log_file={tmp_path}/missing/access.log"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 255
    assert (f"Failed to start server. Error: INVALID_ARGUMENT: Cannot open --access_log_file "
            f"{tmp_path}/missing/access.log: No such file or directory") in result.stderr
