"""Avro alert packets -> :class:`Alert` records: object container files and the Confluent wire format.

The schema is always taken from the data: a container's header carries its writer schema (record name
``lsst.vM_m.alert`` or ``ztf.alert`` with a version); a wire-format packet carries a schema id (byte 0 is
the magic 0, bytes 1-4 the big-endian id, then the schemaless Avro body) that the :class:`SchemaLibrary`
resolves. Nothing is guessed: a packet that fits no known schema is an :class:`AlertError` naming the source,
the position (record index, Kafka offset) and the reason.

A record whose position is NaN or null still decodes here (it is well-formed Avro); ``fields.detection``
reports ``ra=None`` and the converter rejects it.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

import fastavro
import fastavro.schema

from gateway.alerts import Alert, AlertError
from gateway.alerts.schemas import AlertSchema, SchemaLibrary, SchemaLookupError, identify
from gateway.errors import in_words

#: Byte 0 of a Confluent wire-format packet
MAGIC = 0
#: magic byte + 4-byte schema id
HEADER_BYTES = 5
#: first bytes of an Avro object container file
CONTAINER_MAGIC = b"Obj\x01"
#: Largest packet accepted by default (config ``sources.max_packet_bytes``): Rubin alerts with cutouts are
#: ~100 kB; a packet a hundred times bigger is a mistake or an attack, not an alert.
MAX_PACKET_BYTES = 4_000_000


def reason_of(error: Exception) -> str:
    """A short rejection reason: its kind before the colon, so rejections can be counted by kind."""
    if isinstance(error, UnicodeDecodeError):
        return f"invalid UTF-8: {error}"
    if isinstance(error, (EOFError, StopIteration)):
        # fastavro says what it was reading and the stream's repr ("cannot read float from <_io.BytesIO object
        # at 0x...>"): the first half is for people, the second is not
        said = re.sub(r"\s*from <[^>]*>", "", str(error)).strip()
        return f"truncated Avro: {said or 'the data ends inside a record'}"
    if isinstance(error, (IndexError, struct.error)):
        # fastavro reads past the end of a cut buffer this way too (or a union index points nowhere); Python's
        # own words for that ("string index out of range") say nothing to a person
        return "truncated or corrupt Avro: a record runs past the end of the data or names a type that is not there"
    return f"undecodable Avro: {in_words(error)}"


def read_container(path_or_fileobj: Union[str, Path, BinaryIO], source: str = "", simulated: bool = False,
                   ) -> Iterator[Union[Alert, AlertError]]:
    """Alerts from one Avro object container file, in order; problems come as AlertError items.

    ``source`` names the input in errors (defaults to the path). A truncated or corrupt file yields the
    alerts before the damage, then one AlertError naming the record index; an empty file or one that is not
    an Avro container yields a single AlertError. The iterator never raises for bad data.
    """
    if isinstance(path_or_fileobj, (str, Path)):
        source = source or str(path_or_fileobj)
        yield from over_file(path_or_fileobj, source, lambda handle: _read_container(handle, source, simulated))
    else:
        yield from _read_container(path_or_fileobj, source or getattr(path_or_fileobj, "name", "<stream>"), simulated)


def over_file(path: Union[str, Path], source: str, read: Callable[[BinaryIO], Iterator]) -> Iterator:
    """The items ``read`` yields from the file opened for reading, or the AlertError that says why it cannot be."""
    try:
        handle = open(path, "rb")
    except OSError as error:
        yield AlertError(source, None, f"unreadable file: {error.strerror}")
        return
    with handle:
        yield from read(handle)


def _read_container(handle: BinaryIO, source: str, simulated: bool) -> Iterator[Union[Alert, AlertError]]:
    if not handle.seekable():
        handle = io.BytesIO(handle.read())  # e.g. a pipe: the header check below needs to step back
    start = handle.read(4)
    if not start:
        yield AlertError(source, 0, "empty file: no Avro container header")
        return
    if start != CONTAINER_MAGIC:
        yield AlertError(source, 0, "not an Avro container file: missing the 'Obj\\x01' magic")
        return
    handle.seek(-len(start), io.SEEK_CUR)
    try:
        reader = fastavro.reader(handle)
        header = reader.writer_schema
    except Exception as error:  # fastavro raises assorted types for a damaged header
        yield AlertError(source, 0, f"bad Avro container header: {in_words(error)}")
        return
    survey, version, problem = survey_of_header(header)
    if problem is not None:
        yield AlertError(source, 0, problem)
        return
    index = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except Exception as error:
            yield AlertError(source, index, reason_of(error))
            return
        record_version = version or record.get("schemavsn")
        if not record_version:
            yield AlertError(source, index, "unknown schema: ZTF record without schemavsn")
        else:
            yield Alert(survey, record_version, record, source, index, simulated)
        index += 1
    if index == 0:
        yield AlertError(source, 0, "empty file: Avro container holds no alerts")


def survey_of_header(header) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(survey, version, None) of a container's writer schema, or (None, None, reason) when it is not an alert's.

    A ZTF file whose schema has no version attribute gives version None: each record's ``schemavsn`` says it.
    """
    try:
        survey, version = identify(header)
    except SchemaLookupError as error:
        if isinstance(header, dict) and header.get("name") == "ztf.alert":
            return "ztf", None, None
        return None, None, error.reason
    return survey, version, None


