"""Fuzzing the parsers that read what strangers send (hypothesis): Avro alerts (random bytes, and real sample alerts
with bytes flipped, cut or inserted), VTP frames and transport messages, VOEvents, and the filter language.

Each property: nothing raises but our own clear error types; every error reason is a sentence for a person (no
exception repr, no traceback); and the good items in the same batch as the bad ones still go through, unchanged.
Examples are capped so that the whole file runs in well under 30 s.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import fastavro
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet import task

from gateway.alerts import Alert, AlertError
from gateway.alerts.ids import issue_id
from gateway.alerts.decode import decode_message, encode_wire, read_container
from gateway.alerts.packets import Packet, container_packets, decode_packet
from gateway.alerts.schemas import SchemaLibrary, rubin_schema_id
from gateway.config import load
from gateway.convert import make_converter
from gateway.event import Event
from gateway.filters import FilterError, compile_filter
from gateway.pipeline import Pipeline, Router, SeenIvorns
from gateway.resources import SAMPLES
from gateway.voevent.ivorn import event_stream
from gateway.voevent.parse import parse_event
from gateway.vtp import messages
from gateway.vtp.broker import Broker
from gateway.vtp.framing import frame
from vtp.vtpkit import Recorder, connect, ivorn, voevent

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: what a reason for a person must not contain: an exception's repr, a traceback, Python's own words for a bug
NOT_FOR_PEOPLE = re.compile(r"\b\w*(Error|Exception|Warning)\(|Traceback|object at 0x|<class |NoneType")
LIBRARY = SchemaLibrary()
ZTF_FILE = sorted(p for p in (SAMPLES / "ztf").glob("*.avro") if not p.name.startswith("simulated"))[0]
RUBIN_FILE = SAMPLES / "rubin" / "11.1" / "simulated.avro"
CONTAINERS = {"ztf": ZTF_FILE.read_bytes(), "rubin": RUBIN_FILE.read_bytes()}


def records(path):
    with open(path, "rb") as handle:
        return list(fastavro.reader(handle))


RUBIN_RECORDS = records(RUBIN_FILE)
RUBIN_SCHEMA = LIBRARY.by_version("rubin", "11.1")
GOOD_WIRE = [encode_wire(record, rubin_schema_id("11.1"), RUBIN_SCHEMA) for record in RUBIN_RECORDS[:2]]


def for_people(reason: str) -> None:
    assert reason and not NOT_FOR_PEOPLE.search(reason), reason


def mutated(data: bytes, edits) -> bytes:
    """``data`` with each edit applied: (kind, where as a fraction of the length, byte)."""
    out = bytearray(data)
    for kind, where, value in edits:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[at] ^= value or 0xFF
        elif kind == "set" and out:
            out[at] = value
        elif kind == "insert":
            out[at:at] = bytes([value]) * (1 + value % 7)
        elif kind == "delete" and out:
            del out[at:at + 1 + value % 13]
        elif kind == "cut":
            del out[at:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
                           st.floats(0, 1, allow_nan=False), st.integers(0, 255)), min_size=1, max_size=4)


def checked(items) -> tuple[list, list]:
    """(alerts, errors) of a decoder's output; nothing else may be in it."""
    alerts, errors = [], []
    for item in items:
        assert isinstance(item, (Alert, AlertError)), item
        (alerts if isinstance(item, Alert) else errors).append(item)
    for error in errors:
        for_people(error.reason)
    return alerts, errors


# -- Avro ----------------------------------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_as_a_kafka_message_are_refused_with_a_reason(data):
    alerts, errors = checked(decode_message(data, "kafka://t[0]", 7, LIBRARY))
    assert not alerts or data[:4] == b"Obj\x01"


@FUZZ
@given(st.binary(min_size=1, max_size=400), st.sampled_from([b"\x00", b"\x00\x00\x00\x04\x4d", b"Obj\x01"]))
def test_random_bodies_behind_real_headers_are_refused_with_a_reason(body, header):
    data = header + body  # 0x00 0x0000044d: the wire header of schema id 1101, Rubin 11.1
    checked(decode_message(data, "kafka://t[0]", 7, LIBRARY))


