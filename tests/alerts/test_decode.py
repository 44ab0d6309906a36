"""Decoding: container files and the Confluent wire format, good and bad input."""

import io
import math

import fastavro
import pytest

from gateway.alerts import Alert, AlertError, fields
from gateway.alerts.decode import MAX_PACKET_BYTES, decode_body, decode_wire, encode_wire, read_container, write_container
from gateway.alerts.schemas import rubin_schema_id
from gateway.resources import SAMPLES

from alertdata import LIBRARY, first_record, rubin_files, version_key, ztf_real_files

VERSIONS = sorted(rubin_files(), key=version_key)


def test_every_version_lsst_alert_packet_ships_is_bundled():
    shipped = LIBRARY.versions("rubin")
    if not shipped:
        pytest.skip("lsst-alert-packet (extra 'rubin') not installed")
    assert VERSIONS == shipped
    assert len(VERSIONS) >= 15


@pytest.mark.parametrize("version", VERSIONS)
def test_container_detects_version_from_header(version):
    for path in sorted((SAMPLES / "rubin" / version).glob("*.avro")):
        items = list(read_container(path))
        assert items and all(isinstance(item, Alert) for item in items), items
        assert {(a.survey, a.schema) for a in items} == {("rubin", version)}
        assert [a.position for a in items] == list(range(len(items)))
        assert all(a.source == str(path) for a in items)


@pytest.mark.parametrize("version", VERSIONS)
def test_wire_round_trip(version):
    record, _ = first_record(rubin_files()[version])
    schema = LIBRARY.by_version("rubin", version)
    packet = encode_wire(record, rubin_schema_id(version), schema)
    assert packet[0] == 0 and int.from_bytes(packet[1:5], "big") == rubin_schema_id(version)
    alert = decode_wire(packet, "kafka://t[0]", 17, LIBRARY)
    assert (alert.survey, alert.schema, alert.position, alert.source) == ("rubin", version, 17, "kafka://t[0]")
    assert alert.record == record


def test_ztf_real_files():
    files = ztf_real_files()
    assert len(files) == 3
    versions = set()
    for path in files:
        (alert,) = read_container(path)
        assert alert.survey == "ztf" and alert.simulated is False
        versions.add(alert.schema)
    assert versions == {"3.2", "3.3", "3.5"}


def test_ztf_schema_files_decode_the_real_alerts():
    for path in ztf_real_files():
        with open(path, "rb") as handle:
            raw = handle.read()
        (alert,) = read_container(io.BytesIO(raw), "mem")
        schema = LIBRARY.by_version("ztf", alert.schema)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema.parsed, alert.record)
        again = decode_body(body.getvalue(), schema, "mem", 0)
        assert again.record == alert.record and again.schema == alert.schema


# --- bad input: every one names source, position and reason; the rest of the batch survives -------------------


def several_blocks(path, count=6):
    """A container with ``count`` alerts, one Avro block each (so a cut keeps the earlier ones readable)."""
    record, _ = first_record(rubin_files()["7.4"])
    schema = LIBRARY.by_version("rubin", "7.4")
    # 20 kB cutouts make the records, not the ~40 kB schema header, the bulk of the file
    records = [dict(record, alertId=1000 + n, cutoutDifference=bytes([n]) * 20_000) for n in range(count)]
    with open(path, "wb") as handle:
        fastavro.writer(handle, schema.parsed, records, sync_interval=1)
    return path


def test_truncated_container_yields_good_alerts_then_error(tmp_path):
    path = several_blocks(tmp_path / "six.avro")
    data = path.read_bytes()
    cut = tmp_path / "cut.avro"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    items = list(read_container(cut))
    good = [i for i in items if isinstance(i, Alert)]
    errors = [i for i in items if isinstance(i, AlertError)]
    assert 1 <= len(good) < 6 and len(errors) == 1 and items[-1] is errors[0]
    error = errors[0]
    assert error.source == str(cut) and error.position == len(good)
    assert "truncated" in error.reason or "undecodable" in error.reason
    assert str(cut) in str(error) and f"@ {len(good)}" in str(error)


