"""Models on object stores (s3://, gs://) and the half-copied-version guard, against a real
server process and local servers of the S3 and GCS APIs started here (moto's S3 server with
authentication enforced, gcp-storage-emulator), with a proxy in between that breaks answers.

Each scenario runs a client that predicts without pause while versions are uploaded one object
at a time in the worst order (saved_model.pb first, then the index, then the data), removed,
and moved to another bucket, and while the store throttles, drops a download in the middle, or
goes away: every predict must succeed, and only whole versions may ever answer.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tfsfast.testing.object_store_emulators import FaultyProxy, GcsEmulator, S3Emulator
from tfsfast.testing.server_process import ServerProcess
from tfsfast.testing.wait import wait_until

pytestmark = pytest.mark.timeout(240)

INDEX = "variables/variables.index"
SHARD = "variables/variables.data-00000-of-00001"
# y = 0.5 x + 2 (tf1) and y = 0.5 x + 3 (tf1_three), at x = 1.
V_TWO, V_THREE = 2.5, 3.5
ADVERSARIAL_ORDER = ("saved_model.pb", INDEX, SHARD)
# Longer than two polls and the settle time together: a copy that pauses this long between
# objects must still not be loaded half-copied.
PAUSE_SECONDS = 3.5

SLOW_DOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 131"
             b"\r\nConnection: close\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>"
             b"<Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
             b"\n")


class Predictor:
    """Predicts x = 1 against model ``m`` in a loop; records (time, HTTP status, y)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.results: list[tuple[float, int, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Predictor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.server.json("POST", "/v1/models/m:predict",
                                            {"instances": [[1.0]]})
            y = body["predictions"][0][0] if status == 200 else body
            self.results.append((time.monotonic(), status, y))
            self._stop.wait(0.02)

    def latest(self) -> Any:
        return self.results[-1][2] if self.results else None

    def check(self) -> None:
        failed = [r for r in self.results if r[1] != 200]
        assert not failed, f"{len(failed)} predicts failed, the first: {failed[0]}"
        assert {r[2] for r in self.results} <= {V_TWO, V_THREE}
        assert len(self.results) > 50


def model_status(server: ServerProcess) -> dict[int, tuple[str, str, str]]:
    status, body = server.json("GET", "/v1/models/m")
    assert status == 200, body
    return {int(v["version"]): (v["state"], v["status"]["error_code"],
                                v["status"]["error_message"])
            for v in body["model_version_status"]}


def available(server: ServerProcess) -> list[int]:
    return sorted(v for v, (state, _, _) in model_status(server).items() if state == "AVAILABLE")


def reload_config(server: ServerProcess, config_text: str) -> Any:
    import grpc
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text, request.config)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            stub.HandleReloadConfigRequest(request, timeout=60)
        except grpc.RpcError as e:
            return e.code(), e.details()
    return "OK", ""


def config(*models: tuple[str, str]) -> str:
    return "model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}\n'
        for name, base in models) + "}\n"


@pytest.fixture
def s3() -> Iterator[S3Emulator]:
    emulator = S3Emulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs() -> Iterator[GcsEmulator]:
    emulator = GcsEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
        shutil.rmtree(emulator.data_dir, ignore_errors=True)


def upload_version(upload: Callable[[str, str, Path], None], bucket: str, prefix: str,
                   version_dir: Path, pause: float = 0.0,
                   between: Callable[[], None] | None = None) -> None:
    """Uploads a version object by object, saved_model.pb first and the data last, pausing (and
    calling ``between``) after each object but the last."""
    for i, rel in enumerate(ADVERSARIAL_ORDER):
        upload(bucket, f"{prefix}/{rel}", version_dir / rel)
        if pause and i < len(ADVERSARIAL_ORDER) - 1:
            time.sleep(pause)
            if between is not None:
                between()


