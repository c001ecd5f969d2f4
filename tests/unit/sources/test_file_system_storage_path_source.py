"""FileSystemStoragePathSource, stepped by hand with poll_file_system_and_invoke_callback.

Every source here has ``file_system_poll_wait_seconds=-1`` (no thread) except the tests of the real
poll thread, which wait on an Event the callback sets.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from tensorflow_serving.config import file_system_storage_path_source_pb2 as fs_pb2

from tfsfast.core.servable_data import ServableData
from tfsfast.core.servable_id import ServableId
from tfsfast.sources.file_system_storage_path_source import (
    DEFAULT_REQUIRED_FILES,
    FileSystemStoragePathSource,
    FileSystemStoragePathSourceConfig,
    ServableToMonitor,
    check_base_path,
    parse_version_number,
)
from tfsfast.sources.servable_version_policy import ServableVersionPolicy
from tfsfast.util.status import Code, ServingError

Emission = tuple[str, list[tuple[int, str]]]


class Recorder:
    """An aspired-versions callback that records every call as (name, [(version, path)])."""

    def __init__(self, notify_after: int = 1) -> None:
        self.calls: list[Emission] = []
        self.notify_after = notify_after
        self.event = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, name: str, versions: Sequence[ServableData[str]]) -> None:
        for v in versions:
            assert v.ok and v.id.name == name
        with self._lock:
            self.calls.append((name, [(v.id.version, v.data) for v in versions]))
            if len(self.calls) >= self.notify_after:
                self.event.set()

    def take(self) -> list[Emission]:
        """The calls since the last take."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls


def make_version(base: Path, name: str, marker: str | None = "saved_model.pb") -> Path:
    d = base / name
    d.mkdir(parents=True)
    if marker is not None:
        (d / marker).write_bytes(b"")  # an empty SavedModel: no graph, no variables
    return d


def config(*servables: ServableToMonitor, **options: object) -> FileSystemStoragePathSourceConfig:
    options.setdefault("file_system_poll_wait_seconds", -1)
    options.setdefault("version_settle_seconds", 0)
    return FileSystemStoragePathSourceConfig(servables=servables, **options)  # type: ignore[arg-type]


def monitor(base: Path, name: str = "m",
            policy: ServableVersionPolicy | None = None) -> ServableToMonitor:
    return ServableToMonitor(name, str(base), policy or ServableVersionPolicy.latest())


def started(cfg: FileSystemStoragePathSourceConfig) -> tuple[FileSystemStoragePathSource, Recorder]:
    source = FileSystemStoragePathSource.create(cfg)
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    return source, recorder


def poll(source: FileSystemStoragePathSource, recorder: Recorder) -> list[Emission]:
    source.poll_file_system_and_invoke_callback()
    return recorder.take()


# ---- version-number parsing (absl::SimpleAtoi) ----

@pytest.mark.parametrize(("name", "expected"), [
    ("1", 1),
    ("00000123", 123),
    ("+7", 7),
    (" 8 ", 8),
    ("\t9\n", 9),
    ("-1", -1),
    ("9223372036854775807", 9223372036854775807),
    ("-9223372036854775808", -9223372036854775808),
    ("9223372036854775808", None),
    ("", None),
    ("+", None),
    ("1.5", None),
    ("1_000", None),
    ("0x10", None),
    ("1 2", None),
    ("\u0661\u0662", None),  # Arabic-Indic digits: Python's int() accepts them, absl does not
    ("12abc", None),
])
def test_parse_version_number_like_simple_atoi(name: str, expected: int | None) -> None:
    assert parse_version_number(name) == expected


# ---- discovery and version policies ----

def test_latest_emits_highest_version_dir_path(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        make_version(tmp_path, v)
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(3, str(tmp_path / "3"))])]


def test_emits_servable_data_with_id_and_path(tmp_path: Path) -> None:
    make_version(tmp_path, "5")
    source = FileSystemStoragePathSource.create(config(monitor(tmp_path)))
    got: list[tuple[str, Sequence[ServableData[str]]]] = []
    source.set_aspired_versions_callback(lambda name, versions: got.append((name, versions)))
    source.poll_file_system_and_invoke_callback()
    [(name, [data])] = got
    assert name == "m"
    assert data.id == ServableId("m", 5)
    assert data.data == os.path.join(str(tmp_path), "5")


