"""``--rest_api_num_workers`` with config reloads: every process that serves the REST port
serves the config the server put in force (models, versions and labels), whether it came from
``HandleReloadConfigRequest`` or a poll of ``--model_config_file``, and a worker restarted later
starts from it.

Which process answered a connection is read from ``/proc`` (the process holding the server end
of its socket), so the test forces new connections until each process has answered.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.tcp_sockets import tcp_sockets

pytestmark = pytest.mark.integration

# Longest the test waits for a process to load what a reload adds (a wait, not a speed check).
WAIT_SECONDS = 120

Request = tuple[str, Any]  # (path, JSON body); every request is a POST


def serving_pid(connection: http.client.HTTPConnection, server_port: int,
                pids: list[int]) -> int:
    """The process, of ``pids``, holding the server end of ``connection`` (which it has
    accepted: the connection has been answered and is still open)."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    targets = {f"socket:[{s.inode}]" for s in tcp_sockets(server_port, client_port)}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # exited
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of {pids} holds the connection from port {client_port}")


def server_pids(server: ServerProcess, workers: int, replaced: tuple[int, ...] = ()
                ) -> list[int]:
    """The server process and its REST workers, once ``workers`` of them, none of
    ``replaced``, serve (a worker's latest process, for a worker restarted)."""
    assert server.process is not None
    live: list[int] = []

    def serving() -> bool:
        started = dict(re.findall(r"Started REST worker (\d+) \(pid (\d+)\)", server.log))
        serving = set(re.findall(r"REST worker (\d+) serving at", server.log))
        live[:] = [int(pid) for pid in started.values() if pid in serving]
        return len(live) == workers and not set(live) & set(replaced)

    server.wait_until(serving, f"{workers} REST workers to serve", WAIT_SECONDS)
    return [server.process.pid, *live]


def answers(server: ServerProcess, requests: list[Request]
            ) -> tuple[http.client.HTTPConnection, list[tuple[int, Any]]]:
    """The answers to ``requests`` on one new connection, left open."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    got = []
    for path, body in requests:
        connection.request("POST", path, json.dumps(body))
        response = connection.getresponse()
        got.append((response.status, json.loads(response.read())))
    return connection, got


def wait_until_every_process_answers(server: ServerProcess, pids: list[int],
                                     requests: list[Request],
                                     expected: list[tuple[int, Any]]) -> None:
    """Opens new connections until each process of ``pids`` has answered ``requests`` with
    ``expected``."""
    pending = set(pids)
    last: dict[int, list[tuple[int, Any]]] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while pending:
        assert time.monotonic() < deadline, (
            f"processes {sorted(pending)} did not answer {expected}; last answers: {last}\n"
            f"{server.log}")
        connection, got = answers(server, requests)
        try:
            pid = serving_pid(connection, server.rest_port, pids)
        finally:
            connection.close()
        last[pid] = got
        if got == expected:
            pending.discard(pid)


def predict(path: str) -> Request:
    return path, {"instances": [[2.0]]}


def not_found(spec: str) -> tuple[int, Any]:
    return 404, {"error": f"Servable not found for request: {spec}"}


def write_atomically(path: Path, text: str) -> None:
    """The config poller never reads a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def model_config(name: str, base: Path, extra: str = "") -> str:
    return (f'model_config_list {{ config {{ name: "{name}" base_path: "{base}" '
            f'model_platform: "tensorflow" {extra} }} }}\n')


@pytest.fixture
def two_models(tmp_path: Path, exported_models: dict[str, Path]) -> Path:
    shutil.copytree(exported_models["tf1"], tmp_path / "half_plus_two" / "1")
    shutil.copytree(exported_models["tf1_three"], tmp_path / "half_plus_three" / "1")
    return tmp_path


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        assert server.stop() == 0


def test_rest_workers_serve_a_grpc_reload(two_models: Path,
                                          stopped_at_the_end: list[ServerProcess]) -> None:
    config = two_models / "models.config"
    config.write_text(model_config("half_plus_two", two_models / "half_plus_two"))
    s = ServerProcess([f"--model_config_file={config}", "--rest_api_num_workers=2"]).start()
    stopped_at_the_end.append(s)
    pids = server_pids(s, workers=1)
    wait_until_every_process_answers(s, pids, [predict("/v1/models/half_plus_two:predict")],
                                     [(200, {"predictions": [[3.0]]})])

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(model_config("half_plus_three", two_models / "half_plus_three"),
                      request.config)
    with grpc.insecure_channel(f"localhost:{s.grpc_port}") as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=WAIT_SECONDS)
    assert response.status.error_code == 0
    # The model the reload adds answers on every process, and the one it drops on none.
    wait_until_every_process_answers(
        s, pids, [predict("/v1/models/half_plus_three:predict"),
                  predict("/v1/models/half_plus_two:predict")],
        [(200, {"predictions": [[4.0]]}), not_found("Latest(half_plus_two)")])


def test_rest_workers_serve_the_polled_config_file_and_restart_from_it(
        tmp_path: Path, exported_models: dict[str, Path],
        stopped_at_the_end: list[ServerProcess]) -> None:
    base = tmp_path / "m"
    shutil.copytree(exported_models["tf1"], base / "1")  # 3.0 for 2.0
    shutil.copytree(exported_models["tf1_three"], base / "2")  # 4.0 for 2.0
    config = tmp_path / "models.config"
    write_atomically(config, model_config("m", base, "model_version_policy { all {} }"))
    s = ServerProcess([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                       "--rest_api_num_workers=2"]).start()
    stopped_at_the_end.append(s)
    pids = server_pids(s, workers=1)
    wait_until_every_process_answers(
        s, pids, [predict("/v1/models/m/versions/1:predict")], [(200, {"predictions": [[3.0]]})])

    # Labels: assigned once the versions are AVAILABLE, on every process.
    labelled = "model_version_policy { all {} } version_labels { key: 'stable' value: 1 }"
    write_atomically(config, model_config("m", base, labelled))
    stable = [predict("/v1/models/m/labels/stable:predict")]
    wait_until_every_process_answers(s, pids, stable, [(200, {"predictions": [[3.0]]})])

    # Versions: the policy now serves version 1 alone.
    pinned = ("model_version_policy { specific { versions: 1 } } "
              "version_labels { key: 'stable' value: 1 }")
    write_atomically(config, model_config("m", base, pinned))
    wait_until_every_process_answers(
        s, pids, [predict("/v1/models/m:predict"), predict("/v1/models/m/versions/2:predict")],
        [(200, {"predictions": [[3.0]]}), not_found("Specific(m, 2)")])

    # A worker that dies is started again by the server, from the config in force: its label
    # too, although a fresh process has no version AVAILABLE to label when it starts.
    os.kill(pids[1], signal.SIGKILL)
    pids = server_pids(s, workers=1, replaced=(pids[1],))
    wait_until_every_process_answers(
        s, pids, [*stable, predict("/v1/models/m/versions/2:predict")],
        [(200, {"predictions": [[3.0]]}), not_found("Specific(m, 2)")])
