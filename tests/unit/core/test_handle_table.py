"""The lock-free handle table, compiled and Python twin alike."""

from __future__ import annotations

import random
import threading

import pytest

from tfsfast import _extensions, check_extensions
from tfsfast.core.servable_handle import ServingEntry
from tfsfast.core.servable_id import ServableId
from tfsfast.testing.test_util import implementations, import_impl

IMPLS = implementations("tfsfast.core._handle_table", "tfsfast.core._handle_table_py")


def entries(name: str, *versions: int) -> list[ServingEntry]:
    return [ServingEntry(ServableId(name, v), f"{name}-{v}") for v in versions]


@pytest.fixture(params=IMPLS)
def impl(request):
    return import_impl(request.param)


def test_empty_table_finds_nothing(impl) -> None:
    table = impl.HandleTable()
    assert table.find("m", None, impl.LATEST) is None
    assert table.find("m", 1) is None
    assert table.available_versions("m") == []


def test_latest_earliest_specific(impl) -> None:
    table = impl.HandleTable()
    table.update({"m": entries("m", 3, 1, 2), "n": entries("n", 7)})
    assert table.find("m", None, impl.LATEST).servable == "m-3"
    assert table.find("m", None, impl.EARLIEST).servable == "m-1"
    assert table.find("m", 2).servable == "m-2"
    assert table.find("m", 4) is None
    assert table.find("n", None, impl.LATEST).servable == "n-7"
    assert table.available_versions("m") == [1, 2, 3]
    assert sorted(table.names()) == ["m", "n"]


def test_update_replaces_whole_snapshot(impl) -> None:
    table = impl.HandleTable()
    table.update({"m": entries("m", 1)})
    table.update({"m": entries("m", 2), "gone": []})
    assert table.find("m", 1) is None
    assert table.find("m", None, impl.LATEST).servable == "m-2"
    assert table.names() == ["m"]


def test_readers_always_see_a_complete_snapshot(impl) -> None:
    """Readers racing with swaps find either the old or the new version, never nothing."""
    table = impl.HandleTable()
    table.update({"m": entries("m", 1)})
    stop = threading.Event()
    misses: list[object] = []

    def read() -> None:
        while not stop.is_set():
            entry = table.find("m", None, impl.LATEST)
            if entry is None or entry.servable not in ("m-1", "m-2"):
                misses.append(entry)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(2000):
        table.update({"m": entries("m", 1 + i % 2)})
    stop.set()
    for t in readers:
        t.join()
    assert misses == []


def test_the_compiled_table_answers_as_the_python_one() -> None:
    # One source, compiled and imported as Python: the same snapshots and lookups, the same
    # answers (and the compiled one really is the extension module).
    if _extensions.NO_EXTENSIONS:
        pytest.skip("TFSFAST_NO_EXTENSIONS is set")
    assert check_extensions.check_module("tfsfast.core._handle_table").status == "compiled"
    compiled = import_impl("tfsfast.core._handle_table")
    python = import_impl("tfsfast.core._handle_table_py")
    rng = random.Random(15)
    tables = compiled.HandleTable(), python.HandleTable()
    for _ in range(200):
        snapshot = {name: entries(name, *rng.sample(range(1, 6), rng.randint(0, 3)))
                    for name in rng.sample(["a", "b", "c"], rng.randint(0, 3))}
        for table in tables:
            table.update(snapshot)
        for name in ("a", "b", "c", "d"):
            answers = [(table.names(), table.available_versions(name),
                        [table.find(name, version) for version in (None, 0, 1, 3, 5)],
                        table.find(name, None, compiled.EARLIEST),
                        table.find(name, None, compiled.LATEST)) for table in tables]
            assert answers[0] == answers[1]
