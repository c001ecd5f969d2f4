"""How REST workers learn the model config in force: the messages the server writes to a
worker's stdin, ``ServerCore``'s config listeners, and ``ServerConfigFollower`` applying,
retrying and giving up, over a real ServerCore."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tfsfast.server import model_config as mc
from tfsfast.server import rest_workers
from tfsfast.server.server_core import ServerCore, ServerCoreOptions
from tfsfast.testing.wait import wait_until
from tfsfast.util.status import Code, ServingError

# Longest a test waits for the core to load a version (a wait, not a speed check).
WAIT_SECONDS = 60


def config(base: Path, labels: dict[str, int] | None = None) -> Any:
    text = (f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
            'model_platform: "tensorflow" ')
    text += "".join(f'version_labels {{ key: "{k}" value: {v} }} '
                    for k, v in (labels or {}).items())
    return mc.parse_model_server_config(text + "} }")


# --- messages -------------------------------------------------------------------------------------


def test_messages_round_trip_and_end_with_the_stream(tmp_path: Path) -> None:
    first, second = config(tmp_path / "a"), config(tmp_path / "b", {"stable": 1})
    stream = io.BytesIO()
    for c in (first, second):
        rest_workers.write_config_message(stream, c.SerializeToString())
    stream.seek(0)
    assert rest_workers.read_config_in_force(stream) == first
    assert rest_workers.read_config_message(stream) == second.SerializeToString()
    assert rest_workers.read_config_message(stream) is None


def test_a_message_cut_short_is_the_end(tmp_path: Path) -> None:
    stream = io.BytesIO()
    rest_workers.write_config_message(stream, config(tmp_path).SerializeToString())
    stream = io.BytesIO(stream.getvalue()[:-1])
    assert rest_workers.read_config_message(stream) is None


def test_no_config_in_force_when_the_server_has_exited() -> None:
    with pytest.raises(ServingError) as e:
        rest_workers.read_config_in_force(io.BytesIO())
    assert (e.value.code, e.value.message) == (
        Code.UNAVAILABLE,
        "The server process exited before it sent this REST worker the model config in force")


def test_a_worker_starts_without_the_labels(tmp_path: Path) -> None:
    labelled = config(tmp_path, {"stable": 1, "canary": 2})
    assert rest_workers.without_version_labels(labelled) == config(tmp_path)
    assert dict(labelled.model_config_list.config[0].version_labels) == {"stable": 1,
                                                                         "canary": 2}


# --- over a real ServerCore -----------------------------------------------------------------------


@pytest.fixture
def core(model_base: Any) -> Iterator[ServerCore]:
    """Serves m version 1, and polls its base path every second."""
    base = model_base("m", v1="tf1")
    core = ServerCore.create(ServerCoreOptions(
        model_server_config=config(base), file_system_poll_wait_seconds=1,
        max_num_load_retries=0, reload_config_timeout_seconds=WAIT_SECONDS))
    core.base = base  # type: ignore[attr-defined]
    yield core
    core.stop()


def test_config_listeners_see_the_config_in_force_then_each_new_one(core: ServerCore) -> None:
    seen: list[Any] = []
    core.add_config_listener(seen.append)
    assert seen == [core.config]
    labelled = config(core.base, {"stable": 1})  # type: ignore[attr-defined]
    core.reload_config(labelled)
    assert seen == [config(core.base), labelled]  # type: ignore[attr-defined]
    with pytest.raises(ServingError):  # a reload that fails puts nothing in force
        core.reload_config(config(core.base, {"stable": 9}))  # type: ignore[attr-defined]
    assert seen == [config(core.base), labelled]  # type: ignore[attr-defined]


@pytest.fixture
def pipe() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb") as writer:
        yield reader, writer


def test_a_config_that_fails_is_retried_until_it_applies(
        core: ServerCore, pipe: tuple[IO[bytes], IO[bytes]], exported_models: dict[str, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = pipe
    base: Path = core.base  # type: ignore[attr-defined]
    gave_up = threading.Event()
    follower = rest_workers.ServerConfigFollower(
        core, core.config, reader, give_up_seconds=WAIT_SECONDS, on_give_up=gave_up.set,
        retry_seconds=0.05)
    follower.start()
    # The server labelled version 2, which this process has not loaded yet.
    wanted = config(base, {"stable": 2})
    rest_workers.write_config_message(writer, wanted.SerializeToString())
    wait_until(lambda: "could not apply the server's model config" in caplog.text,
               "the failure to be logged")
    assert core.config == config(base)  # the previous config serves meanwhile
    assert caplog.text.count("could not apply") == 1  # said once, not at every retry
    assert ("Request to assign label to version 2 of model m, which is not currently available "
            "for inference; serving the previous one and trying again every 0.05 s"
            ) in caplog.text
    shutil.copytree(exported_models["tf1_three"], base / "2.tmp")
    (base / "2.tmp").rename(base / "2")
    wait_until(lambda: core.config == wanted, "the labelled config to apply")
    assert core.get_model_version_for_label("m", "stable") == 2
    assert not gave_up.is_set()
    follower.stop()


def test_a_config_that_never_applies_makes_the_worker_give_up(
        core: ServerCore, pipe: tuple[IO[bytes], IO[bytes]],
        caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = pipe
    base: Path = core.base  # type: ignore[attr-defined]
    gave_up = threading.Event()
    follower = rest_workers.ServerConfigFollower(
        core, core.config, reader, give_up_seconds=0.5, on_give_up=gave_up.set,
        retry_seconds=0.05)
    follower.start()
    rest_workers.write_config_message(writer, config(base, {"stable": 9}).SerializeToString())
    assert gave_up.wait(WAIT_SECONDS)
    assert core.config == config(base)
    assert ("could not apply the server's model config within 0.5 s "
            "(--reload_config_timeout_seconds): FAILED_PRECONDITION: Request to assign label to "
            "version 9 of model m, which is not currently available for inference; exiting, for "
            "the server to start it again with the config in force") in caplog.text


def test_a_stopped_follower_applies_nothing(core: ServerCore,
                                            pipe: tuple[IO[bytes], IO[bytes]]) -> None:
    reader, writer = pipe
    base: Path = core.base  # type: ignore[attr-defined]
    follower = rest_workers.ServerConfigFollower(
        core, core.config, reader, give_up_seconds=WAIT_SECONDS, on_give_up=lambda: None)
    before = set(threading.enumerate())
    follower.start()
    (reader_thread,) = [t for t in set(threading.enumerate()) - before
                        if t.name == "tfsfast_config_reader"]
    labelled = config(base, {"stable": 1})
    rest_workers.write_config_message(writer, labelled.SerializeToString())
    wait_until(lambda: core.config == labelled, "the labelled config to apply")
    follower.stop()
    rest_workers.write_config_message(writer, config(base).SerializeToString())
    writer.close()
    reader_thread.join(WAIT_SECONDS)  # it has read everything: the stream ended
    assert not reader_thread.is_alive()
    assert core.config == labelled