def test_s3_versions_load_whole_while_serving_never_fails(
        tmp_path: Path, exported_models: dict[str, Path], s3: S3Emulator) -> None:
    client = s3.client()
    for bucket in ("models-a", "models-b"):
        client.create_bucket(Bucket=bucket)
    for rel in ADVERSARIAL_ORDER:
        s3.upload("models-a", f"m/1/{rel}", exported_models["tf1"] / rel)
        s3.upload("models-b", f"m/7/{rel}", exported_models["tf1"] / rel)
    proxy = FaultyProxy(s3.port)
    cache = tmp_path / "cache"
    config_file = tmp_path / "models.config"
    config_file.write_text(config(("m", "s3://models-a/m")))
    env = {**s3.server_environment(f"127.0.0.1:{proxy.port}"),
           "TFSFAST_MODEL_CACHE_DIR": str(cache)}
    statuses: list[str] = []
    with ServerProcess([f"--model_config_file={config_file}",
                        "--file_system_poll_wait_seconds=1"], env=env) as server, \
            Predictor(server) as predictor:
        assert available(server) == [1]
        wait_until(lambda: predictor.latest() == V_TWO, what="v1 answers")

        # A new version, object by object: only v1 answers until the last byte is there.
        def only_v1_serves() -> None:
            statuses.append(json.dumps(model_status(server)))
            assert available(server) == [1]
            assert predictor.latest() == V_TWO

        upload_version(s3.upload, "models-a", "m/2", exported_models["tf1_three"],
                       PAUSE_SECONDS, only_v1_serves)
        complete_at = time.monotonic()
        wait_until(lambda: predictor.latest() == V_THREE, what="v2 answers")
        wait_until(lambda: available(server) == [2], what="v1 unloaded")
        assert "Version 2 of servable m at s3://models-a/m/2 is not offered: saved_model.pb " \
               "declares variables but variables/variables.index is missing (yet)" in server.log
        assert all(t >= complete_at for t, _, y in predictor.results if y == V_THREE)

        # The store throttles the listing: logged with its cause, retried later; v2 serves.
        proxy.answer("list-type=2", SLOW_DOWN)
        line = server.wait_for_log("Could not find base path s3://models-a/m for servable m "
                                   "with error UNAVAILABLE: listing s3://models-a/m/ failed: "
                                   "SlowDown: throttled by the store")
        assert "listing it again in" in line
        proxy.heal()
        server.wait_for_log("Base path s3://models-a/m of servable m can be listed again")

        # Version 2 removed: version 1 serves again; version 2's local copy is gone.
        s3.delete_prefix("models-a", "m/2/")
        wait_until(lambda: available(server) == [1], what="back to v1")
        wait_until(lambda: predictor.latest() == V_TWO, what="v1 answers again")
        wait_until(lambda: [p.name for p in cache.glob("*/m/*")] == ["1"],
                   what="only v1's copy in the cache")

        # A reload adding a model in a bucket that does not exist fails and changes nothing.
        code, details = reload_config(server, config(("m", "s3://models-a/m"),
                                                     ("n", "s3://no-such-bucket/n")))
        assert (str(code), details) == (
            "StatusCode.INVALID_ARGUMENT",
            "Could not find base path s3://no-such-bucket/n for servable n with error "
            "NOT_FOUND: listing s3://no-such-bucket/n/ failed: NoSuchBucket: bucket "
            "no-such-bucket does not exist")

        # A reload pointing the model at another bucket.
        assert reload_config(server, config(("m", "s3://models-b/m"))) == ("OK", "")
        wait_until(lambda: available(server) == [7], what="v7 from models-b serves")

        # That bucket empties: the last good version keeps serving.
        s3.delete_prefix("models-b", "m/")
        server.wait_for_log("Could not find base path s3://models-b/m for servable m with error "
                            "NOT_FOUND: s3://models-b/m; no object has the prefix "
                            "s3://models-b/m/")
        time.sleep(2)
        assert available(server) == [7]
        statuses.append(json.dumps(model_status(server)))
    predictor.check()
    assert s3.secret_access_key not in server.log
    assert not any(s3.secret_access_key in s for s in statuses)
    assert not cache.exists() or not any(cache.iterdir()), "the cache is removed at exit"
    proxy.close()


