"""Container files split into packets (blocks) and decoded elsewhere give exactly what read_container gives."""

from __future__ import annotations

import fastavro
import pytest

from gateway.alerts import Alert, AlertError
from gateway.alerts.decode import encode_wire, read_container, write_container
from gateway.alerts.packets import BlockChanged, Packet, container_packets, decode_packet, read_file
from gateway.alerts.schemas import SchemaLibrary
from gateway.resources import SAMPLES

SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*.avro"))


def decoded(path, library, by_reference: bool = False) -> list:
    items = []
    for item in container_packets(path, by_reference=by_reference):
        items.extend(decode_packet(item, library) if isinstance(item, Packet) else [item])
    return items


def as_comparable(items):
    return [(i.survey, i.schema, i.position, i.record) if isinstance(i, Alert) else ("error", i.position, i.reason)
            for i in items]


@pytest.mark.parametrize("by_reference", [False, True], ids=["bytes", "by reference"])
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_packets_decode_to_the_same_alerts_as_read_container(path, by_reference):
    library = SchemaLibrary()
    assert as_comparable(decoded(path, library, by_reference)) == as_comparable(list(read_container(path)))


def kinds(items):
    return [(i.position, i.reason.split(":")[0]) if isinstance(i, AlertError) else (i.position, i.record["diaSourceId"])
            for i in items]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_read_file_decodes_here_what_fastavro_reads(path):
    """What ``vogateway convert`` and a gateway without workers read: blocks decoded in this process (cavro)."""
    assert as_comparable(read_file(path)) == as_comparable(list(read_container(path)))


def test_read_file_of_a_damaged_file_gives_what_fastavro_gives(tmp_path):
    path = one_per_block(tmp_path)
    data = path.read_bytes()
    for cut_at in (len(data) // 3, len(data) * 2 // 3, len(data) - 5):
        path.write_bytes(data[:cut_at])
        # the same alerts, then one error at the same record; its words may differ (fastavro's reader reads a whole
        # block before it decodes one: "Expected 17826 bytes, read 8859"; a block decoder meets the end inside a
        # record, or names the missing sync marker), as they already do between the pool and fastavro's reader
        here, there = kinds(read_file(path)), kinds(read_container(path))
        assert [k[0] for k in here] == [k[0] for k in there]
        assert here[:-1] == there[:-1] and "Avro" in here[-1][1]
    not_avro = tmp_path / "text.avro"
    not_avro.write_bytes(b"this is not Avro at all")
    assert as_comparable(read_file(not_avro)) == as_comparable(list(read_container(not_avro)))


def one_per_block(tmp_path, name="alerts.avro", copies=3):
    with open(SAMPLES / "rubin" / "11.1" / "simulated.avro", "rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    path = tmp_path / name
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records * copies, sync_interval=1)
    return path


def test_by_reference_the_packets_carry_no_bytes_and_the_decoder_reads_the_file(tmp_path):
    path = one_per_block(tmp_path)
    packets = list(container_packets(path, by_reference=True))
    assert packets and all(p.data == b"" and p.ref.path == str(path) for p in packets)
    assert sum(p.ref.size for p in packets) < path.stat().st_size  # the blocks, not the header and markers


def test_a_file_replaced_or_rewritten_after_slicing_fails_the_packet_and_decodes_nothing(tmp_path):
    path = one_per_block(tmp_path)
    library = SchemaLibrary()
    packets = list(container_packets(path, by_reference=True))
    data = path.read_bytes()
    # rewritten in place: the same file, other bytes where the block was
    with open(path, "r+b") as handle:
        handle.seek(packets[1].ref.offset + packets[1].ref.size)
        handle.write(b"\xff" * 16)
    with pytest.raises(BlockChanged, match="changed while its alerts were read"):
        decode_packet(packets[1], library)
    # cut short
    path.write_bytes(data[:packets[2].ref.offset + 10])
    with pytest.raises(BlockChanged, match="changed while its alerts were read"):
        decode_packet(packets[2], library)
    # replaced by another file of the same name (a new inode), before this process opened it
    fresh = one_per_block(tmp_path, "other.avro")
    later = list(container_packets(fresh, by_reference=True))
    fresh.rename(tmp_path / "moved.avro")
    (tmp_path / "other.avro").write_bytes(data)
    with pytest.raises(BlockChanged, match="replaced by another file"):
        decode_packet(later[0], library)
    (tmp_path / "other.avro").unlink()
    with pytest.raises(BlockChanged, match="cannot read it again"):
        decode_packet(later[0], library)


def test_a_damaged_block_comes_with_its_bytes_by_reference_too(tmp_path):
    path = one_per_block(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    packets = list(container_packets(path, by_reference=True))
    assert packets[-1].ref is None and packets[-1].damage
    assert as_comparable(decoded(path, SchemaLibrary(), True)) == as_comparable(decoded(path, SchemaLibrary()))


def test_many_records_per_block_and_deflate(tmp_path):
    path = SAMPLES / "ztf" / "simulated.avro"
    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    target = tmp_path / "deflated.avro"
    with open(target, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records * 5, codec="deflate", sync_interval=200_000)
    packets = [p for p in container_packets(target) if isinstance(p, Packet)]
    assert len(packets) < len(records) * 5  # several records per block
    assert as_comparable(decoded(target, SchemaLibrary())) == as_comparable(list(read_container(target)))


def test_a_truncated_file_yields_the_alerts_before_the_damage_then_one_error(tmp_path):
    with open(SAMPLES / "rubin" / "11.1" / "simulated.avro", "rb") as handle:
        reader = fastavro.reader(handle)
        schema, records = reader.writer_schema, list(reader)
    whole = tmp_path / "whole.avro"
    with open(whole, "wb") as handle:  # one record per block
        fastavro.writer(handle, fastavro.parse_schema(schema), records, sync_interval=1)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avro"
    cut.write_bytes(data[: len(data) * 2 // 3])
    items = decoded(cut, SchemaLibrary())
    good = [i for i in items if isinstance(i, Alert)]
    errors = [i for i in items if isinstance(i, AlertError)]
    assert 0 < len(good) < len(records) and len(errors) == 1 and "truncated" in errors[0].reason
    assert errors[0].position == len(good)
    assert as_comparable(good) == as_comparable(list(read_container(whole))[: len(good)])


def test_not_a_container_and_empty_files(tmp_path):
    text = tmp_path / "notes.avro"
    text.write_text("not avro at all")
    assert [e.reason for e in decoded(text, SchemaLibrary())] == [
        "not an Avro container file: missing the 'Obj\\x01' magic"]
    empty = tmp_path / "empty.avro"
    with open(SAMPLES / "ztf" / "simulated.avro", "rb") as handle:
        schema = fastavro.reader(handle).writer_schema
    write_container(empty, [], schema)
    assert [e.reason for e in decoded(empty, SchemaLibrary())] == ["empty file: Avro container holds no alerts"]


def test_a_wire_packet_is_decoded_with_the_library():
    library = SchemaLibrary()
    path = SAMPLES / "rubin" / "11.1" / "simulated.avro"
    with open(path, "rb") as handle:
        record = next(iter(fastavro.reader(handle)))

    schema = library.by_version("rubin", "11.1")
    packet = Packet(encode_wire(record, schema.schema_id, schema), "kafka://t[0]", 42)
    [alert] = decode_packet(packet, library)
    assert alert.record == record and alert.position == 42 and alert.schema == "11.1"
    [error] = decode_packet(Packet(b"\x07garbage", "kafka://t[0]", 43), library)
    assert error.position == 43 and "magic" in error.reason
