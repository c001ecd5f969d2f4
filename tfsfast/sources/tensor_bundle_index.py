"""Reads a TensorFlow tensor bundle's ``.index`` file: how many data shards the bundle has and how
many bytes of each one its tensors occupy.

A SavedModel's variables are the tensor bundle ``variables/variables`` (TensorFlow's
``util/tensor_bundle/tensor_bundle.h``): ``variables.index`` is an immutable string→string table
(``lib/io/table``, LevelDB's SSTable format) whose ``""`` key holds a ``BundleHeaderProto``
(``num_shards``) and whose other keys map tensor names to ``BundleEntryProto``s (the tensor's
bytes are ``[offset, offset + size)`` of data file ``shard_id``, named
``variables.data-<shard_id:05d>-of-<num_shards:05d>``).

Why a parser of the documented format rather than TensorFlow's checkpoint reader: the reader
(``py_checkpoint_reader``) answers names, shapes and dtypes but not where each tensor lies, which
is what tells whether a data shard is whole; it also needs all of TensorFlow imported (seconds,
on the thread that polls the storage), and it cannot read an index from an object store without
copying it to a file first. The table is simple: a 48-byte footer pointing at an index block,
which points at data blocks of prefix-compressed keys, each block with a masked CRC32C that is
checked here, so a partly written index is reported as such, never misread. Current TensorFlow
writes blocks uncompressed (``BundleWriter`` sets ``kNoCompression``); older releases wrote them
with Snappy (TF Serving's own test models have such indexes), whose block format is decoded here
too (``_snappy_decompress``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import google_crc32c

from tfsfast.util import proto_wire

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic number
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C
_NO_COMPRESSION = 0
_SNAPPY_COMPRESSION = 1
_CRC_MASK_DELTA = 0xA282EAD8


class BundleIndexError(ValueError):
    """The bytes are not a whole tensor bundle index (truncated, still being written, or not an
    index at all); the message says what is wrong."""


@dataclass(frozen=True)
class BundleIndex:
    """What an index says about its data files.

    ``num_shards``: how many data files the bundle has. ``shard_extents``: for each shard id that
    holds tensor bytes, the end of the last tensor in it (the file must be at least that long).
    """

    num_shards: int
    shard_extents: dict[int, int]

    def data_filename(self, prefix: str, shard_id: int) -> str:
        """TensorFlow's ``DataFilename``: ``<prefix>.data-00000-of-00002``."""
        return f"{prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"


def parse_bundle_index(data: bytes) -> BundleIndex:
    """Parses a ``.index`` file's bytes; raises ``BundleIndexError`` if they are not whole."""
    try:
        return _parse(memoryview(data))
    except proto_wire.WireError as e:
        raise BundleIndexError(f"malformed index: {e}") from None


def _parse(view: memoryview) -> BundleIndex:
    if len(view) < _FOOTER_SIZE:
        raise BundleIndexError(f"{len(view)} bytes is shorter than a table footer")
    footer = view[len(view) - _FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, 40)[0]
    if magic != _TABLE_MAGIC:
        raise BundleIndexError("no table footer at the end of the file")
    pos = 0
    _metaindex, pos = _block_handle(footer, pos)
    index_handle, _ = _block_handle(footer, pos)

    num_shards: int | None = None
    extents: dict[int, int] = {}
    for _index_key, handle_bytes in _block_entries(_read_block(view, index_handle)):
        handle, _ = _block_handle(handle_bytes, 0)
        for key, value in _block_entries(_read_block(view, handle)):
            if key == b"":
                num_shards = _header_num_shards(value)
                continue
            entry = _bundle_entry(value)
            if entry is None:
                continue  # a partitioned tensor's full entry: its slices have entries of their own
            shard_id, end = entry
            extents[shard_id] = max(extents.get(shard_id, 0), end)
    if num_shards is None:
        raise BundleIndexError("the table has no bundle header")
    for shard_id in extents:
        if not 0 <= shard_id < num_shards:
            raise BundleIndexError(f"a tensor names data shard {shard_id} of {num_shards}")
    return BundleIndex(num_shards, extents)