def test_corrupt_block_in_container(tmp_path):
    path = several_blocks(tmp_path / "six.avro")
    data = bytearray(path.read_bytes())
    with open(path, "rb") as handle:
        sync = fastavro.reader(handle)._header["sync"]
    # damage the sync marker after the third block: the reader must stop there, saying where
    starts = [i for i in range(len(data)) if data.startswith(sync, i)]
    third = starts[3]
    data[third:third + 16] = b"\x00" * 16
    path.write_bytes(bytes(data))
    items = list(read_container(path))
    assert [isinstance(i, Alert) for i in items] == [True, True, True, False]
    assert items[-1].position == 3 and items[-1].reason.startswith("undecodable Avro")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.avro"
    path.write_bytes(b"")
    (error,) = read_container(path)
    assert isinstance(error, AlertError) and error.source == str(path) and error.reason.startswith("empty file")


def test_container_without_alerts(tmp_path):
    path = tmp_path / "none.avro"
    write_container(path, [], LIBRARY.by_version("rubin", "7.4"))
    (error,) = read_container(path)
    assert error.reason.startswith("empty file")


def test_not_avro(tmp_path):
    path = tmp_path / "notes.avro"
    path.write_text("hello, not an alert\n")
    (error,) = read_container(path)
    assert error.reason.startswith("not an Avro container file")


def test_container_with_an_unknown_schema_is_refused(tmp_path):
    path = tmp_path / "other.avro"
    schema = {"type": "record", "name": "acme.alert", "fields": [{"name": "id", "type": "long"}]}
    write_container(path, [{"id": 1}], schema)
    (error,) = read_container(path)
    assert error.reason.startswith("unknown schema") and "acme.alert" in error.reason


def wire_packet(version="7.4", **changes):
    record, _ = first_record(rubin_files()[version])
    record = dict(record, **changes)
    return encode_wire(record, rubin_schema_id(version), LIBRARY.by_version("rubin", version)), record


def test_wrong_magic_byte():
    packet, _ = wire_packet()
    with pytest.raises(AlertError) as caught:
        decode_wire(b"\x01" + packet[1:], "kafka://alerts[0]", 42, LIBRARY)
    error = caught.value
    assert (error.source, error.position) == ("kafka://alerts[0]", 42)
    assert error.reason.startswith("wrong magic byte: 0x01")


def test_unknown_schema_id():
    packet, _ = wire_packet()
    bad = packet[:1] + (9999).to_bytes(4, "big") + packet[5:]
    with pytest.raises(AlertError) as caught:
        decode_wire(bad, "stdin", 0, LIBRARY)
    assert caught.value.reason.startswith("unknown schema id: 9999")


