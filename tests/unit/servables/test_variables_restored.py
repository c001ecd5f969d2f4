"""A version whose variables are not whole is never made AVAILABLE: TensorFlow's loader accepts
a SavedModel whose ``variables/`` is missing (every run then fails), the bundle factory does not,
and the version already serving keeps serving."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tfsfast import runtime
from tfsfast.core.aspired_versions_manager import (
    AspiredVersionsManager,
    AspiredVersionsManagerOptions,
)
from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_id import ServableId
from tfsfast.core.servable_request import ServableRequest
from tfsfast.core.servable_state import ManagerState
from tfsfast.servables.saved_model_bundle_factory import SavedModelBundleFactory
from tfsfast.servables.saved_model_bundle_source_adapter import SavedModelBundleSourceAdapter
from tfsfast.util.status import Code, ServingError

SHARD = "variables/variables.data-00000-of-00001"


def graph_only(src: Path, dst: Path) -> Path:
    """What ``rsync`` leaves after copying ``saved_model.pb`` and before ``variables/``."""
    dst.mkdir(parents=True)
    shutil.copyfile(src / "saved_model.pb", dst / "saved_model.pb")
    return dst


def test_tensorflow_loader_accepts_a_graph_without_its_variables(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    # Why the factory checks: TensorFlow's C API loads it and only the first run fails. (The
    # Python twin's loader, tf.compat.v1's, refuses it at once; the factory's check makes both
    # refuse it the same way, below.)
    version = graph_only(exported_models["tf1"], tmp_path / "2")
    if runtime.IMPLEMENTATION == "python":
        with pytest.raises(ServingError) as refused:
            runtime.load_saved_model(str(version), ["serve"])
        assert refused.value.code == Code.INVALID_ARGUMENT
        assert "not a valid checkpoint" in refused.value.message
        return
    session = runtime.load_saved_model(str(version), ["serve"])
    try:
        with pytest.raises(ServingError) as e:
            session.run("serving_default", {"x": np.array([[1.0]], np.float32)})
        assert e.value.code == Code.FAILED_PRECONDITION
        assert "uninitialized" in e.value.message
    finally:
        session.close()


@pytest.mark.parametrize("which", ["tf1", "tf2"])
def test_factory_refuses_a_graph_without_its_variables(
        tmp_path: Path, exported_models: dict[str, Path], which: str) -> None:
    version = graph_only(exported_models[which], tmp_path / "2")
    with pytest.raises(ServingError) as e:
        SavedModelBundleFactory().create_saved_model_bundle(ServableId("m", 2), str(version))
    assert e.value.code == Code.NOT_FOUND
    assert e.value.message == (
        f"Version 2 of servable m at {version} is not loaded: its graph declares variables but "
        f"variables/variables.index is missing, so none of them could be restored (is the "
        f"version still being copied?)")


def test_factory_refuses_a_short_data_shard(tmp_path: Path,
                                            exported_models: dict[str, Path]) -> None:
    version = tmp_path / "2"
    shutil.copytree(exported_models["tf2"], version)
    data = (version / SHARD).read_bytes()
    (version / SHARD).write_bytes(data[:-4])
    with pytest.raises(ServingError) as e:
        SavedModelBundleFactory().create_saved_model_bundle(ServableId("m", 2), str(version))
    assert e.value.code == Code.NOT_FOUND
    assert e.value.message == (
        f"Version 2 of servable m at {version} is not loaded: its variables are not complete: "
        f"{SHARD} has {len(data) - 4} of its {len(data)} bytes")


def test_model_without_variables_loads(tmp_path: Path) -> None:
    from tfsfast.testing import export_models

    version = export_models.export_multi_io(str(tmp_path / "1"))
    bundle = SavedModelBundleFactory().create_saved_model_bundle(ServableId("m", 1), version)
    try:
        assert bundle.run("scalar", {"x": np.array(2.0, np.float32)})["y"] == 4.0
    finally:
        bundle.close()


def test_previous_version_keeps_serving_when_the_new_one_has_no_variables(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    shutil.copytree(exported_models["tf1"], tmp_path / "1")
    graph_only(exported_models["tf1_three"], tmp_path / "2")
    manager = AspiredVersionsManager(AspiredVersionsManagerOptions(
        manage_state_interval_micros=-1, max_num_load_retries=1, sleep=lambda s: None))
    states = []
    manager.event_bus.subscribe(states.append)
    adapter = SavedModelBundleSourceAdapter(SavedModelBundleFactory())
    adapter.set_aspired_versions_callback(manager.get_aspired_versions_callback())
    emit = adapter.get_aspired_versions_callback()
    try:
        emit("m", [ServableData(ServableId("m", 1), str(tmp_path / "1"))])
        manager.manage_state()
        # Version 2 alone is aspired now, as a source following "latest" asks.
        emit("m", [ServableData(ServableId("m", 2), str(tmp_path / "2"))])
        manager.manage_state()
        manager.manage_state()
        assert manager.available_versions("m") == [1]
        with manager.get_servable_handle(ServableRequest.latest("m")) as handle:
            y = handle.servable.run("serving_default", {"x": np.array([[2.0]], np.float32)})
        assert y["y"].tolist() == [[3.0]]
        failed = [s for s in states if s.id.version == 2 and s.health is not None]
        # The failed attempt shows while it is retried (LOADING), then the load ends (END).
        assert [s.manager_state for s in failed] == [ManagerState.LOADING, ManagerState.END]
        assert failed[-1].health.code == Code.NOT_FOUND
        assert "variables/variables.index is missing" in failed[-1].health.message
    finally:
        manager.stop()
