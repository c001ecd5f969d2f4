"""The handle table the request path reads without locking.

One source, built twice: imported as it is, this is the pure-Python ``_handle_table_py``;
compiled by Cython with the C declarations of ``_handle_table.pxd`` it is the extension module
``_handle_table`` (typed dicts and fields, ``find`` a C call for compiled callers). Import
``tfsfast.core.handle_table``, which picks one.

A read-mostly snapshot in the manner of TF Serving's ``FastReadDynamicPtr``: the manager builds a
new immutable snapshot and swaps it in with one attribute store; a reader loads the attribute once
and looks up in that snapshot without taking a lock. A reader that raced with a swap sees the
previous snapshot, which stays valid because the entries it holds stay alive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tfsfast.core.servable_handle import ServingEntry

EARLIEST = 0
LATEST = 1


class _Stream:
    """The published versions of one servable stream, and its earliest and latest."""

    __slots__ = ("earliest", "latest", "versions")

    def __init__(self, entries: Iterable[ServingEntry]) -> None:
        versions = {e.id.version: e for e in entries}
        ordered = sorted(versions)
        self.versions = versions
        self.earliest = versions[ordered[0]]
        self.latest = versions[ordered[-1]]


class HandleTable:
    """Maps (name, version | auto policy) to the published ``ServingEntry``.

    Thread-safety: ``find`` may be called from any number of threads at once with no locking;
    ``update`` is called by the manager only, one call at a time.
    """

    __slots__ = ("_streams",)

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def update(self, entries_by_name: Mapping[str, Iterable[ServingEntry]]) -> None:
        """Publishes a new snapshot holding exactly these entries."""
        streams = {}
        for name, entries in entries_by_name.items():
            listed = list(entries)
            if listed:
                streams[name] = _Stream(listed)
        self._streams = streams

    def find(self, name: str, version: int | None, policy: int = LATEST) -> ServingEntry | None:
        stream = self._streams.get(name)
        if stream is None:
            return None
        if version is not None:
            return stream.versions.get(version)
        return stream.latest if policy == LATEST else stream.earliest

    def available_versions(self, name: str) -> list[int]:
        stream = self._streams.get(name)
        return sorted(stream.versions) if stream is not None else []

    def names(self) -> list[str]:
        return list(self._streams)
