"""When a version directory is whole: the rule every storage (local disk, gs://, s3://) applies
before a version is offered for loading, and the check after a load that its variables were
restored.

Copies arrive one file at a time and in any order (``rsync`` and ``gsutil cp -r`` write
``saved_model.pb`` before ``variables/``), and TensorFlow's SavedModel loader quietly accepts a
graph whose ``variables/variables.index`` is missing: it restores nothing and every run then fails
"Attempting to use uninitialized value". So a version is complete only when:

1. it holds ``saved_model.pb`` or ``saved_model.pbtxt`` (or, with neither, ``model.tflite``, whose
   single file has no parts to wait for);
2. if ``variables/variables.index`` is there: it parses whole (``tensor_bundle_index``: footer,
   block checksums), and every data shard it declares, ``variables/variables.data-NNNNN-of-MMMMM``,
   is there and at least as long as the end of the last tensor the index places in it;
3. if it is not: no data shard is there either (they would be a copy under way), and the graph
   declares no variable (no variable op among its nodes). TF1 exports without variables have no
   index at all; every TF2 export has one. A graph file that does not parse does not hold the
   version back: whether it is still being written is the poller's stability rule's to tell,
   and if it is broken, its load reports TensorFlow's error (as TF Serving's would) rather than
   the version waiting for ever.

The rule works on a listing (relative POSIX path → ``FileInfo``) and a function that reads one file
of the version, so every storage applies the same rule to what it lists. The poller adds its own
conditions on top (the listing unchanged across two polls and for a settle time, see
``FileSystemStoragePathSource``); this module is stateless except for ``CompletenessCache``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tfsfast.sources.tensor_bundle_index import (
    BundleIndex,
    parse_bundle_index,
)
from tfsfast.util import proto_wire

SAVED_MODEL_FILENAMES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_FILENAME = "model.tflite"
VARIABLES_PREFIX = "variables/variables"
VARIABLES_INDEX = VARIABLES_PREFIX + ".index"
_DATA_SHARD_RE = re.compile(r"variables/variables\.data-\d{5}-of-\d{5}")

# The ops that create a variable in a GraphDef: TF1 reference variables (VariableV2, Variable),
# resource variables (VarHandleOp, the batched _VarHandlesOp) and AutoReloadVariable. Each of them
# is restored from the variables bundle by the SavedModel loader.
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp", "_VarHandlesOp",
                          "AutoReloadVariable"})


@dataclass(frozen=True)
class FileInfo:
    """One file of a listing: its size and a stamp that changes whenever its content does
    (mtime for a local file, generation or ETag for an object)."""

    size: int
    stamp: Hashable = None


Listing = Mapping[str, FileInfo]
ReadFile = Callable[[str], bytes]


class CompletenessCache:
    """Remembers what was parsed from a file (an index, a graph) by (path, size, stamp), so a
    version that stays incomplete for many polls is not re-read at every one. Not thread-safe:
    one per poller, used under its lock."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._max = max_entries

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute()
        self._entries[key] = value
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return value


def incomplete_reason(listing: Listing, read_file: ReadFile,
                      required_files_any: Iterable[str] = (*SAVED_MODEL_FILENAMES,
                                                           TFLITE_FILENAME),
                      cache: CompletenessCache | None = None,
                      cache_scope: Hashable = None) -> str | None:
    """None if the version whose files are ``listing`` is complete, else why not (a sentence
    fragment naming the missing or short files, e.g. ``variables/variables.index is missing``).

    ``read_file(relative_path)`` returns a file's bytes and may raise ``OSError`` (or any
    exception: a file that cannot be read makes the version incomplete, with the error as the
    reason). ``required_files_any``: the version needs one of these at its top level (empty:
    no such requirement; the SavedModel rule still applies when a SavedModel file is there).
    ``cache`` keeps parsed files across calls, keyed by ``cache_scope`` (the version's location)
    and each file's path, size and stamp.
    """
    required = tuple(required_files_any)
    if required and not any(name in listing for name in required):
        return f"it holds none of {', '.join(required)}"
    graph_file = next((name for name in SAVED_MODEL_FILENAMES if name in listing), None)
    if graph_file is None:
        return None  # a TFLite model, or no requirement at all: nothing more to check

    def cached(path: str, parse: Callable[[bytes], Any]) -> Any:
        info = listing[path]

        def compute() -> Any:
            try:
                data = read_file(path)
            except Exception as e:  # any failure to read is "not complete yet"
                return _Unreadable(f"{path} cannot be read yet: {e}")
            try:
                return parse(data)
            except Exception as e:
                return _Unparseable(f"{path} cannot be read whole yet: {e}")

        if cache is None:
            return compute()
        return cache.get_or_compute((cache_scope, path, info.size, info.stamp), compute)

    if VARIABLES_INDEX in listing:
        index = cached(VARIABLES_INDEX, parse_bundle_index)
        if isinstance(index, _Unreadable):
            return index.reason
        return missing_data_shards(index, listing)

    shards = sorted(path for path in listing if _DATA_SHARD_RE.fullmatch(path))
    if shards:
        return f"{VARIABLES_INDEX} is missing (its data shards {', '.join(shards)} are there)"
    declares = cached(graph_file, lambda data: saved_model_declares_variables(data, graph_file))
    if isinstance(declares, _Unparseable):
        # Not a SavedModel (yet?): the poller's stability rule tells a copy in progress from a
        # broken file, and the load then reports what TensorFlow makes of it.
        return None
    if isinstance(declares, _Unreadable):
        return declares.reason
    if declares:
        return f"{graph_file} declares variables but {VARIABLES_INDEX} is missing"
    return None


