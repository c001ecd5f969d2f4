"""The access log: its lines, what they say of a request, the thread that writes them, rotation,
one file shared by several writers, and a bounded backlog."""

from __future__ import annotations

import json
import os
import select
import shlex
import threading
from pathlib import Path
from typing import Any

import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
)

from tfsfast.server import access_log
from tfsfast.server.access_log import (
    REQUEST_PREFIX_BYTES,
    STDOUT,
    AccessLog,
    describe,
    format_line,
    grpc_model_spec,
    peer_text,
    rest_model_spec,
)
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code, ServingError

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def fields(line: str) -> dict[str, str]:
    # logfmt: shlex reads the quoted values (JSON strings of printable ASCII are shell-safe).
    return dict(token.split("=", 1) for token in shlex.split(line))


def lines_of(path: Path) -> list[dict[str, str]]:
    return [fields(line) for line in path.read_text().splitlines()]


def record(log: AccessLog, route: str, status: int = 200) -> None:
    log.record_rest(0.0, ("10.0.0.7", 53412), "GET", route.encode(), status, 0, 10)


# --- a line ------------------------------------------------------------------------------------


def test_line_is_logfmt() -> None:
    line = (1796605032.5, "10.0.0.7:53412", "REST", "POST", "/v1/models/m:predict", "m", "1",
            "200", 31, 24, 180)
    assert format_line(line) == (
        "time=2026-12-07T00:57:12.500000Z peer=10.0.0.7:53412 protocol=REST method=POST "
        "route=/v1/models/m:predict model=m version=1 status=200 bytes_in=31 bytes_out=24 "
        "latency_us=180\n")


def test_values_that_need_it_are_quoted() -> None:
    line = (0.0, "unix:", "GRPC", PREDICT, "", 'a "b"=c', "tab\there", "NOT_FOUND", 0, 0, 5)
    text = format_line(line)
    assert text == (
        'time=1970-01-01T00:00:00.000000Z peer=unix: protocol=GRPC method=' + PREDICT
        + ' route="" model="a \\"b\\"=c" version="tab\\there" status=NOT_FOUND bytes_in=0 '
        'bytes_out=0 latency_us=5\n')
    assert fields(text)["model"] == 'a "b"=c'
    # A carriage return or an escape sequence cannot break the line or reach a terminal.
    odd = format_line((0.0, "p", "REST", "GET", "/a\rb\x1b[2J", "", "", "200", 0, 0, 0))
    assert ' route="/a\\rb\\u001b[2J" ' in odd
    assert json.loads(odd.split(" route=")[1].split(" model=")[0]) == "/a\rb\x1b[2J"
    # Anything else is written as it is, UTF-8 included.
    assert " model=modèle " in format_line((0.0, "p", "REST", "GET", "/", "modèle", "", "200",
                                            0, 0, 0))


@pytest.mark.parametrize(("peer", "text"), [
    (("127.0.0.1", 5000), "127.0.0.1:5000"),
    (("::1", 5000, 0, 0), "[::1]:5000"),
    (("::ffff:10.0.0.7", 53412, 0, 0), "10.0.0.7:53412"),  # IPv4 on the dual-stack listener
    (b"ipv4:127.0.0.1:5000", "127.0.0.1:5000"),
    (b"ipv6:%5B::1%5D:5000", "[::1]:5000"),
    (b"ipv6:%5B::ffff:127.0.0.1%5D:5000", "127.0.0.1:5000"),
    ("ipv4:10.1.2.3:80", "10.1.2.3:80"),
    (b"unix:/tmp/grpc.sock", "unix:/tmp/grpc.sock"),
    (None, ""),
])
def test_peer_text(peer: object, text: str) -> None:
    assert peer_text(peer) == text


@pytest.mark.parametrize(("path", "spec"), [
    ("/v1/models/m:predict", ("m", "")),
    ("/v1/models/m/versions/3:predict", ("m", "3")),
    ("/v1/models/m/labels/stable:classify", ("m", "stable")),
    ("/v1/models/m/versions/2/metadata", ("m", "2")),
    ("/v1/models/m/metadata", ("m", "")),
    ("/v1/models/my%20model/labels/a%2Fb", ("my model", "a/b")),
    ("/V1/MODELS/m/VERSIONS/4", ("m", "4")),
    ("/v2/models/m/versions/2/infer", ("m", "2")),
    ("/v2/models/m/ready", ("m", "")),
    ("/v1/models", ("", "")),
    ("/v1/models/", ("", "")),
    ("/v2/health/ready", ("", "")),
    ("/monitoring/prometheus/metrics", ("", "")),
    ("", ("", "")),
])
def test_rest_model_spec(path: str, spec: tuple[str, str]) -> None:
    assert rest_model_spec(path) == spec


def _predict(name: str, version: int | None = None, label: str = "") -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].float_val.extend([1.0] * 100)
    return request.SerializeToString()