def test_latest_n(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        make_version(tmp_path, v)
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.latest(2))))
    assert poll(source, recorder) == [("m", [(2, str(tmp_path / "2")), (3, str(tmp_path / "3"))])]


def test_all(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        make_version(tmp_path, v)
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all())))
    [(_, versions)] = poll(source, recorder)
    assert [v for v, _ in versions] == [1, 2, 3]


def test_specific_and_missing_version_warning(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    for v in ("1", "2", "3"):
        make_version(tmp_path, v)
    source, recorder = started(
        config(monitor(tmp_path, policy=ServableVersionPolicy.specific([1, 3, 9]))))
    with caplog.at_level(logging.WARNING):
        assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1")),
                                                 (3, str(tmp_path / "3"))])]
        poll(source, recorder)
    warning = ("Version 9 of servable m, which was requested to be served as a 'specific' "
               "version in the servable's version policy, was not found in the file system")
    assert caplog.text.count(warning) == 1  # once per condition, not once per poll


def test_specific_matching_nothing_emits_empty_list(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(
        config(monitor(tmp_path, policy=ServableVersionPolicy.specific([]))))
    assert poll(source, recorder) == [("m", [])]


def test_zero_padded_version_dir(tmp_path: Path) -> None:
    make_version(tmp_path, "00000123")
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(123, str(tmp_path / "00000123"))])]


def test_duplicate_versions_pick_one_deterministically(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "non_numerical_child").mkdir()
    for name in ("0001", "001", "00001"):
        make_version(tmp_path, name)
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all())))
    with caplog.at_level(logging.WARNING):
        assert poll(source, recorder) == [("m", [(1, str(tmp_path / "001"))])]
    assert "Duplicate version directories detected" in caplog.text
    assert "Version 1 will be loaded from 001, 00001, 0001 will be ignored." in caplog.text


