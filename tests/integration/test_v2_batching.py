"""A real tfsfast process with --enable_batching: Open Inference Protocol and ``/v1`` requests for
one signature go to the same batch queue, and every request gets exactly its own rows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfsfast.testing import export_models
from tfsfast.testing.server_process import ServerProcess

pytestmark = pytest.mark.integration

HEADER = "Inference-Header-Content-Length"


def _serve(tmp_path_factory: pytest.TempPathFactory, exported: Path,
           params: str) -> ServerProcess:
    root = tmp_path_factory.mktemp("v2_batching")
    shutil.copytree(exported, root / "hp2" / "1")
    export_models.export_multi_io(str(root / "multi" / "1"))
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("hp2", "multi")) + "}\n")
    (root / "batching.txt").write_text(params)
    return ServerProcess([f"--model_config_file={config}", "--enable_batching",
                          f"--batching_parameters_file={root / 'batching.txt'}",
                          "--rest_api_timeout_in_ms=600000", "--rest_api_num_threads=48"])


@pytest.fixture(scope="module")
def pairing_server(tmp_path_factory: pytest.TempPathFactory,
                   exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    """Batches of exactly two rows that wait for their second row for as long as a request may
    (ten minutes): a one-row request is answered only once another joins its queue."""
    with _serve(tmp_path_factory, exported_models["tf2"],
                "max_batch_size { value: 2 }\n"
                "batch_timeout_micros { value: 600000000 }\n"
                "max_enqueued_batches { value: 100 }\n"
                "num_batch_threads { value: 1 }\n") as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           exported_models: dict[str, Path]) -> Iterator[ServerProcess]:
    with _serve(tmp_path_factory, exported_models["tf2"],
                "max_batch_size { value: 16 }\n"
                "batch_timeout_micros { value: 2000 }\n"
                "max_enqueued_batches { value: 1000 }\n"
                "num_batch_threads { value: 2 }\n"
                "allowed_batch_sizes: 4\n"
                "allowed_batch_sizes: 16\n") as s:
        yield s


def _v1(server: ServerProcess, rows: list[float]) -> tuple[int, Any]:
    return server.json("POST", "/v1/models/hp2:predict", {"instances": rows})


def _v2_json(server: ServerProcess, rows: list[float]) -> tuple[int, Any]:
    return server.json("POST", "/v2/models/hp2/infer", {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows)], "data": rows}]})


def _v2_binary(server: ServerProcess, rows: list[float]) -> tuple[int, list[float]]:
    data = np.array(rows, "<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows)],
                    "parameters": {"binary_data_size": len(data)}}],
        "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = server.request("POST", "/v2/models/hp2/infer", header + data,
                                           {HEADER: str(len(header))})
    length = int(headers[HEADER])
    assert json.loads(body[:length])["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [len(rows)],
         "parameters": {"binary_data_size": len(data)}}]
    return status, np.frombuffer(body[length:], "<f4").tolist()


def test_a_v2_and_a_v1_request_complete_one_batch(pairing_server: ServerProcess) -> None:
    """Each alone would wait ten minutes for a second row: they answer because they share the
    queue, whichever comes first."""
    with ThreadPoolExecutor(2) as pool:
        v2 = pool.submit(_v2_json, pairing_server, [4.0])
        v1 = pool.submit(_v1, pairing_server, [6.0])
        assert v2.result() == (200, {"model_name": "hp2", "model_version": "1", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1], "data": [4.0]}]})
        assert v1.result() == (200, {"predictions": [5.0]})


def test_a_v2_request_for_some_outputs_still_joins_the_batch(
        pairing_server: ServerProcess) -> None:
    """An output subset would make the run bypass the batcher (TF Serving's rule); the V2 path
    runs every output and answers the one asked for."""
    v2_body = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                          {"name": "b", "datatype": "INT64", "shape": [1], "data": [3]},
                          {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["v2"]}],
               "outputs": [{"name": "total"}]}
    v1_body = {"instances": [{"a": [10.0, 20.0], "b": -1, "s": "v1"}]}
    with ThreadPoolExecutor(2) as pool:
        v2 = pool.submit(pairing_server.json, "POST", "/v2/models/multi/infer", v2_body)
        v1 = pool.submit(pairing_server.json, "POST", "/v1/models/multi:predict", v1_body)
        assert v2.result() == (200, {"model_name": "multi", "model_version": "1", "outputs": [
            {"name": "total", "datatype": "FP32", "shape": [1], "data": [6.0]}]})
        assert v1.result() == (200, {"predictions": [
            {"positive": False, "s_bytes": {"b64": "djE="}, "text": "v1", "total": 29.0}]})


def test_many_concurrent_v1_and_v2_requests_each_get_their_own_rows(
        server: ServerProcess) -> None:
    senders = [_v1, _v2_json, _v2_binary]

    def one(i: int) -> tuple[int, int, list[float], Any]:
        rows = [float(1000 * i + j) for j in range(1 + i % 4)]
        status, answer = senders[i % 3](server, rows)
        return i, status, rows, answer

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(300)))
    for i, status, rows, answer in results:
        expected = [x * 0.5 + 2 for x in rows]
        assert status == 200, answer
        if i % 3 == 0:
            assert answer == {"predictions": expected}
        elif i % 3 == 1:
            assert answer["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [len(rows)],
                                          "data": expected}]
        else:
            assert answer == expected