@FUZZ
@given(st.sampled_from(sorted(CONTAINERS)), EDITS)
def test_a_mutated_real_container_yields_alerts_and_reasons_never_an_exception(survey, edits):
    data = mutated(CONTAINERS[survey], edits)
    alerts, errors = checked(read_container(io.BytesIO(data), "mutated.avro"))
    assert alerts or errors
    assert all(isinstance(a.record, dict) for a in alerts)


@FUZZ
@given(st.sampled_from(sorted(CONTAINERS)), EDITS)
# found by this test: fastavro's EOFError names the stream's repr ("cannot read float from <_io.BytesIO object at
# 0x...>"); a damaged header schema raised SchemaParseException out of decode_packet (failing a worker's whole
# batch, so the file was read again and again); a damaged length varint made the block splitter allocate ~2**62
# bytes (MemoryError)
@example("ztf", [("flip", 0.45780794670357117, 76), ("insert", 0.7036289568532951, 7),
                 ("cut", 0.3623153598885013, 121)])
@example("ztf", [("set", 0.08704041503401128, 87), ("set", 0.8410738651765448, 15)])
@example("ztf", [("flip", 0.8125697804262119, 211), ("cut", 0.38889843973377125, 81),
                 ("delete", 0.6165853405052735, 10), ("delete", 0.5875444090749432, 149)])
def test_a_mutated_container_split_into_blocks_decodes_as_the_whole_file_does(tmp_path_factory, survey, edits):
    path = tmp_path_factory.mktemp("fuzz") / "mutated.avro"
    path.write_bytes(mutated(CONTAINERS[survey], edits))
    items = []
    for packet in container_packets(path, "mutated.avro"):
        items.extend(decode_packet(packet, LIBRARY) if isinstance(packet, Packet) else [packet])
    checked(items)


@pytest.fixture(scope="module")
def converter():
    return make_converter(load())


def pipeline_with(converter):
    sink = Recorder()
    return Pipeline(converter, parse_event, Router([sink]), SeenIvorns(clock=task.Clock()),
                    decode=lambda packet: decode_packet(packet, LIBRARY)), sink


@FUZZ
@given(st.integers(0, len(GOOD_WIRE[0]) - 1), EDITS)
def test_a_mutated_wire_packet_between_good_ones_leaves_them_untouched(converter, which, edits):
    pipeline, sink = pipeline_with(converter)
    bad = mutated(GOOD_WIRE[0], edits)
    batch = [GOOD_WIRE[0], bad, GOOD_WIRE[1]]
    for n, data in enumerate(batch):
        pipeline.ingest_packet(Packet(data, "kafka://t[0]", n))
    routed = {event.ivorn for event in sink.events}
    stream = event_stream("vogateway.local", "alerts", "rubin")
    good = {f"{stream}#{issue_id(Alert('rubin', '11.1', record, '', 0))}" for record in RUBIN_RECORDS[:2]}
    assert good <= routed
    assert pipeline.stats.converted + pipeline.stats.duplicates + pipeline.stats.rejected_total == 3
    # a damaged alert that still decodes is converted or refused for a reason, never by a converter crash
    assert "conversion failed" not in pipeline.stats.rejected, pipeline.stats.rejected


# -- VTP -----------------------------------------------------------------------------------------------------------