def test_short_and_trailing_and_truncated_bodies():
    packet, _ = wire_packet()
    for data, kind in ((packet[:3], "short packet"), (packet + b"\x00\x00", "trailing bytes"),
                       (packet[: len(packet) // 2], "truncated")):
        with pytest.raises(AlertError) as caught:
            decode_wire(data, "src", 3, LIBRARY)
        assert caught.value.reason.startswith(kind), caught.value.reason


def test_oversized_packet():
    packet, _ = wire_packet()
    with pytest.raises(AlertError) as caught:
        decode_wire(packet, "src", 5, LIBRARY, max_packet_bytes=len(packet) - 1)
    assert caught.value.reason.startswith("oversized packet")
    big = b"\x00" + (704).to_bytes(4, "big") + b"\x00" * MAX_PACKET_BYTES
    with pytest.raises(AlertError, match="oversized packet"):
        decode_wire(big, "src", 6, LIBRARY)


def test_invalid_utf8_in_a_wire_packet():
    source, _ = first_record(rubin_files()["11.1"])
    marker = "QQQQQQQQ"
    packet, _ = wire_packet("11.1", diaSource=dict(source["diaSource"], band=marker))
    assert packet.count(marker.encode()) == 1
    broken = packet.replace(marker.encode(), b"\xff\xfe" + b"Q" * (len(marker) - 2))
    with pytest.raises(AlertError) as caught:
        decode_wire(broken, "src", 9, LIBRARY)
    assert caught.value.reason.startswith("invalid UTF-8")


def test_invalid_utf8_in_a_container_keeps_earlier_alerts(tmp_path):
    path = tmp_path / "utf8.avro"
    (alert,) = read_container(ztf_real_files()[0])
    schema = LIBRARY.by_version("ztf", alert.schema)
    records = [dict(alert.record, objectId=f"ZTF18aaaaaa{c}") for c in "abc"]
    with open(path, "wb") as handle:
        fastavro.writer(handle, schema.parsed, records, sync_interval=1)
    data = path.read_bytes().replace(b"ZTF18aaaaaab", b"ZTF18\xff\xfeaaaab")
    path.write_bytes(data)
    items = list(read_container(path))
    assert isinstance(items[0], Alert) and items[0].record["objectId"] == "ZTF18aaaaaaa"
    assert isinstance(items[1], AlertError) and items[1].position == 1
    assert items[1].reason.startswith("invalid UTF-8")


def test_nan_position_decodes_and_fields_report_none():
    source, _ = first_record(rubin_files()["9.0"])
    packet, _ = wire_packet("9.0", diaSource=dict(source["diaSource"], ra=float("nan"), dec=float("nan")))
    alert = decode_wire(packet, "src", 0, LIBRARY)
    assert math.isnan(alert.record["diaSource"]["ra"])
    detection = fields.detection(alert)
    assert detection.ra is None and detection.dec is None


def test_null_position_in_a_registry_schema_that_allows_it():
    # a schema whose ra/dec are nullable (as a future version could make them): decodes, detection has no position
    schema = LIBRARY.by_version("rubin", "11.1")
    definition = fastavro.schema.to_parsing_canonical_form(schema.parsed)
    import json
    parsed = json.loads(definition)
    source_fields = parsed["fields"][3]["type"]["fields"]
    for field in source_fields:
        if field["name"] in ("ra", "dec"):
            field["type"] = ["null", "double"]
    record, _ = first_record(rubin_files()["11.1"])
    record = dict(record, diaSource=dict(record["diaSource"], ra=None, dec=None))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(parsed), record)
    from gateway.alerts.schemas import AlertSchema
    nullable = AlertSchema.from_definition(parsed, 1101)
    alert = decode_body(body.getvalue(), nullable, "src", 0)
    assert fields.detection(alert).ra is None


def test_missing_optional_fields_are_null():
    source, _ = first_record(rubin_files()["11.1"])
    schema = LIBRARY.by_version("rubin", "11.1")
    source_schema = next(f for f in schema.definition["fields"] if f["name"] == "diaSource")["type"]
    nullable = {f["name"] for f in source_schema["fields"] if isinstance(f["type"], list) and "null" in f["type"]}
    stripped = {key: (None if key in nullable else value) for key, value in source["diaSource"].items()}
    packet, _ = wire_packet("11.1", diaSource=stripped, diaObject=None, prvDiaSources=None)
    alert = decode_wire(packet, "src", 0, LIBRARY)
    detection = fields.detection(alert)
    assert detection.ra is not None and detection.band is None and detection.psf_flux is None
    assert detection.mag is None and detection.snr is None and detection.reliability is None
    assert detection.is_negative is None and detection.is_dipole is None and detection.ra_err is None
    assert fields.previous_detections(alert) == [] and fields.n_previous(alert) == 0
    assert fields.object_summary(alert)["n_detections"] is None
    assert fields.object_key(alert) == f"diaSource:{source['diaSource']['diaSourceId']}"


def test_decode_message_takes_wire_packets_and_containers():
    from gateway.alerts.decode import decode_message

    packet, record = wire_packet()
    (alert,) = decode_message(packet, "kafka://t[0]", 12, LIBRARY)
    assert alert.record == record and alert.position == 12
    container = ztf_real_files()[0].read_bytes()
    (alert,) = decode_message(container, "kafka://ztf[1]", 13, LIBRARY)
    assert alert.survey == "ztf" and (alert.source, alert.position) == ("kafka://ztf[1]", 13)
    (error,) = decode_message(container[: len(container) // 2], "kafka://ztf[1]", 14, LIBRARY)
    assert isinstance(error, AlertError) and error.position == 14 and "(record 0)" in error.reason
    (error,) = decode_message(container, "kafka://ztf[1]", 15, LIBRARY, max_packet_bytes=1000)
    assert error.reason.startswith("oversized packet")
    (error,) = decode_message(b"\x07garbage", "kafka://t[0]", 16, LIBRARY)
    assert error.reason.startswith("wrong magic byte")


def test_container_from_a_pipe():
    import os
    import threading

    data = ztf_real_files()[0].read_bytes()
    read_end, write_end = os.pipe()

    def feed():
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        items = list(read_container(pipe, "stdin"))
    writer.join()
    assert len(items) == 1 and isinstance(items[0], Alert) and items[0].source == "stdin"