def _read_block(view: memoryview, handle: tuple[int, int]) -> memoryview:
    offset, size = handle
    end = offset + size + _BLOCK_TRAILER_SIZE
    if end > len(view) - _FOOTER_SIZE:
        raise BundleIndexError(f"block [{offset}, {end}) runs past the end of the file")
    contents = view[offset:offset + size]
    block_type = view[offset + size]
    stored = struct.unpack_from("<I", view, offset + size + 1)[0]
    actual = google_crc32c.value(bytes(view[offset:offset + size + 1]))
    if stored != _mask_crc(actual):
        raise BundleIndexError(f"block at offset {offset} fails its checksum")
    if block_type == _NO_COMPRESSION:
        return contents
    if block_type == _SNAPPY_COMPRESSION:
        return memoryview(_snappy_decompress(contents))
    raise BundleIndexError(f"block at offset {offset} has unknown compression {block_type}")


def _snappy_decompress(data: memoryview) -> bytes:
    """Decodes one Snappy block (the raw format: a varint length, then literals and copies)."""
    length, pos = proto_wire.read_varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                width = n - 59
                n = int.from_bytes(data[pos:pos + width], "little")
                pos += width
            n += 1
            if pos + n > len(data):
                raise BundleIndexError("truncated Snappy literal")
            out += data[pos:pos + n]
            pos += n
            continue
        if kind == 1:
            n = 4 + ((tag >> 2) & 7)
            distance = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            n = 1 + (tag >> 2)
            width = 2 if kind == 2 else 4
            distance = int.from_bytes(data[pos:pos + width], "little")
            pos += width
        if distance == 0 or distance > len(out) or pos > len(data):
            raise BundleIndexError("corrupt Snappy copy")
        start = len(out) - distance
        for i in range(n):  # copies may overlap what they produce
            out.append(out[start + i])
    if len(out) != length:
        raise BundleIndexError(f"Snappy block decodes to {len(out)} bytes, not {length}")
    return bytes(out)


def _mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _block_entries(block: memoryview) -> list[tuple[bytes, memoryview]]:
    """The (key, value) pairs of a table block, keys rebuilt from their shared prefixes."""
    if len(block) < 4:
        raise BundleIndexError("block shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (1 + num_restarts)
    if limit < 0:
        raise BundleIndexError("block restart array larger than the block")
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = proto_wire.read_varint(block, pos)
        non_shared, pos = proto_wire.read_varint(block, pos)
        value_length, pos = proto_wire.read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > limit:
            raise BundleIndexError("block entry out of bounds")
        key = key[:shared] + bytes(block[pos:pos + non_shared])
        pos += non_shared
        entries.append((key, block[pos:pos + value_length]))
        pos += value_length
    return entries


def _block_handle(buf: memoryview, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = proto_wire.read_varint(buf, pos)
    size, pos = proto_wire.read_varint(buf, pos)
    return (offset, size), pos


def _header_num_shards(value: memoryview) -> int:
    """``BundleHeaderProto.num_shards`` (field 1)."""
    num_shards = 0
    for number, wire_type, field_value in proto_wire.fields(value):
        if number == 1 and wire_type == proto_wire.VARINT:
            assert isinstance(field_value, int)
            num_shards = field_value
    if num_shards <= 0:
        raise BundleIndexError(f"bundle header says {num_shards} data shards")
    return num_shards


def _bundle_entry(value: memoryview) -> tuple[int, int] | None:
    """``(shard_id, offset + size)`` of a ``BundleEntryProto`` (fields 3, 4, 5); None for the
    full entry of a partitioned tensor (it has ``slices``, field 7, and no bytes of its own)."""
    shard_id = offset = size = 0
    for number, wire_type, field_value in proto_wire.fields(value):
        if number == 7:
            return None
        if wire_type != proto_wire.VARINT:
            continue
        assert isinstance(field_value, int)
        if number == 3:
            shard_id = field_value
        elif number == 4:
            offset = field_value
        elif number == 5:
            size = field_value
    return shard_id, offset + size
