"""ServerCore with real SavedModels: startup, labels, reloads (and reloads that fail) and
config errors."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_request import ServableRequest
from tfsfast.core.servable_state import ManagerState
from tfsfast.server import model_config as mc
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code, ServingError


def options(config: object, **kw: object) -> ServerCoreOptions:
    return ServerCoreOptions(model_server_config=config, file_system_poll_wait_seconds=0,
                             max_num_load_retries=0, **kw)


def predict(core: ServerCore, name: str, x: list[float], **spec: object) -> list[float]:
    with core.get_servable_handle(name, **spec) as handle:
        out = handle.servable.run("serving_default", {"x": np.array(x, np.float32)})
    return out["y"].tolist()


def config_text(*models: tuple[str, Path], labels: dict[str, int] | None = None) -> object:
    text = "model_config_list {\n"
    for name, base in models:
        text += f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"\n'
        text += "    model_version_policy { all {} }\n"
        for label, version in (labels or {}).items():
            text += f'    version_labels {{ key: "{label}" value: {version} }}\n'
        text += "  }\n"
    return mc.parse_model_server_config(text + "}\n")


def test_startup_blocks_until_available_and_serves(model_base) -> None:
    base = model_base("m", v1="tf2")
    core = ServerCore.create(options(mc.single_model_config("m", str(base))))
    try:
        assert predict(core, "m", [1.0, 2.0, 5.0]) == [2.5, 3.0, 4.5]
        assert core.manager.available_versions("m") == [1]
    finally:
        core.stop()


def test_tf1_export_serves(model_base) -> None:
    base = model_base("m", v7="tf1")
    core = ServerCore.create(options(mc.single_model_config("m", str(base))))
    try:
        assert predict(core, "m", [[2.0]]) == [[3.0]]
    finally:
        core.stop()


def test_broken_model_fails_startup_with_tf_serving_message(tmp_path: Path) -> None:
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ServingError) as e:
        ServerCore.create(options(mc.single_model_config("m", str(tmp_path / "m"))))
    assert e.value.code == Code.UNKNOWN
    assert e.value.message.startswith(
        "1 servable(s) did not become available: {{{name: m version: 1} due to error: ")
    assert e.value.message.endswith("}, }")


def test_labels_must_point_at_available_versions(model_base) -> None:
    base = model_base("m", v1="tf1", v2="tf1_three")
    with pytest.raises(ServingError) as e:
        ServerCore.create(options(config_text(("m", base), labels={"stable": 1})))
    assert e.value.code == Code.FAILED_PRECONDITION
    assert e.value.message == ("Request to assign label to version 1 of model m, which is not "
                               "currently available for inference")


def test_labels_route_requests(model_base) -> None:
    base = model_base("m", v1="tf1", v2="tf1_three")
    core = ServerCore.create(options(config_text(("m", base))))
    try:
        # Startup waits for Latest only, as TF Serving does; the other version (both load in
        # parallel at startup) may still be loading.
        assert core.servable_state_monitor.wait_until_servables_reach_state(
            [ServableRequest.specific("m", 1), ServableRequest.specific("m", 2)],
            ManagerState.AVAILABLE, timeout=60)[0]
        core.reload_config(config_text(("m", base), labels={"stable": 1, "canary": 2}))
        assert predict(core, "m", [[2.0]], label="stable") == [[3.0]]
        assert predict(core, "m", [[2.0]], label="canary") == [[4.0]]
        assert predict(core, "m", [[2.0]], version=1) == [[3.0]]
        assert predict(core, "m", [[2.0]]) == [[4.0]]
        with pytest.raises(ServingError) as e:
            core.get_servable_handle("m", label="nope")
        assert (e.value.code, e.value.message) == (
            Code.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
    finally:
        core.stop()


def test_labels_for_unavailable_versions_when_allowed(model_base) -> None:
    base = model_base("m", v1="tf1")
    core = ServerCore.create(options(config_text(("m", base), labels={"next": 2}),
                                     allow_version_labels_for_unavailable_models=True))
    try:
        assert core.get_model_version_for_label("m", "next") == 2
    finally:
        core.stop()


def test_reload_adds_and_removes_models(model_base) -> None:
    two = model_base("two", v1="tf1")
    three = model_base("three", v1="tf1_three")
    core = ServerCore.create(options(config_text(("two", two))))
    try:
        core.reload_config(config_text(("three", three)))
        assert predict(core, "three", [[2.0]]) == [[4.0]]
        core.manager.manage_state()
        with pytest.raises(ServingError) as e:
            core.get_servable_handle("two")
        assert e.value.code == Code.NOT_FOUND
    finally:
        core.stop()


@pytest.mark.parametrize(("text", "code", "message"), [
    ('config { name: "m" base_path: "relative/path" model_platform: "tensorflow" }',
     Code.INVALID_ARGUMENT,
     "Expected model m to have an absolute path or URI; got base_path()=relative/path"),
    ('config { name: "m" base_path: "/a" model_platform: "tensorflow" } '
     'config { name: "m" base_path: "/b" model_platform: "tensorflow" }',
     Code.INVALID_ARGUMENT, "Illegal to list model m multiple times in config list"),
    ('config { name: "m" base_path: "hdfs://nn/m" model_platform: "tensorflow" }',
     Code.UNIMPLEMENTED, "File system scheme 'hdfs' not implemented (file: 'hdfs://nn/m')"),
    ('config { name: "m" base_path: "/a" }', Code.INVALID_ARGUMENT,
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
     "ModelServerConfig::model_platform, model name is m"),
    ('config { name: "m" base_path: "/a" model_platform: "pytorch" }', Code.INVALID_ARGUMENT,
     "Model m requests unsupported platform pytorch"),
])
def test_config_validation_errors(text: str, code: Code, message: str) -> None:
    config = mc.parse_model_server_config("model_config_list { " + text + " }")
    with pytest.raises(ServingError) as e:
        ServerCore.create(options(config))
    assert (e.value.code, e.value.message) == (code, message)


def test_bad_config_text_is_reported() -> None:
    with pytest.raises(ServingError) as e:
        mc.parse_model_server_config("model_config_list { config { name: ")
    assert e.value.message.startswith(
        "Error parsing text-format tensorflow.serving.ModelServerConfig")


def test_a_config_file_that_is_not_text_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_bytes(b'model_config_list { config { name: "\xff" } }')
    with pytest.raises(ServingError) as e:
        mc.read_model_server_config(str(path))
    assert (e.value.code, e.value.message) == (
        Code.INVALID_ARGUMENT, f"Error parsing text-format tensorflow.serving.ModelServerConfig: "
                               f"{path} is not UTF-8 text (byte 36)")


# --- reloads that fail: all or nothing, within a bound -----------------------------------------


@pytest.fixture
def served(model_base) -> Iterator[tuple[ServerCore, Path]]:
    """A core serving ``m`` (y = x/2 + 2) from its base path, with reloads bounded at 60 s."""
    base = model_base("m", v1="tf1")
    core = ServerCore.create(options(config_text(("m", base)),
                                     reload_config_timeout_seconds=60))
    try:
        yield core, base
    finally:
        core.stop()


def reload_error(core: ServerCore, config: object, **kw: object) -> ServingError:
    with pytest.raises(ServingError) as e:
        core.reload_config(config, **kw)
    return e.value


def check_only_m_in_force(core: ServerCore, before: object) -> None:
    assert core.config == before
    assert [m.name for m in core.config.model_config_list.config] == ["m"]
    assert predict(core, "m", [[2.0]]) == [[3.0]]


def not_served(core: ServerCore, name: str) -> str:
    with pytest.raises(ServingError) as e:
        core.get_servable_handle(name)
    assert e.value.code == Code.NOT_FOUND
    return e.value.message


def test_a_missing_base_path_fails_the_reload_before_anything_changes(
        served, model_base, tmp_path: Path) -> None:
    core, m = served
    before = core.config
    three = model_base("three", v1="tf1_three")
    missing = tmp_path / "missing"
    message = (f"Could not find base path {missing} for servable b with error NOT_FOUND: "
               f"{missing}; No such file or directory")
    # Added, or moved there: nothing is loaded or unloaded, m (dropped by the first) serves on.
    for config in (config_text(("three", three), ("b", missing)),
                   config_text(("m", m), ("three", three), ("b", missing))):
        e = reload_error(core, config)
        assert (e.code, e.message) == (Code.INVALID_ARGUMENT, message)
        check_only_m_in_force(core, before)
    e = reload_error(core, config_text(("m", missing)))
    assert (e.code, e.message) == (Code.INVALID_ARGUMENT, message.replace("servable b",
                                                                          "servable m"))
    check_only_m_in_force(core, before)
    assert core.servable_state_monitor.get_version_states("three") == {}
    core.reload_config(config_text(("m", m), ("three", three)))
    assert predict(core, "three", [[2.0]]) == [[4.0]]


def test_a_model_that_fails_to_load_rolls_the_reload_back(served, model_base,
                                                          tmp_path: Path) -> None:
    """The reload drops m, adds three (which loads) and broken (which does not): m is served as
    before, three is unloaded again before the call returns, the labels are unchanged."""
    core, m = served
    core.reload_config(config_text(("m", m), labels={"stable": 1}))
    before = core.config
    three = model_base("three", v1="tf1_three")
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    e = reload_error(core, config_text(("three", three), ("broken", broken)))
    failed = core.servable_state_monitor.get_state(ServableId("broken", 1))
    assert failed is not None and failed.manager_state == ManagerState.END
    assert (e.code, e.message) == (
        Code.UNKNOWN, f"1 model(s) did not become available: {{{{{{name: broken version: 1}} "
                      f"due to error: {failed.health}}}, }}")
    check_only_m_in_force(core, before)
    assert predict(core, "m", [[2.0]], label="stable") == [[3.0]]
    assert not_served(core, "three") == "Servable not found for request: Latest(three)"
    # The same model, fixed, loads at the next reload: the earlier failure does not count.
    shutil.rmtree(broken / "1")
    model_base("broken", v1="tf1")
    core.reload_config(config_text(("three", three), ("broken", broken)))
    assert predict(core, "broken", [[2.0]]) == [[3.0]]
    assert not_served(core, "m") == "Servable not found for request: Latest(m)"
    # Dropped, then added back at once: its unload does not fail the reload that adds it.
    core.reload_config(config_text(("three", three), ("broken", broken), ("m", m)))
    assert predict(core, "m", [[2.0]]) == [[3.0]]


def test_a_model_without_a_version_fails_the_reload_at_the_bound(model_base,
                                                                  tmp_path: Path) -> None:
    base = model_base("m", v1="tf1")
    empty = tmp_path / "empty"
    empty.mkdir()
    core = ServerCore.create(options(config_text(("m", base)),
                                     reload_config_timeout_seconds=0.5))
    try:
        before = core.config
        e = reload_error(core, config_text(("m", base), ("empty", empty)))
        assert (e.code, e.message) == (
            Code.UNKNOWN, f"1 model(s) did not become available: {{{{empty: no version found "
                          f"under base path {empty} within the reload timeout of 0.5 s}}, }}")
        check_only_m_in_force(core, before)
        # The caller's deadline, when shorter, is the bound.
        e = reload_error(core, config_text(("m", base), ("empty", empty)), timeout=0.1)
        assert e.message.endswith(f"{{{{empty: no version found under base path {empty} within "
                                  f"the caller's deadline}}, }}")
        check_only_m_in_force(core, before)
    finally:
        core.stop()


def hung_version(base: Path, exported: Path) -> Path:
    """A version whose load never returns: its warmup file is a FIFO nobody writes."""
    shutil.copytree(exported, base / "1")
    (base / "1" / "assets.extra").mkdir()
    os.mkfifo(base / "1" / "assets.extra" / "tf_serving_warmup_requests")
    return base


def release(base: Path) -> None:
    """Ends a hung load (an empty warmup file), if it is still waiting."""
    try:
        fd = os.open(base / "1" / "assets.extra" / "tf_serving_warmup_requests",
                     os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def test_a_hung_load_fails_its_reload_and_holds_back_neither_the_next_nor_stop(
        model_base, tmp_path: Path, exported_models: dict[str, Path]) -> None:
    base = model_base("m", v1="tf1")
    three = model_base("three", v1="tf1_three")
    hung = hung_version(tmp_path / "hung", exported_models["tf1"])
    core = ServerCore.create(options(config_text(("m", base)),
                                     reload_config_timeout_seconds=1))
    try:
        before = core.config
        e = reload_error(core, config_text(("m", base), ("hung", hung)))
        assert (e.code, e.message) == (
            Code.UNKNOWN, "1 model(s) did not become available: {{{name: hung version: 1} did "
                          "not finish loading within the reload timeout of 1 s}, }")
        check_only_m_in_force(core, before)
        state = core.servable_state_monitor.get_state(ServableId("hung", 1))
        assert state is not None and state.manager_state == ManagerState.LOADING
        # One load thread (--num_load_threads=0): three does not wait for the hung load.
        core.reload_config(config_text(("m", base), ("three", three)))
        assert predict(core, "three", [[2.0]]) == [[4.0]]
        # Added again while its earlier load still runs: it waits behind that load.
        e = reload_error(core, config_text(("m", base), ("three", three), ("hung", hung)))
        assert e.message == ("1 model(s) did not become available: {{{name: hung version: 1} did "
                             "not finish loading within the reload timeout of 1 s}, }")
        core.stop(timeout=None)  # returns: the abandoned load is not waited for
        assert not_served(core, "m") == "Servable not found for request: Latest(m)"
    finally:
        release(hung)
        core.stop()


def test_stop_reloading_fails_the_reload_under_way_and_every_later_one(
        served, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    core, m = served
    before = core.config
    empty = tmp_path / "empty"
    empty.mkdir()
    errors: list[ServingError] = []

    def reload() -> None:
        errors.append(reload_error(core, config_text(("m", m), ("empty", empty))))

    reloading = threading.Thread(target=reload)
    reloading.start()
    wait_until(lambda: any(r.getMessage().startswith("No versions of servable empty found")
                           for r in caplog.records), "the reload to start waiting")
    core.stop_reloading()
    reloading.join(60)
    assert [(e.code, e.message) for e in errors] == [
        (Code.UNAVAILABLE, "Config reload not applied: the server is shutting down")]
    e = reload_error(core, config_text(("m", m)))
    assert (e.code, e.message) == (
        Code.UNAVAILABLE, "Config reload not applied: the server is shutting down")
    check_only_m_in_force(core, before)
