"""The server freezes its startup objects so that no full collection walks them mid-request."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tfsfast.server import server


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_startup_objects_are_frozen(unfrozen: None) -> None:
    alive = len(gc.get_objects())
    server._freeze_startup_objects()
    assert gc.get_freeze_count() >= alive * 0.9
    assert len(gc.get_objects()) < alive * 0.1  # a full collection no longer walks them


def test_garbage_made_after_startup_is_still_collected(unfrozen: None) -> None:
    server._freeze_startup_objects()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is None
