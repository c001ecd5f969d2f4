"""ServerHealth over a real ServerCore: readiness across reloads, failed loads and the drain.

Each reload case checks the V2 REST answers too (through ``HttpRestApiHandler`` on the same
``ServerHealth``), since those are what Kubernetes probes read.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tfsfast.core.servable_id import ServableId
from tfsfast.server import model_config as mc
from tfsfast.server.http._http_protocol_py import HttpRequest, HttpResponse
from tfsfast.server.http.http_rest_api_handler import HttpRestApiHandler
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.server_health import ServerHealth
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code, ServingError


def config_text(*models: tuple[str, Path]) -> object:
    text = "model_config_list {\n"
    for name, base in models:
        text += (f'  config {{ name: "{name}" base_path: "{base}" '
                 'model_platform: "tensorflow" }\n')
    return mc.parse_model_server_config(text + "}\n")


def create_core(config: object, poll_wait_seconds: int = 0) -> ServerCore:
    return ServerCore.create(ServerCoreOptions(
        model_server_config=config, file_system_poll_wait_seconds=poll_wait_seconds,
        max_num_load_retries=0))


def rest(core: ServerCore, health: ServerHealth) -> Callable[[str], tuple[int, bytes]]:
    """GET through the REST handler on ``health``: (status, body)."""
    handler = HttpRestApiHandler(core, health=health)

    def get(path: str) -> tuple[int, bytes]:
        response = handler(HttpRequest("GET", path.encode(), {}, b"", True))
        assert isinstance(response, HttpResponse)
        return response.status, response.body

    return get


def not_found(call: Callable[[], object]) -> str:
    with pytest.raises(ServingError) as e:
        call()
    assert e.value.code == Code.NOT_FOUND
    return e.value.message


@pytest.fixture
def served(model_base) -> Iterator[tuple[ServerCore, ServerHealth]]:
    core = create_core(config_text(("m", model_base("m", v3="tf1"))))
    try:
        yield core, ServerHealth(core)
    finally:
        core.stop()


def test_live_and_ready_once_every_model_is_available(served) -> None:
    _, health = served
    assert health.is_server_live()
    assert health.is_server_ready()
    assert health.is_model_ready("m")
    assert health.is_model_ready("m", 3)
    assert not health.draining


def test_unknown_model_and_version_are_not_found(served) -> None:
    _, health = served
    assert not_found(lambda: health.is_model_ready("x")) == "Model with name x does not exist."
    assert not_found(lambda: health.is_model_ready("m", 4)) == (
        "Could not find version 4 of model m")


def test_draining_turns_readiness_off_for_good(served) -> None:
    core, health = served
    get = rest(core, health)
    calls: list[str] = []
    health.add_draining_callback(lambda: calls.append("first"))

    def broken() -> None:
        raise RuntimeError("listener bug")

    health.add_draining_callback(broken)
    health.add_draining_callback(lambda: calls.append("third"))
    assert health.start_draining() is True
    assert calls == ["first", "third"]  # a failing callback does not stop the others
    assert health.start_draining() is False
    assert calls == ["first", "third"]
    health.add_draining_callback(lambda: calls.append("late"))  # runs at once
    assert calls == ["first", "third", "late"]
    assert health.draining
    assert health.is_server_live()
    assert not health.is_server_ready()
    assert not health.is_model_ready("m")
    assert not health.is_model_ready("m", 3)
    # An unknown model is still unknown, draining or not.
    assert not_found(lambda: health.is_model_ready("x")) == "Model with name x does not exist."
    assert get("/v2/health/live") == (200, b"")
    assert get("/v2/health/ready") == (503, b"")
    assert get("/v2/models/m/ready") == (503, b"")
    assert get("/v2/models/m/versions/3/ready") == (503, b"")


def test_reload_adding_a_model_without_a_version_yet(model_base, tmp_path: Path,
                                                     exported_models: dict[str, Path],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """While the reload waits for the new model's first version, the previous config is the one
    in force: the server stays ready and the new model is unknown; once a version loads the new
    config applies and the new model is ready."""
    m = model_base("m", v3="tf1")
    new = tmp_path / "new"
    new.mkdir()
    core = create_core(config_text(("m", m)), poll_wait_seconds=1)
    health = ServerHealth(core)
    get = rest(core, health)
    errors: list[BaseException] = []

    def reload() -> None:
        try:
            core.reload_config(config_text(("m", m), ("new", new)))  # blocks until available
        except BaseException as e:
            errors.append(e)

    reloading = threading.Thread(target=reload)
    try:
        reloading.start()
        # The source has polled the new base path: the reload is waiting for a version.
        wait_until(lambda: any(r.getMessage().startswith("No versions of servable new found")
                               for r in caplog.records), "the reload to start waiting")
        assert not core.has_model("new")
        assert health.is_server_ready()
        assert not_found(lambda: health.is_model_ready("new")) == (
            "Model with name new does not exist.")
        assert get("/v2/health/ready") == (200, b"")
        assert get("/v2/models/new/ready")[0] == 404
        assert get("/v2/models/m/ready") == (200, b"")

        shutil.copytree(exported_models["tf1_three"], new / "1")
        reloading.join(120)
        assert not reloading.is_alive() and errors == []
        assert core.has_model("new")
        assert health.is_server_ready()
        assert health.is_model_ready("new", 1)
        assert get("/v2/health/ready") == (200, b"")
        assert get("/v2/models/new/versions/1/ready") == (200, b"")
    finally:
        core.stop()
        reloading.join(120)


def test_reload_adding_a_model_whose_load_fails(served, tmp_path: Path) -> None:
    """The failed reload leaves the previous config in force: still ready, the model it added
    unknown to readiness; the status API keeps the failed version and its error."""
    core, health = served
    get = rest(core, health)
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    m = Path(core.config.model_config_list.config[0].base_path)
    with pytest.raises(ServingError) as e:
        core.reload_config(config_text(("m", m), ("broken", broken)))
    assert e.value.code == Code.UNKNOWN
    assert not core.has_model("broken")
    assert health.is_server_ready()
    assert not_found(lambda: health.is_model_ready("broken")) == (
        "Model with name broken does not exist.")
    assert health.is_model_ready("m")
    assert get("/v2/health/ready") == (200, b"")
    status, body = get("/v2/models/broken/ready")
    assert (status, json.loads(body)) == (404, {"error": "Model with name broken does not exist."})
    assert get("/v2/models/m/ready") == (200, b"")
    status, body = get("/v1/models/broken")
    assert status == 200
    [version] = json.loads(body)["model_version_status"]
    failed = core.servable_state_monitor.get_state(ServableId("broken", 1))
    assert failed is not None and failed.health is not None
    assert version == {"version": "1", "state": "END", "status": {
        "error_code": failed.health.code.name, "error_message": failed.health.message}}


def test_reload_removing_a_model_makes_it_unknown(served, model_base) -> None:
    core, health = served
    get = rest(core, health)
    other = model_base("other", v1="tf2")
    core.reload_config(config_text(("other", other)))
    assert health.is_server_ready()
    assert not_found(lambda: health.is_model_ready("m")) == "Model with name m does not exist."
    status, body = get("/v2/models/m/ready")
    assert (status, json.loads(body)) == (404, {"error": "Model with name m does not exist."})
    assert get("/v2/models/other/ready") == (200, b"")