def missing_data_shards(index: BundleIndex, listing: Listing) -> str | None:
    """None if every data shard ``index`` declares is in ``listing`` and long enough."""
    problems = []
    for shard_id in range(index.num_shards):
        path = index.data_filename(VARIABLES_PREFIX, shard_id)
        needed = index.shard_extents.get(shard_id, 0)
        info = listing.get(path)
        if info is None:
            problems.append(f"{path} is missing")
        elif info.size < needed:
            problems.append(f"{path} has {info.size} of its {needed} bytes")
    return "; ".join(problems) or None


def saved_model_declares_variables(data: bytes, filename: str = "saved_model.pb") -> bool:
    """Whether any MetaGraph of a serialized SavedModel has a variable op among its nodes.

    ``saved_model.pb`` is walked on the wire (SavedModel.meta_graphs → MetaGraphDef.graph_def →
    GraphDef.node → NodeDef.op) without importing TensorFlow; ``saved_model.pbtxt`` is parsed
    with TensorFlow's text format. Raises ``ValueError`` for bytes that are not a SavedModel.
    """
    if filename.endswith(".pbtxt"):
        from google.protobuf import text_format
        from tensorflow.core.protobuf import saved_model_pb2

        saved_model = saved_model_pb2.SavedModel()
        text_format.Parse(data.decode("utf-8"), saved_model)
        return any(meta_graph_declares_variables(m) for m in saved_model.meta_graphs)
    view = memoryview(data)
    variable_ops = {op.encode() for op in VARIABLE_OPS}
    for meta_graph in _len_fields(view, 2):          # SavedModel.meta_graphs
        for graph in _len_fields(meta_graph, 2):     # MetaGraphDef.graph_def
            for node in _len_fields(graph, 1):       # GraphDef.node
                for op in _len_fields(node, 2):      # NodeDef.op
                    if bytes(op) in variable_ops:
                        return True
    return False


def meta_graph_declares_variables(meta_graph_def: Any) -> bool:
    """Whether a (parsed) MetaGraphDef has a variable op among its graph's nodes."""
    return any(node.op in VARIABLE_OPS for node in meta_graph_def.graph_def.node)


@dataclass(frozen=True)
class _Unreadable:
    """A file that could not be read (a store's error): the version is not complete yet."""

    reason: str


@dataclass(frozen=True)
class _Unparseable(_Unreadable):
    """A file that was read but does not parse (truncated, or not what its name says)."""


def _len_fields(buf: memoryview, number: int) -> list[memoryview]:
    """The length-delimited fields numbered ``number`` of a serialized message."""
    try:
        return [value for field, wire_type, value in proto_wire.fields(buf)
                if field == number and wire_type == proto_wire.LEN]
    except proto_wire.WireError as e:
        raise ValueError(f"not a SavedModel: {e}") from None


def local_listing(root: str) -> dict[str, FileInfo]:
    """The files under ``root`` as a listing (symlinks followed, each directory listed once).

    Raises ``OSError`` if ``root`` cannot be listed; a file that vanishes during the walk is left
    out (a copy tool's temporary file).
    """
    import os
    import stat

    files: dict[str, FileInfo] = {}
    root_stat = os.stat(root)
    seen_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir)) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in seen_dirs:
                    seen_dirs.add((st.st_dev, st.st_ino))
                    stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                files[rel] = FileInfo(st.st_size, st.st_mtime_ns)
    return files


def read_local_file(root: str) -> ReadFile:
    """A ``ReadFile`` for the version directory ``root`` on local disk."""
    import os

    def read(path: str) -> bytes:
        with open(os.path.join(root, path), "rb") as f:
            return f.read()

    return read