TRANSPORTS = [messages.ack("ivo://sub/x", ivorn("e1"), 0), messages.iamalive("ivo://b/x", 0),
              messages.authenticate_response("ivo://sub/x", "ivo://b/x", ["//Param[@name='mag']"], 0),
              messages.nak("ivo://sub/x", ivorn("e1"), "no", 0), voevent("e1")]


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.tuples(st.sampled_from(TRANSPORTS), EDITS).map(lambda pair: mutated(*pair))))
def test_a_transport_message_parses_or_says_why(payload):
    try:
        message = messages.parse_message(payload)
    except messages.MessageError as error:
        for_people(str(error))
        return
    assert isinstance(message, (messages.Transport, messages.VOEventMessage))
    assert messages.quick_ack_origin(payload) in (None, getattr(message, "origin", None))


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80),
                          st.tuples(st.sampled_from(TRANSPORTS), EDITS).map(lambda pair: mutated(*pair))),
                max_size=6),
       st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_broker_survives_garbage_frames_split_anywhere_and_still_reads_the_ack_after_them(garbage, cuts):
    clock = task.Clock()
    broker = Broker("ivo://vtp.test/broker", clock=clock)
    broker.start()
    proto, transport = connect(broker)
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    broker.accept(Event(ivorn=ivorn("e1"), role="test", received=now, xml=voevent("e1"), origin="test"))
    clock.advance(broker.flush_interval)
    stream = b"".join(frame(payload) for payload in garbage) + frame(TRANSPORTS[0])  # the good ack, last
    offset, n = 0, 0
    while offset < len(stream):  # delivered in reads of assorted sizes
        proto.dataReceived(stream[offset:offset + cuts[n % len(cuts)]])
        offset, n = offset + cuts[n % len(cuts)], n + 1
    assert not transport.disconnecting and proto in broker.subscribers
    assert ivorn("e1") not in proto.outstanding and proto.acked + proto.naked >= 1
    broker.stop()


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([b"e2", b"e3"]), EDITS), min_size=1, max_size=3))
def test_mutated_voevents_are_refused_with_a_reason_and_good_ones_still_routed(batch):
    sink = Recorder()
    pipeline = Pipeline(None, parse_event, Router([sink]), SeenIvorns(clock=task.Clock()))
    sent = []
    for name, edits in batch:
        sent.append(mutated(voevent(name.decode()), edits))
        pipeline.ingest_voevent(sent[-1], origin="vtp://127.0.0.1:1")
    pipeline.ingest_voevent(voevent("good"), origin="vtp://127.0.0.1:1")
    assert ivorn("good") in [event.ivorn for event in sink.events]
    for kind in pipeline.stats.rejected:
        for_people(kind)


# -- the filter language -------------------------------------------------------------------------------------------

TOKENS = ["mag", "band", "survey", "reliability", "snr", "ra", "dec", "solar_system", "diaSource.snr",
          "candidate.magpsf", "prvDiaSources[0].band", "nosuch.field", "cone(", "distance(", "after(", "before(",
          "xpath(", "matches(", "abs(", "lower(", "nosuch(", "(", ")", ",", "and", "or", "not", "in", "is", "null",
          "true", "false", "==", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "19.5", "0", "-3", "1e400",
          "'g'", '"r"', "'2026-01-01T00:00:00'", "'[('", "'//Param[@name=\"mag\"]/@value'", "'", '"', "[", "]"]


@pytest.fixture(scope="module")
def sample_events(converter):
    from gateway.alerts.files import iter_inputs

    alerts = [a for a in iter_inputs([SAMPLES / "ztf", SAMPLES / "rubin" / "11.1"]) if isinstance(a, Alert)]
    return [converter(alert) for alert in alerts]


@FUZZ
@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join),
                 st.text(alphabet=st.characters(codec="utf-8"), max_size=60)))
def test_a_filter_compiles_or_says_why_and_never_raises_when_run(sample_events, text):
    try:
        selects = compile_filter(text)
    except FilterError as error:
        for_people(str(error))
        return
    for event in sample_events:
        assert selects(event) in (True, False)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join))
def test_a_bad_filter_in_a_batch_of_rules_leaves_the_good_ones_working(sample_events, text):
    batch = ["mag < 19.5", text, "survey == 'ztf'"]
    compiled = []
    for rule in batch:
        try:
            compiled.append(compile_filter(rule))
        except FilterError:
            compiled.append(None)
    bright, ztf = compiled[0], compiled[2]
    assert [bright(e) for e in sample_events] == [e.view.mag is not None and e.view.mag < 19.5 for e in sample_events]
    assert [ztf(e) for e in sample_events] == [e.view.survey == "ztf" for e in sample_events]
    assert 0 < sum(map(bright, sample_events)) < len(sample_events)
