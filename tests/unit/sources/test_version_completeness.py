"""The completeness rule (version_completeness), the tensor bundle index reader, and the storage
path source applying them to versions copied one file at a time, on real TensorFlow exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tfsfast.sources.file_system_storage_path_source import (
    FileSystemStoragePathSource,
    FileSystemStoragePathSourceConfig,
    ServableToMonitor,
)
from tfsfast.sources.servable_version_policy import ServableVersionPolicy
from tfsfast.sources.tensor_bundle_index import BundleIndexError, parse_bundle_index
from tfsfast.sources.version_completeness import (
    CompletenessCache,
    FileInfo,
    incomplete_reason,
    local_listing,
    read_local_file,
    saved_model_declares_variables,
)

INDEX = "variables/variables.index"
SHARD = "variables/variables.data-00000-of-00001"


def reason(version_dir: Path) -> str | None:
    return incomplete_reason(local_listing(str(version_dir)), read_local_file(str(version_dir)))


def copy_files(src: Path, dst: Path, *relative: str) -> None:
    for rel in relative:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)


@pytest.fixture(scope="module")
def merged_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A variables bundle with two data shards (MergeV2Checkpoints) and a partitioned tensor."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("bundle")
    tf.raw_ops.SaveV2(prefix=str(root / "w0"), tensor_names=["a", "p", "p"],
                      shape_and_slices=["", "6 0,3", "6 3,3"],
                      tensors=[tf.constant([1.0, 2.0]), tf.constant([1.0, 2.0, 3.0]),
                               tf.constant([4.0, 5.0, 6.0])])
    tf.raw_ops.SaveV2(prefix=str(root / "w1"), tensor_names=["b"], shape_and_slices=[""],
                      tensors=[tf.constant(list(range(100)), dtype=tf.float64)])
    version = root / "1"
    (version / "variables").mkdir(parents=True)
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(root / "w0"), str(root / "w1")],
                                  destination_prefix=str(version / "variables" / "variables"))
    return version


# ---- the tensor bundle index ----

def test_index_of_a_tf2_export(exported_models: dict[str, Path]) -> None:
    version = exported_models["tf2"]
    index = parse_bundle_index((version / INDEX).read_bytes())
    assert index.num_shards == 1
    assert index.shard_extents == {0: (version / SHARD).stat().st_size}


def test_index_of_a_merged_bundle_names_both_shards(merged_bundle: Path) -> None:
    index = parse_bundle_index((merged_bundle / INDEX).read_bytes())
    # Shard 0 holds a (2 floats) and both slices of p (3 floats each); shard 1 holds b.
    assert index.num_shards == 2
    assert index.shard_extents == {0: 32, 1: 800}
    assert index.data_filename("variables/variables", 1) == (
        "variables/variables.data-00001-of-00002")


def test_snappy_compressed_index_of_an_older_tensorflow() -> None:
    # TF Serving's own test model: its index blocks are Snappy-compressed.
    version = Path("/work/shared/testdata/tfserving/saved_model_half_plus_two_cpu/00000123")
    if not version.exists():
        pytest.skip("TF Serving's test data is not here")
    index = parse_bundle_index((version / INDEX).read_bytes())
    assert (index.num_shards, index.shard_extents) == (1, {0: 20})


def test_truncated_index_is_an_error(exported_models: dict[str, Path]) -> None:
    data = (exported_models["tf2"] / INDEX).read_bytes()
    with pytest.raises(BundleIndexError, match="no table footer at the end of the file"):
        parse_bundle_index(data[:-1])
    with pytest.raises(BundleIndexError, match="shorter than a table footer"):
        parse_bundle_index(data[:10])


def test_corrupted_index_block_fails_its_checksum(exported_models: dict[str, Path]) -> None:
    data = bytearray((exported_models["tf2"] / INDEX).read_bytes())
    data[3] ^= 0xFF
    with pytest.raises(BundleIndexError, match="block at offset 0 fails its checksum"):
        parse_bundle_index(bytes(data))


# ---- the rule ----

def test_whole_exports_are_complete(exported_models: dict[str, Path]) -> None:
    assert reason(exported_models["tf1"]) is None
    assert reason(exported_models["tf2"]) is None


def test_saved_model_pb_alone_is_not_complete(tmp_path: Path,
                                              exported_models: dict[str, Path]) -> None:
    for which in ("tf1", "tf2"):
        version = tmp_path / which
        version.mkdir()
        copy_files(exported_models[which], version, "saved_model.pb")
        assert reason(version) == (
            "saved_model.pb declares variables but variables/variables.index is missing")


def test_index_without_its_data_shard_is_not_complete(tmp_path: Path,
                                                      exported_models: dict[str, Path]) -> None:
    src = exported_models["tf2"]
    copy_files(src, tmp_path, "saved_model.pb", INDEX)
    assert reason(tmp_path) == f"{SHARD} is missing"
    size = (src / SHARD).stat().st_size
    (tmp_path / SHARD).write_bytes((src / SHARD).read_bytes()[:size - 1])
    assert reason(tmp_path) == f"{SHARD} has {size - 1} of its {size} bytes"
    copy_files(src, tmp_path, SHARD)
    assert reason(tmp_path) is None


def test_data_shard_without_its_index_is_not_complete(tmp_path: Path,
                                                      exported_models: dict[str, Path]) -> None:
    copy_files(exported_models["tf1"], tmp_path, "saved_model.pb", SHARD)
    assert reason(tmp_path) == f"{INDEX} is missing (its data shards {SHARD} are there)"


def test_every_shard_of_a_merged_bundle_is_required(tmp_path: Path,
                                                    exported_models: dict[str, Path],
                                                    merged_bundle: Path) -> None:
    copy_files(exported_models["tf2"], tmp_path, "saved_model.pb")
    shutil.copytree(merged_bundle / "variables", tmp_path / "variables")
    assert reason(tmp_path) is None
    (tmp_path / "variables" / "variables.data-00001-of-00002").unlink()
    assert reason(tmp_path) == "variables/variables.data-00001-of-00002 is missing"


def test_export_without_variables_needs_no_index(tmp_path: Path) -> None:
    from tfsfast.testing import export_models

    version = Path(export_models.export_multi_io(str(tmp_path / "1")))
    assert not (version / INDEX).exists()
    assert reason(version) is None


def test_unparseable_saved_model_is_left_to_the_loader(tmp_path: Path) -> None:
    # Truncated or broken: the poller's stability rule and then TensorFlow's load tell which.
    (tmp_path / "saved_model.pb").write_bytes(b"\x12\x05ab")  # a field longer than the file
    assert reason(tmp_path) is None
    with pytest.raises(ValueError, match="not a SavedModel: truncated length-delimited field"):
        saved_model_declares_variables(b"\x12\x05ab")


def test_unreadable_index_is_not_complete(tmp_path: Path,
                                          exported_models: dict[str, Path]) -> None:
    copy_files(exported_models["tf2"], tmp_path, "saved_model.pb", SHARD)
    (tmp_path / INDEX).write_bytes(b"index")
    assert reason(tmp_path) == (f"{INDEX} cannot be read whole yet: 5 bytes is shorter than a "
                                f"table footer")


def test_pbtxt_graph_with_variables(tmp_path: Path, exported_models: dict[str, Path]) -> None:
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString(
        (exported_models["tf1"] / "saved_model.pb").read_bytes())
    text = text_format.MessageToString(saved_model).encode()
    assert saved_model_declares_variables(text, "saved_model.pbtxt")
    (tmp_path / "saved_model.pbtxt").write_bytes(text)
    assert reason(tmp_path) == (
        "saved_model.pbtxt declares variables but variables/variables.index is missing")


def test_tflite_model_is_complete_alone() -> None:
    listing = {"model.tflite": FileInfo(10)}
    assert incomplete_reason(listing, lambda path: b"") is None


def test_missing_required_file() -> None:
    assert incomplete_reason({"variables/variables.index": FileInfo(3)}, lambda path: b"") == (
        "it holds none of saved_model.pb, saved_model.pbtxt, model.tflite")


def test_cache_reads_each_file_version_once(exported_models: dict[str, Path]) -> None:
    version = exported_models["tf2"]
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return (version / path).read_bytes()

    listing = local_listing(str(version))
    cache = CompletenessCache()
    assert incomplete_reason(listing, read, cache=cache, cache_scope="v") is None
    assert incomplete_reason(listing, read, cache=cache, cache_scope="v") is None
    assert reads == [INDEX]


# ---- the source, on versions copied one file at a time ----

def started_source(base: Path) -> tuple[FileSystemStoragePathSource, list]:
    source = FileSystemStoragePathSource.create(FileSystemStoragePathSourceConfig(
        servables=[ServableToMonitor("m", str(base), ServableVersionPolicy.latest())],
        file_system_poll_wait_seconds=-1, version_settle_seconds=0))
    emitted: list = []
    source.set_aspired_versions_callback(
        lambda name, versions: emitted.append([v.id.version for v in versions]))
    return source, emitted


def poll(source: FileSystemStoragePathSource, emitted: list) -> list[int]:
    emitted.clear()
    source.poll_file_system_and_invoke_callback()
    assert len(emitted) == 1
    return emitted[0]


def test_version_copied_saved_model_first_is_offered_only_when_whole(
        tmp_path: Path, exported_models: dict[str, Path]) -> None:
    src = exported_models["tf1"]
    shutil.copytree(src, tmp_path / "1")
    source, emitted = started_source(tmp_path)
    assert poll(source, emitted) == [1]
    v2 = tmp_path / "2"
    v2.mkdir()
    size = (src / SHARD).stat().st_size
    steps = [
        lambda: copy_files(src, v2, "saved_model.pb"),
        lambda: copy_files(src, v2, INDEX),
        lambda: (v2 / SHARD).write_bytes((src / SHARD).read_bytes()[:size // 2]),
    ]
    for step in steps:
        step()
        # Polled again and again while the copy pauses: never offered.
        assert poll(source, emitted) == [1]
        assert poll(source, emitted) == [1]
        assert poll(source, emitted) == [1]
    copy_files(src, v2, SHARD)
    assert poll(source, emitted) == [1]  # complete now; unchanged at the next poll
    assert poll(source, emitted) == [2]


def test_half_copied_version_at_startup_is_not_offered(
        tmp_path: Path, exported_models: dict[str, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    src = exported_models["tf2"]
    shutil.copytree(src, tmp_path / "1")
    (tmp_path / "2").mkdir()
    copy_files(src, tmp_path / "2", "saved_model.pb")
    source, emitted = started_source(tmp_path)
    assert poll(source, emitted) == [1]
    assert (f"Version 2 of servable m at {tmp_path / '2'} is not offered: saved_model.pb "
            f"declares variables but variables/variables.index is missing (yet)") in caplog.text