# With no marker files required, only the directory check keeps the file "7" out.
@pytest.mark.parametrize("required", [DEFAULT_REQUIRED_FILES, ()])
def test_non_numeric_children_and_numeric_files_are_ignored(tmp_path: Path,
                                                            required: tuple[str, ...]) -> None:
    make_version(tmp_path, "1")
    make_version(tmp_path, "2.blacklisted")
    make_version(tmp_path, "tmp-3")
    (tmp_path / "7").write_bytes(b"a file, not a version directory")
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all()),
                                      required_files_any=required))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_renamed_version_dir_is_no_longer_aspired(tmp_path: Path) -> None:
    for v in ("1", "2"):
        make_version(tmp_path, v)
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all())))
    assert [v for v, _ in poll(source, recorder)[0][1]] == [1, 2]
    (tmp_path / "2").rename(tmp_path / "2.blacklisted")
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_emits_again_on_every_poll(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    first = poll(source, recorder)
    assert first == [("m", [(1, str(tmp_path / "1"))])]
    assert poll(source, recorder) == first


# ---- missing and emptied base paths (keep the last good version) ----

def test_no_versions_warns_and_emits_nothing(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    source, recorder = started(config(monitor(tmp_path)))
    with caplog.at_level(logging.WARNING):
        assert poll(source, recorder) == []
        assert poll(source, recorder) == []
    warning = (f"No versions of servable m found under base path {tmp_path}. Did you forget to "
               f"name your leaf directory as a number (eg. '/1/')?")
    assert caplog.text.count(warning) == 1


def test_missing_base_path_keeps_versions(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    base = tmp_path / "model"
    make_version(base, "1")
    source, recorder = started(config(monitor(base)))
    assert poll(source, recorder) == [("m", [(1, str(base / "1"))])]
    (base / "1" / "saved_model.pb").unlink()
    (base / "1").rmdir()
    base.rmdir()
    with caplog.at_level(logging.ERROR):
        assert poll(source, recorder) == []
    assert f"Could not find base path {base} for servable m with error NOT_FOUND" in caplog.text


def test_missing_base_path_does_not_stop_other_servables(tmp_path: Path) -> None:
    good = tmp_path / "good"
    make_version(good, "4")
    source, recorder = started(config(monitor(tmp_path / "absent", "a"), monitor(good, "g")))
    assert poll(source, recorder) == [("g", [(4, str(good / "4"))])]


def test_base_path_that_is_a_file_is_an_error_not_a_crash(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    base = tmp_path / "not_a_dir"
    base.write_bytes(b"")
    source, recorder = started(config(monitor(base)))
    with caplog.at_level(logging.ERROR):
        assert poll(source, recorder) == []
    assert f"Could not find base path {base} for servable m" in caplog.text


def test_emptied_base_path_keeps_last_version(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    version = make_version(tmp_path, "42")
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(42, str(version))])]
    (version / "saved_model.pb").unlink()
    version.rmdir()
    with caplog.at_level(logging.WARNING):
        assert poll(source, recorder) == []  # TF Serving would emit [] and unload 42
        assert poll(source, recorder) == []
    warning = f"Refusing to unload all versions of servable m: none found under {tmp_path}"
    assert caplog.text.count(warning) == 1


def test_new_version_after_emptied_base_path_is_served(tmp_path: Path) -> None:
    version = make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    poll(source, recorder)
    (version / "saved_model.pb").unlink()
    version.rmdir()
    assert poll(source, recorder) == []
    make_version(tmp_path, "2")
    assert poll(source, recorder) == []  # new after the first poll: must be stable first
    assert poll(source, recorder) == [("m", [(2, str(tmp_path / "2"))])]


def test_only_incomplete_versions_left_keeps_last_version(tmp_path: Path) -> None:
    old = make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    poll(source, recorder)
    (old / "saved_model.pb").unlink()
    old.rmdir()
    make_version(tmp_path, "2", marker=None)  # a replacement still being copied
    assert poll(source, recorder) == []
    assert poll(source, recorder) == []


# ---- completeness ----

def test_version_without_saved_model_is_not_offered(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    make_version(tmp_path, "1", marker=None)
    source, recorder = started(config(monitor(tmp_path)))
    with caplog.at_level(logging.WARNING):
        assert poll(source, recorder) == []
    assert f"Version 1 of servable m at {tmp_path / '1'} is not offered" in caplog.text


def test_incomplete_latest_does_not_displace_served_version(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    make_version(tmp_path, "2", marker=None)
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


@pytest.mark.parametrize("marker", DEFAULT_REQUIRED_FILES)
def test_each_default_marker_file_completes_a_version(tmp_path: Path, marker: str) -> None:
    make_version(tmp_path, "1", marker=marker)
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_marker_must_be_a_file(tmp_path: Path) -> None:
    version = make_version(tmp_path, "1", marker=None)
    (version / "saved_model.pb").mkdir()
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == []


def test_required_files_any_is_configurable(tmp_path: Path) -> None:
    make_version(tmp_path, "1")  # saved_model.pb only
    make_version(tmp_path, "2", marker="model.onnx")
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all()),
                                      required_files_any=("model.onnx",)))
    assert poll(source, recorder) == [("m", [(2, str(tmp_path / "2"))])]


def test_empty_required_files_any_disables_the_check(tmp_path: Path) -> None:
    make_version(tmp_path, "1", marker=None)
    source, recorder = started(config(monitor(tmp_path), required_files_any=()))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_new_version_offered_only_after_unchanged_for_two_polls(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    v2 = make_version(tmp_path, "2")  # complete by the rule, but a copy may still be going on
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    (v2 / "assets").mkdir()
    (v2 / "assets" / "vocab.txt").write_bytes(b"a")
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    (v2 / "assets" / "vocab.txt").write_bytes(b"a, longer now")
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    # Nothing changed since the last poll: the copy is done.
    assert poll(source, recorder) == [("m", [(2, str(v2))])]


def test_new_version_waits_for_the_settle_time(tmp_path: Path) -> None:
    now = [100.0]
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path), version_settle_seconds=2.0,
                                      clock=lambda: now[0]))
    poll(source, recorder)
    v2 = make_version(tmp_path, "2")
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    now[0] += 1.0
    # Unchanged across two polls, but for 1 s only: a copy pausing between two files.
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]
    now[0] += 1.0
    assert poll(source, recorder) == [("m", [(2, str(v2))])]


