"""ModelRepository over a real ServerCore: the index, load and unload as config edits, and the
requests it refuses."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfsfast.server import model_config as mc
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.server.v2.model_repository import (
    ModelIndex,
    ModelRepository,
    check_model_name,
    default_repository_path,
)
from tfsfast.util.status import Code, ServingError


@pytest.fixture
def core(model_base: Any) -> Iterator[ServerCore]:
    model_base("a", v1="tf1")
    model_base("b", v1="tf1", v2="tf1_three")
    base = model_base("c")
    (base / "1").mkdir()
    (base / "1" / "saved_model.pb").write_bytes(b"broken")
    config = mc.single_model_config("a", str(base.parent / "a"))
    core = ServerCore.create(ServerCoreOptions(model_server_config=config,
                                               file_system_poll_wait_seconds=0,
                                               max_num_load_retries=0))
    yield core
    core.stop()


def served(core: ServerCore) -> list[str]:
    return [m.name for m in core.config.model_config_list.config]


def error(call: Any) -> tuple[Code, str]:
    with pytest.raises(ServingError) as e:
        call()
    return e.value.code, e.value.message


@pytest.mark.parametrize("base_paths, expected", [
    (["/models/a"], "/models"),
    (["/models/a/", "/models/b"], "/models"),
    (["/models/a", "/data/b"], ""),
    (["s3://bucket/models/a", "s3://bucket/models/b"], "s3://bucket/models"),
    ([], ""),
])
def test_default_repository_path(base_paths: list[str], expected: str) -> None:
    config = mc.ModelServerConfig()
    config.model_config_list.SetInParent()
    for i, path in enumerate(base_paths):
        config.model_config_list.config.add(name=f"m{i}", base_path=path)
    assert default_repository_path(config) == expected


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "s3://x", "a\0"])
def test_names_outside_one_directory_are_refused(name: str) -> None:
    assert error(lambda: check_model_name(name)) == (
        Code.INVALID_ARGUMENT, f"Invalid model name '{name}': a model of the repository is "
                               f"named by its directory, one path segment")


def test_index_load_unload(core: ServerCore) -> None:
    repository = ModelRepository(core, str(Path(core.config.model_config_list.config[0]
                                                .base_path).parent))
    assert repository.index() == [ModelIndex("a", "1", "READY"), ModelIndex("b"),
                                  ModelIndex("c")]
    repository.load("b")
    assert served(core) == ["a", "b"]
    # The single-model entry: the latest version only; the older one is never loaded.
    assert repository.index(ready_only=True) == [ModelIndex("a", "1", "READY"),
                                                 ModelIndex("b", "2", "READY")]
    repository.unload("a")
    assert served(core) == ["b"]
    assert repository.index()[0] == ModelIndex("a", "1", "UNAVAILABLE", "unloaded")
    repository.unload("b")
    assert served(core) == []
    assert repository.index(ready_only=True) == []
    repository.load("a")
    assert served(core) == ["a"]


def test_failed_load_changes_nothing_and_a_retry_loads_afresh(core: ServerCore) -> None:
    root = Path(core.config.model_config_list.config[0].base_path).parent
    repository = ModelRepository(core, str(root))
    code, message = error(lambda: repository.load("c"))
    assert (code, message) == (
        Code.UNKNOWN, "1 model(s) did not become available: {{{name: c version: 1} due to "
        "error: UNKNOWN: DecodeError: Error parsing message with type 'tensorflow.SavedModel'}, }")
    assert served(core) == ["a"]
    (root / "c" / "1" / "saved_model.pb").unlink()
    (root / "c" / "1").rmdir()
    (root / "c" / "1").symlink_to(root / "a" / "1")
    repository.load("c")
    assert served(core) == ["a", "c"]


def test_refusals(core: ServerCore) -> None:
    polled = ModelRepository(core, "/models", polled_config_file="/etc/models.config",
                             poll_wait_seconds=30)
    assert error(lambda: polled.unload("a")) == (
        Code.FAILED_PRECONDITION, "Cannot unload model a: the model config file "
        "/etc/models.config is polled every 30 s and decides which models are served; change "
        "the file instead")
    no_repository = ModelRepository(core)
    assert error(lambda: no_repository.load("b")) == (
        Code.FAILED_PRECONDITION, "Cannot load model b: the server has no model repository to "
        "load it from (set --model_repository_path)")
    assert error(lambda: no_repository.unload("b")) == (
        Code.NOT_FOUND, "Cannot unload model b: it is neither served nor in the model repository")
    assert error(lambda: no_repository.load("a", {"config": "{}"})) == (
        Code.INVALID_ARGUMENT, "Unsupported parameter 'config' to load model a (accepted: "
        "none); a model is loaded as its directory in the repository is")
    # unload_dependents is Triton's; there are no dependents to unload.
    no_repository.unload("a", {"unload_dependents": True})
    assert served(core) == []
    assert error(lambda: ModelRepository(core, "/nonexistent/models").index())[0] == (
        Code.NOT_FOUND)


def test_concurrent_loads_both_apply(core: ServerCore) -> None:
    """Each load edits the config the other left (one reload turn each): neither is lost."""
    root = Path(core.config.model_config_list.config[0].base_path).parent
    shutil.copytree(root / "a", root / "d")
    repository = ModelRepository(core, str(root))
    threads = [threading.Thread(target=repository.load, args=(name,)) for name in ("b", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(served(core)) == ["a", "b", "d"]
