"""gateway.alerts.avro: cavro reads what fastavro reads, and bad data gets fastavro's verdict whichever read it."""

import io
import json
import math
import random
import zlib

import fastavro
import pytest
from alertdata import first_record, rubin_files, ztf_real_files

from gateway.alerts.avro import RecordReader
from gateway.alerts.decode import reason_of
from gateway.alerts.packets import Packet, container_packets, decode_packet
from gateway.alerts.schemas import SchemaLibrary
from gateway.resources import SAMPLES


def same(a, b) -> bool:
    """Equal values of the same types (NaN equal to NaN: the samples have NaN fields)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def sample_files():
    return [*rubin_files().values(), *ztf_real_files(), *sorted((SAMPLES / "ztf").glob("simulated*.avro"))]


def blocks(path):
    """(reader, decompressed block bytes, count) of every block of a container file."""
    out = []
    for packet in container_packets(path):
        schema_json, codec = packet.header
        definition = json.loads(schema_json)
        data = zlib.decompress(packet.data, -15) if codec == "deflate" else packet.data
        out.append((RecordReader(definition, fastavro.parse_schema(definition)), data, packet.count))
    return out


def fastavro_records(reader: RecordReader, data: bytes, count: int) -> list:
    stream = io.BytesIO(data)
    return [fastavro.schemaless_reader(stream, reader.parsed, None) for _ in range(count)]


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cavro_reads_every_sample_as_fastavro_does(path):
    for reader, data, count in blocks(path):
        assert reader._fast is not None, "cavro refused the schema: these alerts would be read by fastavro alone"
        records, failure = reader.read_block(data, count)
        assert failure is None
        assert same(records, fastavro_records(reader, data, count))


def test_a_wire_body_reads_as_fastavro_reads_it_and_trailing_bytes_are_counted():
    record, schema = first_record(rubin_files()["11.1"])
    reader = RecordReader(schema, fastavro.parse_schema(schema))
    stream = io.BytesIO(b"\x00\x00\x00\x02\xe6")
    fastavro.schemaless_writer(stream, reader.parsed, record)
    body = stream.getvalue()
    got, left = reader.read(body, 5)
    assert same(got, fastavro.schemaless_reader(io.BytesIO(body[5:]), reader.parsed, None)) and left == 0
    assert reader.read(body + b"\x00\x01\x02", 5)[1] == 3


def mutations(data: bytes, rng: random.Random, n: int):
    for _ in range(n):
        damaged = bytearray(data)
        kind = rng.random()
        if kind < 0.4:
            for _ in range(rng.randint(1, 5)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind < 0.7:
            damaged = damaged[:rng.randrange(len(damaged))]
        else:
            at = rng.randrange(len(damaged))
            damaged[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
        yield bytes(damaged)


@pytest.mark.parametrize("path", [rubin_files()["11.1"], ztf_real_files()[0]], ids=lambda p: p.parent.name)
def test_damaged_records_get_fastavro_s_verdict(path):
    """Whatever cavro makes of a damaged record, the result is fastavro's: the same record, or the same error."""
    reader, data, _ = blocks(path)[0]
    rng = random.Random(20261206)
    verdicts = {"read": 0, "refused": 0}
    for damaged in mutations(data, rng, 400):
        try:
            expected, error = fastavro.schemaless_reader(io.BytesIO(damaged), reader.parsed, None), None
        except Exception as failure:
            expected, error = None, failure
        if error is None:
            assert same(reader.read(damaged)[0], expected)
            verdicts["read"] += 1
        else:
            with pytest.raises(type(error)) as raised:
                reader.read(damaged)
            assert reason_of(raised.value) == reason_of(error)  # the words a person reads
            verdicts["refused"] += 1
    assert verdicts["read"] > 20 and verdicts["refused"] > 100  # both kinds were tried


def test_invalid_utf8_is_refused_not_replaced():
    schema = {"type": "record", "name": "r", "fields": [{"name": "s", "type": "string"}]}
    reader = RecordReader(schema, fastavro.parse_schema(schema))
    with pytest.raises(UnicodeDecodeError):
        reader.read(b"\x04\xff\xfe")


def test_a_schema_cavro_refuses_is_read_by_fastavro():
    # a dash is not allowed in an Avro name: cavro says so, fastavro reads it anyway, as the gateway always has
    schema = {"type": "record", "name": "odd-name", "fields": [{"name": "x", "type": "long"}]}
    reader = RecordReader(schema, fastavro.parse_schema(schema))
    assert reader._fast is None
    assert reader.read(b"\x04") == ({"x": 2}, 0)
    assert reader.read_block(b"\x04\x06", 2) == ([{"x": 2}, {"x": 3}], None)


def test_a_block_damaged_in_the_middle_gives_the_records_before_and_the_error():
    path = rubin_files()["11.1"]
    reader, data, _ = blocks(path)[0]
    whole = data * 3
    cut = whole[:len(data) * 2 + len(data) // 2]
    records, failure = reader.read_block(cut, 3)
    assert len(records) == 2 and failure is not None
    header = container_packets(path).__next__().header
    items = decode_packet(Packet(cut, "cut.avro", 0, header=header, count=3), SchemaLibrary())
    assert [type(item).__name__ for item in items] == ["Alert", "Alert", "AlertError"]
    assert items[2].position == 2 and items[2].reason.startswith("truncated")