def test_version_completed_after_first_poll_must_also_be_stable(tmp_path: Path) -> None:
    v1 = make_version(tmp_path, "1", marker=None)  # half-copied when the server starts
    source, recorder = started(config(monitor(tmp_path)))
    assert poll(source, recorder) == []
    (v1 / "saved_model.pb").write_bytes(b"")
    assert poll(source, recorder) == []
    assert poll(source, recorder) == [("m", [(1, str(v1))])]


def test_stability_check_can_be_switched_off(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path), require_stable_version_dirs=False))
    poll(source, recorder)
    make_version(tmp_path, "2")
    assert poll(source, recorder) == [("m", [(2, str(tmp_path / "2"))])]


def test_missing_base_path_at_first_poll_makes_later_versions_wait(tmp_path: Path) -> None:
    base = tmp_path / "model"
    source, recorder = started(config(monitor(base)))
    assert poll(source, recorder) == []
    make_version(base, "1")
    assert poll(source, recorder) == []
    assert poll(source, recorder) == [("m", [(1, str(base / "1"))])]


def test_offered_version_stays_offered_when_its_files_change(tmp_path: Path) -> None:
    v1 = make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    poll(source, recorder)
    (v1 / "saved_model.pb").unlink()
    (v1 / "extra").write_bytes(b"x")
    assert poll(source, recorder) == [("m", [(1, str(v1))])]


def test_version_dir_symlinked_outside_base_path_is_followed(tmp_path: Path) -> None:
    base = tmp_path / "model"
    base.mkdir()
    target = make_version(tmp_path / "elsewhere", "v7")
    (base / "7").symlink_to(target, target_is_directory=True)
    source, recorder = started(config(monitor(base)))
    assert poll(source, recorder) == [("m", [(7, str(base / "7"))])]


def test_dangling_symlink_is_not_a_version(tmp_path: Path) -> None:
    (tmp_path / "3").symlink_to(tmp_path / "nowhere")
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path, policy=ServableVersionPolicy.all()),
                                      required_files_any=()))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_symlink_cycle_in_new_version_does_not_hang(tmp_path: Path) -> None:
    source, recorder = started(config(monitor(tmp_path)))
    poll(source, recorder)
    v1 = make_version(tmp_path, "1")
    (v1 / "loop").symlink_to(v1, target_is_directory=True)
    assert poll(source, recorder) == []
    assert poll(source, recorder) == [("m", [(1, str(v1))])]


# ---- config: create / update_config ----

def test_relative_base_path_is_rejected() -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(
            config(ServableToMonitor("m", "models/m", ServableVersionPolicy())))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == ("Expected model m to have an absolute path or URI; "
                               "got base_path()=models/m")