def _multi_inference() -> bytes:
    request = inference_pb2.MultiInferenceRequest()
    for name in ("first", "second"):
        task = request.tasks.add()
        task.model_spec.name = name
        task.model_spec.version.value = 2
        task.method_name = "tensorflow/serving/classify"
    return request.SerializeToString()


def _status(name: str, version: int) -> bytes:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    request.model_spec.version.value = version
    return request.SerializeToString()


def _reload() -> bytes:
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.add(name="m", base_path="/models/m")
    return request.SerializeToString()


def _classify() -> bytes:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "c"
    return request.SerializeToString()


@pytest.mark.parametrize(("method", "message", "spec"), [
    (PREDICT, _predict("m", 3), ("m", "3")),
    (PREDICT, _predict("m", 0), ("m", "0")),  # a version set to 0 is version 0, not none
    (PREDICT, _predict("m", -1), ("m", "-1")),
    (PREDICT, _predict("m", label="stable"), ("m", "stable")),
    (PREDICT, _predict("m"), ("m", "")),
    # The first REQUEST_PREFIX_BYTES bytes hold the tags and lengths (6 bytes), then the name.
    (PREDICT, _predict("n" * 300, 3), ("n" * (REQUEST_PREFIX_BYTES - 6), "")),
    ("/tensorflow.serving.PredictionService/Classify", _classify(), ("c", "")),
    ("/tensorflow.serving.PredictionService/MultiInference", _multi_inference(),
     ("first", "2")),
    ("/tensorflow.serving.ModelService/GetModelStatus", _status("s", 7), ("s", "7")),
    ("/tensorflow.serving.ModelService/HandleReloadConfigRequest", _reload(), ("", "")),
    ("/grpc.health.v1.Health/Check", b"\n\x01m", ("", "")),
    # The Open Inference Protocol's: model name and version in fields 1 and 2 (strings), then
    # the request's own (an id, inputs, ...).
    ("/inference.GRPCInferenceService/ModelInfer", b"\n\x01v\x12\x023a\x1a\x02idr\x00",
     ("v", "3a")),
    ("/inference.GRPCInferenceService/ModelReady", b"\n\x01v", ("v", "")),
    ("/inference.GRPCInferenceService/ModelStreamInfer", b"\n\x01v", ("", "")),
    (PREDICT, b"", ("", "")),
    (PREDICT, b"\xff\xff\xff", ("", "")),
    (PREDICT, b"\x0a\x05\x0a\x09abc", ("abc", "")),  # lengths past the end: read to the end
])
def test_grpc_model_spec(method: str, message: bytes, spec: tuple[str, str]) -> None:
    assert grpc_model_spec(method, message[:REQUEST_PREFIX_BYTES]) == spec


def test_an_entry_is_described_on_the_writer_thread() -> None:
    rest = (100.5, 100.25, ("::ffff:10.0.0.7", 53412, 0, 0), "REST", "POST",
            b"/v1/models/m/versions/2:predict?debug=1", 200, 31, 24)
    assert describe(rest, 1_796_605_000.0) == (
        1_796_605_100.5, "10.0.0.7:53412", "REST", "POST", "/v1/models/m/versions/2:predict",
        "m", "2", "200", 31, 24, 250_000)
    grpc = (7.0, 6.999, b"ipv4:127.0.0.1:4000", "GRPC", PREDICT, _predict("m", label="canary"),
            int(Code.NOT_FOUND), 120, 0)
    assert describe(grpc, 0.0) == (7.0, "127.0.0.1:4000", "GRPC", PREDICT, "", "m", "canary",
                                   "NOT_FOUND", 120, 0, 1000)
    long_route = (1.0, 1.0, None, "REST", "GET", b"/" + b"a" * 2000, 414, 0, 0)
    route = describe(long_route, 0.0)[4]
    assert route == "/" + "a" * (access_log.MAX_ROUTE_CHARS - 1) + "..."
    undecodable = (1.0, 1.0, None, "REST", "GET", b"/v1/models/\xff", 404, 0, 0)
    assert describe(undecodable, 0.0)[4:7] == ("/v1/models/\\xff", "\\xff", "")


# --- the log -----------------------------------------------------------------------------------


def test_lines_are_written_off_the_caller_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    for i in range(3):
        log.record_rest(0.0, ("10.0.0.7", 53412), "GET", f"/v1/models/m{i}".encode(), 200, 0,
                        10)
    wait_until(lambda: path.read_text().count("\n") == 3, "three lines written")
    log.record_grpc(0.0, b"ipv4:127.0.0.1:4000", PREDICT, _predict("last", 5),
                    int(Code.INVALID_ARGUMENT), 555, 0)
    log.close()  # writes what is pending
    lines = lines_of(path)
    assert [(line["protocol"], line["model"], line["version"], line["status"])
            for line in lines] == [("REST", "m0", "", "200"), ("REST", "m1", "", "200"),
                                   ("REST", "m2", "", "200"),
                                   ("GRPC", "last", "5", "INVALID_ARGUMENT")]
    assert lines[0]["peer"] == "10.0.0.7:53412" and lines[0]["route"] == "/v1/models/m0"
    assert lines[3]["method"] == PREDICT and lines[3]["bytes_in"] == "555"