def decode_wire(data: bytes, source: str, position, library: SchemaLibrary, simulated: bool = False,
                max_packet_bytes: int = MAX_PACKET_BYTES) -> Alert:
    """One Confluent wire-format packet -> Alert; raises AlertError naming ``source``, ``position`` and why.

    May block on a schema-registry request the first time a schema id is seen (see SchemaLibrary.lookup).
    """
    size = len(data)
    if size > max_packet_bytes:
        raise AlertError(source, position, f"oversized packet: {size} bytes > limit {max_packet_bytes}")
    if size <= HEADER_BYTES:
        raise AlertError(source, position, f"short packet: {size} bytes, no room for the 5-byte wire header and a body")
    if data[0] != MAGIC:
        raise AlertError(source, position, f"wrong magic byte: 0x{data[0]:02x} (Confluent wire format starts with 0x00)")
    schema_id = int.from_bytes(data[1:HEADER_BYTES], "big")
    try:
        schema = library.by_id(schema_id)
    except SchemaLookupError as error:
        raise AlertError(source, position, error.reason) from None
    return decode_body(data, schema, source, position, simulated, offset=HEADER_BYTES)


def decode_message(data: bytes, source: str, position, library: SchemaLibrary, simulated: bool = False,
                   max_packet_bytes: int = MAX_PACKET_BYTES) -> list[Union[Alert, AlertError]]:
    """One Kafka message: a Confluent wire-format packet (Rubin) or a whole Avro container (as ZTF streams).

    Returns the alerts and errors it holds, each at ``position`` (a container's record index goes into the
    error reason). Never raises for bad data.
    """
    if len(data) > max_packet_bytes:
        return [AlertError(source, position, f"oversized packet: {len(data)} bytes > limit {max_packet_bytes}")]
    if data[:4] == CONTAINER_MAGIC:
        items = []
        for item in read_container(io.BytesIO(data), source, simulated):
            if isinstance(item, AlertError):
                items.append(AlertError(source, position, f"{item.reason} (record {item.position})"))
            else:
                items.append(replace(item, position=position))
        return items
    try:
        return [decode_wire(data, source, position, library, simulated, max_packet_bytes)]
    except AlertError as error:
        return [error]


def decode_body(data: bytes, schema: AlertSchema, source: str, position, simulated: bool = False,
                offset: int = 0) -> Alert:
    """A schemaless Avro body (from ``offset``) written with ``schema``; the whole buffer must be used."""
    try:
        record, left = schema.reader.read(data, offset)
    except Exception as error:
        raise AlertError(source, position, reason_of(error)) from None
    if left:
        raise AlertError(source, position, f"trailing bytes: {left} after the record (wrong schema id {schema.schema_id}?)")
    version = schema.version
    if schema.survey == "ztf" and isinstance(record, dict):
        version = record.get("schemavsn") or version
    return Alert(schema.survey, version, record, source, position, simulated)


def encode_wire(record: dict, schema_id: int, schema) -> bytes:
    """``record`` as a Confluent wire-format packet: 0x00, 4-byte big-endian ``schema_id``, schemaless Avro.

    ``schema`` is an AlertSchema or a schema dict (plain or parsed). For tests, benchmarks and sample data.
    """
    if isinstance(schema, AlertSchema):
        parsed = schema.parsed
    else:
        parsed = schema if schema.get("__fastavro_parsed") else fastavro.parse_schema(schema)
    stream = io.BytesIO()
    stream.write(bytes((MAGIC,)) + int(schema_id).to_bytes(4, "big"))
    fastavro.schemaless_writer(stream, parsed, record)
    return stream.getvalue()


def write_container(path_or_fileobj, records, schema, codec: str = "null") -> None:
    """Write ``records`` as an Avro object container with ``schema`` (AlertSchema or dict) in the header."""
    definition = schema.definition if isinstance(schema, AlertSchema) else schema
    parsed = fastavro.parse_schema(definition)
    if isinstance(path_or_fileobj, (str, Path)):
        with open(path_or_fileobj, "wb") as handle:
            fastavro.writer(handle, parsed, records, codec=codec)
    else:
        fastavro.writer(path_or_fileobj, parsed, records, codec=codec)