def test_relative_base_path_on_update_leaves_config_unchanged(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(monitor(tmp_path)))
    with pytest.raises(ServingError) as e:
        source.update_config(config(monitor(tmp_path), ServableToMonitor("n", "rel")))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert recorder.take() == []
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_file_uri_base_path_is_a_local_path(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source, recorder = started(config(ServableToMonitor("m", f"file://{tmp_path}")))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_unknown_uri_scheme_is_unimplemented() -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(config(ServableToMonitor("m", "hdfs://nn/m")))
    assert e.value.code == Code.UNIMPLEMENTED
    assert e.value.message == "File system scheme 'hdfs' not implemented (file: 'hdfs://nn/m')"


def test_object_store_uri_without_bucket_is_rejected() -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(config(ServableToMonitor("m", "s3:///m")))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == "Model m has base path s3:///m, which names no bucket"


def test_servable_listed_twice_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(config(monitor(tmp_path), monitor(tmp_path)))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == "Illegal to list model m multiple times in config list"


def test_update_config_adds_a_servable(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_version(a, "1")
    make_version(b, "2")
    source, recorder = started(config(monitor(a, "a")))
    assert poll(source, recorder) == [("a", [(1, str(a / "1"))])]
    source.update_config(config(monitor(a, "a"), monitor(b, "b")))
    assert recorder.take() == []
    # The new servable's versions were there before its first poll: offered at once.
    assert poll(source, recorder) == [("a", [(1, str(a / "1"))]), ("b", [(2, str(b / "2"))])]


def test_update_config_drops_a_servable_with_one_empty_list(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_version(a, "1")
    make_version(b, "2")
    source, recorder = started(config(monitor(a, "a"), monitor(b, "b")))
    poll(source, recorder)
    source.update_config(config(monitor(a, "a")))
    assert recorder.take() == [("b", [])]
    assert poll(source, recorder) == [("a", [(1, str(a / "1"))])]


def test_dropped_servable_before_callback_emits_nothing(tmp_path: Path) -> None:
    source = FileSystemStoragePathSource.create(config(monitor(tmp_path, "a")))
    source.update_config(config())
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    assert poll(source, recorder) == []


def test_update_config_changes_version_policy(tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        make_version(tmp_path, v)
    source, recorder = started(config(monitor(tmp_path)))
    poll(source, recorder)
    source.update_config(config(monitor(tmp_path, policy=ServableVersionPolicy.specific([1]))))
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]


def test_update_config_changes_base_path(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    make_version(old, "1")
    make_version(new, "2")
    source, recorder = started(config(monitor(old)))
    poll(source, recorder)
    source.update_config(config(monitor(new)))
    assert poll(source, recorder) == [("m", [(2, str(new / "2"))])]


def test_update_config_to_empty_base_path_keeps_versions(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    make_version(old, "1")
    new.mkdir()
    source, recorder = started(config(monitor(old)))
    poll(source, recorder)
    source.update_config(config(monitor(new)))
    assert poll(source, recorder) == []


def test_changing_poll_period_after_callback_is_rejected(tmp_path: Path) -> None:
    source, _ = started(config(monitor(tmp_path)))
    with pytest.raises(ServingError) as e:
        source.update_config(config(monitor(tmp_path), file_system_poll_wait_seconds=5))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message == "Changing file_system_poll_wait_seconds is not supported"


def test_changing_poll_period_before_callback_is_allowed(tmp_path: Path) -> None:
    # Created never to poll on its own (-1); the period in force when the callback is set (0:
    # one poll, in a thread) is the one the source polls with.
    make_version(tmp_path, "1")
    source = FileSystemStoragePathSource.create(config(monitor(tmp_path)))
    source.update_config(config(monitor(tmp_path), file_system_poll_wait_seconds=0))
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    assert recorder.event.wait(timeout=60), "the one-shot thread did not poll"
    source.stop()
    assert recorder.take() == [("m", [(1, str(tmp_path / "1"))])]
    # The same period again is no change.
    source.update_config(config(monitor(tmp_path), file_system_poll_wait_seconds=0))


def test_fail_if_zero_versions_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(
            config(monitor(tmp_path), fail_if_zero_versions_at_startup=True))
    assert e.value.code == Code.NOT_FOUND
    assert e.value.message == (f"Unable to find a numerical version path for servable m at: "
                               f"{tmp_path}")
    make_version(tmp_path, "1")
    FileSystemStoragePathSource.create(
        config(monitor(tmp_path), fail_if_zero_versions_at_startup=True))


def test_fail_if_zero_versions_with_missing_base_path(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as e:
        FileSystemStoragePathSource.create(
            config(monitor(tmp_path / "absent"), fail_if_zero_versions_at_startup=True))
    assert e.value.code == Code.INVALID_ARGUMENT
    assert e.value.message.startswith(f"Could not find base path {tmp_path / 'absent'} for "
                                      f"servable m with error NOT_FOUND")


def test_check_base_path(tmp_path: Path) -> None:
    """What a reload checks before it adds a model: TF Serving's message for a base path that
    cannot be listed; an empty directory passes (its versions may still come)."""
    check_base_path("m", str(tmp_path))
    check_base_path("m", f"file://{tmp_path}")
    a_file = tmp_path / "file"
    a_file.write_text("")
    for path, error in ((tmp_path / "absent", "NOT_FOUND: {p}; No such file or directory"),
                        (a_file, "FAILED_PRECONDITION: {p}; Not a directory")):
        with pytest.raises(ServingError) as e:
            check_base_path("m", str(path))
        assert (e.value.code, e.value.message) == (
            Code.INVALID_ARGUMENT,
            f"Could not find base path {path} for servable m with error "
            f"{error.format(p=path)}")
    with pytest.raises(ServingError) as e:
        check_base_path("m", "relative")
    assert (e.value.code, e.value.message) == (
        Code.INVALID_ARGUMENT,
        "Expected model m to have an absolute path or URI; got base_path()=relative")


def test_config_from_proto(tmp_path: Path) -> None:
    proto = fs_pb2.FileSystemStoragePathSourceConfig()
    proto.file_system_poll_wait_seconds = 7
    s = proto.servables.add()
    s.servable_name = "m"
    s.base_path = str(tmp_path)
    s.servable_version_policy.specific.versions.append(3)
    cfg = FileSystemStoragePathSourceConfig.from_proto(proto, require_stable_version_dirs=False)
    assert cfg.file_system_poll_wait_seconds == 7
    assert cfg.require_stable_version_dirs is False
    assert cfg.servables == (
        ServableToMonitor("m", str(tmp_path), ServableVersionPolicy.specific([3])),)


# ---- callback and lifecycle contract ----

def test_poll_before_callback_is_a_precondition_failure(tmp_path: Path) -> None:
    source = FileSystemStoragePathSource.create(config(monitor(tmp_path)))
    with pytest.raises(ServingError) as e:
        source.poll_file_system_and_invoke_callback()
    assert e.value.code == Code.FAILED_PRECONDITION


def test_callback_set_twice_is_rejected(tmp_path: Path) -> None:
    source, _ = started(config(monitor(tmp_path)))
    with pytest.raises(ServingError) as e:
        source.set_aspired_versions_callback(Recorder())
    assert e.value.code == Code.FAILED_PRECONDITION


def test_callback_error_propagates_from_manual_poll(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source = FileSystemStoragePathSource.create(config(monitor(tmp_path)))

    def broken(name: str, versions: Sequence[ServableData[str]]) -> None:
        raise RuntimeError("target broke")

    source.set_aspired_versions_callback(broken)
    with pytest.raises(RuntimeError, match="target broke"):
        source.poll_file_system_and_invoke_callback()


def test_stop_is_idempotent_without_a_thread(tmp_path: Path) -> None:
    source, recorder = started(config(monitor(tmp_path)))
    source.stop()
    source.stop()
    make_version(tmp_path, "1")
    assert poll(source, recorder) == [("m", [(1, str(tmp_path / "1"))])]  # manual polls still work


def test_poll_thread_polls_at_once_then_periodically_and_stops(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source = FileSystemStoragePathSource.create(
        config(monitor(tmp_path), file_system_poll_wait_seconds=1))
    recorder = Recorder(notify_after=2)
    source.set_aspired_versions_callback(recorder)
    try:
        assert recorder.event.wait(timeout=60), "the poll thread did not poll twice"
    finally:
        source.stop()
    threads = [t for t in threading.enumerate()
               if t.name == "FileSystemStoragePathSource_filesystem_polling_thread"]
    assert threads == []
    calls = recorder.take()
    assert calls[:2] == [("m", [(1, str(tmp_path / "1"))])] * 2
    source.stop()  # idempotent


def test_zero_poll_wait_polls_exactly_once_in_a_thread(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source = FileSystemStoragePathSource.create(
        config(monitor(tmp_path), file_system_poll_wait_seconds=0))
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    assert recorder.event.wait(timeout=60), "the one-shot thread did not poll"
    source.stop()  # joins the one-shot thread, so no further poll can be pending
    assert recorder.take() == [("m", [(1, str(tmp_path / "1"))])]


def test_stop_before_callback_starts_no_thread(tmp_path: Path) -> None:
    make_version(tmp_path, "1")
    source = FileSystemStoragePathSource.create(
        config(monitor(tmp_path), file_system_poll_wait_seconds=0))
    source.stop()
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    source.stop()
    assert recorder.take() == []