@pytest.mark.parametrize("how", ["moved", "removed"])
def test_a_moved_or_removed_file_is_reopened(tmp_path: Path, how: str) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    try:
        record(log, "/a")
        wait_until(lambda: path.read_text().count("\n") == 1, "one line")
        if how == "moved":
            path.rename(tmp_path / "access.log.1")  # logrotate, create mode
        else:
            path.unlink()
        record(log, "/b")
        wait_until(lambda: path.exists() and path.read_text().count("\n") == 1,
                   "the new file's line")
    finally:
        log.close()
    assert [line["route"] for line in lines_of(path)] == ["/b"]
    if how == "moved":
        assert [line["route"] for line in lines_of(tmp_path / "access.log.1")] == ["/a"]


def test_a_truncated_file_gets_the_next_lines_at_its_start(tmp_path: Path) -> None:
    """logrotate's copytruncate: appending writes go to the new end, not past a hole."""
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    try:
        record(log, "/a")
        wait_until(lambda: path.read_text().count("\n") == 1, "one line")
        os.truncate(path, 0)
        record(log, "/b")
        wait_until(lambda: path.stat().st_size > 0, "the next line")
    finally:
        log.close()
    assert path.read_bytes().startswith(b"time=")
    assert [line["route"] for line in lines_of(path)] == ["/b"]


def test_writers_of_one_file_never_mix_their_lines(tmp_path: Path) -> None:
    """Two logs on one path, as two REST worker processes have, each from two threads."""
    path = tmp_path / "access.log"
    logs = [AccessLog(str(path)), AccessLog(str(path))]
    per_thread = 2000

    def serve(log: AccessLog, name: str) -> None:
        for i in range(per_thread):
            record(log, f"/{name}/{i}/" + "x" * (i % 300))

    threads = [threading.Thread(target=serve, args=(log, f"w{n}t{t}"))
               for n, log in enumerate(logs) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()
    routes = [line["route"] for line in lines_of(path)]
    assert len(routes) == 4 * per_thread
    for n in range(2):
        for t in range(2):
            name = f"w{n}t{t}"
            assert [r for r in routes if r.startswith(f"/{name}/")] == [
                f"/{name}/{i}/" + "x" * (i % 300) for i in range(per_thread)]


def test_every_write_is_whole_lines_within_pipe_buf(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "access.log"
    writes: list[bytes] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if threading.current_thread().name == "tfsfast_access_log":
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(access_log.os, "write", write)
    log = AccessLog(str(path), flush_seconds=3600.0)  # everything goes at close, together
    for i in range(200):
        record(log, f"/{i}/" + "x" * 100)
    # A line longer than PIPE_BUF: a route is cut at MAX_ROUTE_CHARS, but \x01 is written as
    # six characters.
    record(log, "/long/" + "\x01" * 1000)
    log.close()
    assert b"".join(writes) == path.read_bytes()
    assert len(writes) > 1
    for data in writes:
        assert data.endswith(b"\n") and data.startswith(b"time=")
        assert len(data) <= select.PIPE_BUF or data.count(b"\n") == 1
    assert any(len(data) > select.PIPE_BUF for data in writes)


def test_backlog_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    dropped = access_log.DROPPED.get_cell()
    before = dropped.value()
    # Nothing leaves before close: the backlog fills.
    log = AccessLog(str(tmp_path / "access.log"), max_pending=2, flush_seconds=3600.0)
    for i in range(5):
        record(log, f"/{i}")
    log.close()
    assert dropped.value() == before + 3
    assert [line["route"] for line in lines_of(tmp_path / "access.log")] == ["/0", "/1"]


def test_lines_a_full_disk_loses_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    dropped = access_log.DROPPED.get_cell()
    before = dropped.value()
    log = AccessLog("/dev/full", flush_seconds=3600.0)
    for i in range(3):
        record(log, f"/{i}")
    log.close()
    assert dropped.value() == before + 3
    assert "Access log /dev/full: write failed (No space left on device)" in caplog.text


def test_dash_is_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    log = AccessLog(STDOUT)
    record(log, "/v1/models/m")
    log.close()
    out = capfd.readouterr().out
    assert [fields(line)["route"] for line in out.splitlines()] == ["/v1/models/m"]
    os.fstat(1)  # standard output itself stays open


def test_a_path_that_cannot_be_opened_is_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as e:
        AccessLog(str(tmp_path / "missing" / "access.log"))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == (f"Cannot open --access_log_file {tmp_path}/missing/access.log: "
                               "No such file or directory")