def test_s3_refused_credentials_are_clear_and_contained(
        tmp_path: Path, exported_models: dict[str, Path], s3: S3Emulator) -> None:
    s3.client().create_bucket(Bucket="models-a")
    for rel in ADVERSARIAL_ORDER:
        s3.upload("models-a", f"m/1/{rel}", exported_models["tf1"] / rel)
    local = tmp_path / "local"
    shutil.copytree(exported_models["tf1"], local / "1")
    config_file = tmp_path / "models.config"
    config_file.write_text(config(("local", str(local))))
    wrong_secret = "wrong" + s3.secret_access_key[5:]
    env = {**s3.server_environment(), "AWS_SECRET_ACCESS_KEY": wrong_secret}
    with ServerProcess([f"--model_config_file={config_file}"], env=env) as server:
        code, details = reload_config(server, config(("local", str(local)),
                                                     ("m", "s3://models-a/m")))
        assert str(code) == "StatusCode.INVALID_ARGUMENT"
        assert details == (
            "Could not find base path s3://models-a/m for servable m with error "
            "UNAUTHENTICATED: listing s3://models-a/m/ failed: SignatureDoesNotMatch: The "
            "request signature we calculated does not match the signature you provided. Check "
            "your key and signing method.")
        status, body = server.json("POST", "/v1/models/local:predict", {"instances": [[1.0]]})
        assert (status, body) == (200, {"predictions": [[V_TWO]]})
    assert wrong_secret not in server.log


def test_gcs_versions_load_whole_through_dropped_downloads_and_an_outage(
        tmp_path: Path, exported_models: dict[str, Path], gcs: GcsEmulator) -> None:
    gcs.client().create_bucket("models-g")
    for rel in ADVERSARIAL_ORDER:
        gcs.upload("models-g", f"m/1/{rel}", exported_models["tf1"] / rel)
    proxy = FaultyProxy(gcs.port)
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{proxy.port}",
           "TFSFAST_MODEL_CACHE_DIR": str(tmp_path / "cache")}
    with ServerProcess(["--model_name=m", "--model_base_path=gs://models-g/m",
                        "--file_system_poll_wait_seconds=1"], env=env) as server, \
            Predictor(server) as predictor:
        wait_until(lambda: predictor.latest() == V_TWO, what="v1 answers")

        # Every download of the new version's data is cut after its first byte.
        proxy.cut_responses("variables.data-")
        upload_version(gcs.upload, "models-g", "m/2", exported_models["tf1_three"],
                       PAUSE_SECONDS, lambda: available(server) == [1] or pytest.fail("v2"))

        def failing_download_shown() -> bool:
            state, code, _ = model_status(server).get(2, ("", "", ""))
            return state == "LOADING" and code == "UNAVAILABLE"

        wait_until(failing_download_shown, what="the failed download in v2's status")
        _, _, message = model_status(server)[2]
        assert message.startswith("Could not download version 2 of servable m from "
                                  "gs://models-g/m/2: downloading gs://models-g/m/2/variables/"
                                  "variables.data-00000-of-00001 failed: network error: ")
        assert available(server) == [1] and predictor.latest() == V_TWO

        # The store goes away altogether, then comes back: v1 serves throughout.
        gcs.stop()
        server.wait_for_log("Could not find base path gs://models-g/m for servable m with "
                            "error UNAVAILABLE: listing gs://models-g/m/ failed: network error")
        gcs.start()
        proxy.heal()
        wait_until(lambda: available(server) == [2], timeout=60, what="v2 loads once healed")
        wait_until(lambda: predictor.latest() == V_THREE, what="v2 answers")
        assert proxy.faults > 0
    predictor.check()
    proxy.close()


def test_local_version_copied_saved_model_first_is_never_served_half_copied(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    base = tmp_path / "m"
    shutil.copytree(exported_models["tf1"], base / "1")
    with ServerProcess([f"--model_base_path={base}", "--model_name=m",
                        "--file_system_poll_wait_seconds=1"]) as server, \
            Predictor(server) as predictor:
        wait_until(lambda: predictor.latest() == V_TWO, what="v1 answers")
        v2 = base / "2"
        v2.mkdir()
        # rsync's order: saved_model.pb, then variables/ (index, then data).
        for rel in ADVERSARIAL_ORDER:
            (v2 / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(exported_models["tf1_three"] / rel, v2 / rel)
            if rel != SHARD:
                time.sleep(PAUSE_SECONDS)
                assert available(server) == [1]
        wait_until(lambda: predictor.latest() == V_THREE, what="v2 answers")
        assert available(server) == [2]
    predictor.check()
