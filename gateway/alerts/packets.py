"""Undecoded alerts: the bytes a source read and where they came from, ready to be decoded anywhere.

A :class:`Packet` is what the worker pool is fed (:mod:`gateway.pool`): a Kafka message (Confluent wire format,
or a whole Avro container as ZTF streams), or one block of an Avro container file, split off by
:func:`container_packets` without decoding anything (a block's record count and size are in its framing). The
reactor process only reads and slices bytes; :func:`decode_packet` turns a packet into alerts wherever it runs.

With ``by_reference``, a block is not even read: its packet says where its bytes are (:class:`BlockRef`) and the
worker reads them from the file itself, so the ~65 kB of a Rubin alert cross no pipe and the reactor process
touches only the framing. The worker checks it reads the file the reactor opened (device and inode) and that the
bytes end in the container's sync marker; a file replaced or cut under it fails the packet with
:class:`BlockChanged` (nothing is decoded from it, and the source reads the file again).

Container framing (Avro 1.x spec, "Object Container Files"): ``Obj\\x01``, a metadata map (``avro.schema``,
``avro.codec``), a 16-byte sync marker, then blocks of (record count: long, byte size: long, the records, the
sync marker). Codecs ``null`` and ``deflate`` are split here; a file in any other codec is decoded whole by
:func:`gateway.alerts.decode.read_container`.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import fastavro

from gateway.alerts import Alert, AlertError
from gateway.alerts.avro import RecordReader
from gateway.alerts.decode import CONTAINER_MAGIC, decode_message, over_file, reason_of, survey_of_header
from gateway.alerts.schemas import SchemaLibrary
from gateway.errors import in_words

#: codecs whose blocks are split off and decoded in a worker
SPLIT_CODECS = ("null", "deflate")


@dataclass(frozen=True, slots=True)
class Packet:
    """Bytes of one or more alerts. ``header`` (the container's schema JSON and codec) is set for container
    blocks, which hold ``count`` records starting at record index ``position``; None for a Kafka message."""

    data: bytes
    source: str
    position: Union[int, str]
    simulated: bool = False
    header: Optional[tuple[str, str]] = None
    count: int = 1
    #: why the block is short or does not end in the sync marker ("": it is whole); its records before the
    #: damage still decode, as fastavro's reader gives them
    damage: str = ""
    #: where the block's bytes are when ``data`` is empty (``container_packets(..., by_reference=True)``)
    ref: Optional["BlockRef"] = None


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A container block's bytes in a file: ``size`` bytes at ``offset``, then the 16-byte ``sync`` marker, in the
    file with ``identity`` (st_dev, st_ino) at ``path``."""

    path: str
    identity: tuple[int, int]
    offset: int
    size: int
    sync: bytes


class BlockChanged(OSError):
    """The file a block reference points into is gone, another file, or no longer holds the block."""


#: files a process reads blocks from, kept open between the packets of a batch: identity -> file descriptor (a few:
#: one file is read at a time, and a descriptor of a file replaced since still reads the file the reactor sliced)
_open_blocks: "OrderedDict[tuple[int, int], int]" = OrderedDict()
_MAX_OPEN = 4


def close_blocks() -> None:
    """Close the files :func:`read_block` keeps open (a worker does after each batch: an operator who deletes a
    file once it is read gets its space back, and no descriptor waits for the next file)."""
    while _open_blocks:
        os.close(_open_blocks.popitem()[1])


def read_block(ref: BlockRef) -> bytes:
    """The bytes ``ref`` points at; :class:`BlockChanged` if the file is not the one sliced or not whole there."""
    fd = _open_blocks.get(ref.identity)
    if fd is None:
        try:
            fd = os.open(ref.path, os.O_RDONLY)
        except OSError as error:
            raise BlockChanged(f"{ref.path}: cannot read it again ({error.strerror}) while its alerts were read") from None
        status = os.fstat(fd)
        if (status.st_dev, status.st_ino) != ref.identity:
            os.close(fd)
            raise BlockChanged(f"{ref.path}: replaced by another file while its alerts were read")
        _open_blocks[ref.identity] = fd
        while len(_open_blocks) > _MAX_OPEN:
            os.close(_open_blocks.popitem(last=False)[1])
    _open_blocks.move_to_end(ref.identity)
    data = os.pread(fd, ref.size + len(ref.sync), ref.offset)
    if len(data) != ref.size + len(ref.sync) or data[ref.size:] != ref.sync:
        raise BlockChanged(f"{ref.path}: changed while its alerts were read (a block no longer ends in the sync marker)")
    return data[:ref.size]


def _long(handle: BinaryIO) -> int:
    """One zig-zag varint (an Avro long) from ``handle``; EOFError at the end of the data."""
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise EOFError("unexpected end of data in a block header")
        value = byte[0]
        result |= (value & 0x7F) << shift
        if not value & 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def _left(handle: BinaryIO) -> int:
    """Bytes left in the file after the current position."""
    here = handle.tell()
    end = handle.seek(0, io.SEEK_END)
    handle.seek(here)
    return end - here


def _take(handle: BinaryIO, size: int) -> bytes:
    """``size`` bytes, or ValueError when a (damaged) length is negative or runs past the end of the file: a
    varint of a few bytes must not make us allocate terabytes."""
    if size < 0:
        raise ValueError(f"a negative length ({size})")
    if size > _left(handle):
        raise ValueError(f"a length of {size} bytes runs past the end of the file")
    return handle.read(size)


def _header(handle: BinaryIO) -> tuple[dict[str, bytes], bytes]:
    """The metadata map and sync marker of a container whose magic has been read."""
    meta: dict[str, bytes] = {}
    while True:
        count = _long(handle)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's byte size
            count = -count
            _long(handle)
        for _ in range(count):
            key = _take(handle, _long(handle)).decode("utf-8")
            meta[key] = _take(handle, _long(handle))
    sync = handle.read(16)
    if len(sync) != 16:
        raise EOFError("container header ends before its sync marker")
    return meta, sync


def container_packets(path: Union[str, Path], source: str = "", simulated: bool = False, max_block_bytes: int = 0,
                      by_reference: bool = False) -> Iterator[Union[Packet, AlertError]]:
    """The blocks of an Avro container file as packets, in order; problems as AlertError items (never raises).

    ``by_reference``: whole blocks are not read, their packets point into the file (:class:`BlockRef`).
    A file this cannot split (another codec, a damaged header) is decoded whole in this process instead, its
    alerts yielded as ``Alert`` items, so nothing is lost to the choice.
    """
    source = source or str(path)
    yield from over_file(path, source,
                         lambda handle: _blocks(handle, path, source, simulated, max_block_bytes, by_reference))


def _blocks(handle: BinaryIO, path, source: str, simulated: bool, max_block_bytes: int, by_reference: bool = False,
            ) -> Iterator[Union[Packet, Alert, AlertError]]:
    if handle.read(4) != CONTAINER_MAGIC:
        yield from _whole(path, source, simulated)
        return
    try:
        meta, sync = _header(handle)
        schema = meta["avro.schema"].decode("utf-8")
        codec = meta.get("avro.codec", b"null").decode("ascii") or "null"
    except (EOFError, ValueError, KeyError, UnicodeDecodeError):
        yield from _whole(path, source, simulated)
        return
    if codec not in SPLIT_CODECS:
        yield from _whole(path, source, simulated)
        return
    status = os.fstat(handle.fileno())
    identity, end = (status.st_dev, status.st_ino), status.st_size
    index = 0
    while True:
        try:
            count = _long(handle)
        except EOFError:
            break
        try:
            size = _long(handle)
            if count < 0 or size < 0:
                yield AlertError(source, index, "truncated or corrupt Avro: a negative block count or size")
                return
            offset = handle.tell()
            if by_reference and offset + size + 16 <= end and not (max_block_bytes and size > max_block_bytes):
                handle.seek(size, io.SEEK_CUR)
                marker = handle.read(16)
                if marker == sync:
                    ref = BlockRef(str(path), identity, offset, size, sync)
                    yield Packet(b"", source, index, simulated, (schema, codec), count, ref=ref)
                    index += count
                    continue
                handle.seek(offset)  # damaged: read it, below, to decode what comes before the damage
            data = handle.read(min(size, end - offset))  # never more than is there: a short read is damage, below
            marker = handle.read(16)
        except (EOFError, ValueError) as error:
            yield AlertError(source, index, f"truncated or corrupt Avro: {error}")
            return
        if len(data) != size or marker != sync:
            yield Packet(data, source, index, simulated, (schema, codec), count,
                         damage="truncated or corrupt Avro: a block does not end in the sync marker")
            return
        if max_block_bytes and size > max_block_bytes:
            yield AlertError(source, index, f"oversized block: {size} bytes > limit {max_block_bytes}")
        else:
            yield Packet(data, source, index, simulated, (schema, codec), count)
        index += count
    if index == 0:
        yield AlertError(source, 0, "empty file: Avro container holds no alerts")


def read_file(path: Union[str, Path], source: str = "", simulated: bool = False) -> Iterator[Union[Alert, AlertError]]:
    """The alerts of a container file decoded in this process, block by block, as a worker decodes them (cavro,
    fastavro's verdict on what it refuses): what ``vogateway convert`` and a gateway without workers read."""
    library = None  # container blocks carry their writer schema: no lookup by id
    for item in container_packets(path, source, simulated):
        if isinstance(item, Packet):
            yield from decode_packet(item, library)
        else:
            yield item


def _whole(path, source: str, simulated: bool) -> Iterator[Union[Alert, AlertError]]:
    from gateway.alerts.decode import read_container  # the slow path, for files this module cannot split

    yield from read_container(path, source, simulated)


@lru_cache(maxsize=64)
def _parsed(schema_json: str):
    """The record reader and (survey, version) of a container header's writer schema (made once per header)."""
    definition = json.loads(schema_json)
    return RecordReader(definition, fastavro.parse_schema(definition)), survey_of_header(definition)


def decode_packet(packet: Packet, library: Optional[SchemaLibrary]) -> list[Union[Alert, AlertError]]:
    """The alerts (and errors) of one packet, in order. Never raises for bad data. ``library`` resolves the schema
    ids of wire-format packets (container blocks carry their schema)."""
    if packet.header is None:
        return decode_message(packet.data, packet.source, packet.position, library, packet.simulated)
    schema_json, codec = packet.header
    try:
        reader, (survey, version, error) = _parsed(schema_json)
    except Exception as failure:  # fastavro raises assorted types for a damaged schema (SchemaParseException, ...)
        return [AlertError(packet.source, packet.position, f"bad Avro container header: {in_words(failure)}")]
    if error is not None:
        return [AlertError(packet.source, packet.position, error)]
    data = packet.data if packet.ref is None else read_block(packet.ref)  # BlockChanged: the source reads again
    if codec == "deflate":
        try:
            data = zlib.decompress(data, -15)
        except zlib.error as failure:
            return [AlertError(packet.source, packet.position, f"corrupt deflate block: {failure}")]
    records, failure = reader.read_block(data, packet.count)
    items: list[Union[Alert, AlertError]] = []
    for index, record in enumerate(records, packet.position):
        record_version = version or (record.get("schemavsn") if isinstance(record, dict) else None)
        if not record_version:
            items.append(AlertError(packet.source, index, "unknown schema: ZTF record without schemavsn"))
        else:
            items.append(Alert(survey, record_version, record, packet.source, index, packet.simulated))
    if failure is not None:
        items.append(AlertError(packet.source, packet.position + len(records), reason_of(failure)))
        return items
    if packet.damage:
        items.append(AlertError(packet.source, packet.position + packet.count, packet.damage))
    return items
