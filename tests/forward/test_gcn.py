"""GCN-style forwards: JSON notices and VOEvents to a Kafka-protocol broker (Tansu on loopback), VOEvents to a
VTP receiver (ours, on loopback)."""

import json
import math

import numpy
import pytest
import pytest_twisted
from lxml import etree
from twisted.internet import threads

from forward.kit import events, rubin_event, until
from forward.test_outbox import make_config, rows, start, stop
from gateway.alerts import fields
from gateway.filters import Facts
from gateway.forward import outbox
from gateway.forward.common import internal_name, validation_errors
from gateway.forward.gcn import NOTICE_SCHEMA, GcnNotices, notice
from gateway.resources import resource
from gateway.times import parse_iso
from gateway.voevent.parse import event_from_tree, parse_event, safe_fromstring
from kafka_broker import kafka_broker  # noqa: F401  (the fixture)
from vtp.test_loopback import Node


def retraction_of(event):
    """A VOEvent retracting ``event`` (as it could arrive over VTP)."""
    root = etree.fromstring(event.xml)
    root.set("ivorn", event.ivorn + "-retraction")
    for old in root.findall("Citations"):
        root.remove(old)
    citations = etree.SubElement(root, "Citations")
    cited = etree.SubElement(citations, "EventIVORN", cite="retraction")
    cited.text = event.ivorn
    etree.SubElement(citations, "Description").text = "retracted: artefact"
    # Citations must come before Description/Reference in VOEvent 2.0; order does not matter to the notice
    return parse_event(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), origin="vtp://test")


END_MARK = b"end of the test's messages"


def consume(broker, topic, group):
    """Every message on ``topic`` (one partition), read from the start once the forward has stopped.

    A marker produced now comes after anything the forward sent, so reading up to it reads every duplicate too (no
    waiting "a moment" for one to show up). ``group`` names the reader only: it is assigned the partition.
    """
    import time

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    broker.produce(topic, [END_MARK])
    consumer = broker.consumer(group)
    messages = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while not messages or messages[-1].value() != END_MARK:
            assert time.monotonic() < deadline, f"no end marker on {topic} within 30 s, {len(messages)} read"
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages[:-1]


@pytest_twisted.inlineCallbacks
def test_json_notices_and_voevents_to_kafka(database, kafka_broker):  # noqa: F811
    notices_topic = kafka_broker.create_topic("gcn.notices.vogateway.test")
    voevent_topic = kafka_broker.create_topic("gcn.classic.voevent.VOGATEWAY_TEST")
    selected = events("ztf") + events("rubin", "11.1")
    retraction = retraction_of(selected[0])
    settings = {"client.id": "vogateway-test"}
    config = make_config(
        {"name": "notices", "kind": "gcn-kafka", "brokers": kafka_broker.bootstrap, "topic": notices_topic,
         "settings": settings, "filter": "survey in ('ztf', 'rubin')", "timeout": 20.0},
        {"name": "voevents", "kind": "voevent-kafka", "brokers": kafka_broker.bootstrap, "topic": voevent_topic,
         "filter": "survey == 'ztf'", "timeout": 20.0})
    sink, services = yield start(config, database)
    try:
        for event in selected + [retraction]:
            yield sink.accept(event)
        ztf = [e for e in selected if e.alert.survey == "ztf"]
        yield until(lambda: len(rows(database, status="sent")) == len(selected) + 1 + len(ztf) + 1, timeout=60,
                    what="all sent to Kafka")
    finally:
        yield stop(services)
    notices = yield threads.deferToThread(consume, kafka_broker, notices_topic, "t-notices")
    assert len(notices) == len(selected) + 1  # once each
    by_ivorn = {}
    for message in notices:
        body = json.loads(message.value())
        assert validation_errors(body, *NOTICE_SCHEMA) == []
        ours = json.loads(body["additional_info"])
        assert message.key().decode() == f"notices:{ours['ivorn']}"
        assert "$schema" not in body  # ours is published nowhere: none rather than one a consumer cannot fetch
        by_ivorn[ours["ivorn"]] = body
    assert by_ivorn[retraction.ivorn]["alert_type"] == "retraction"
    for event in selected:
        body = by_ivorn[event.ivorn]
        det = fields.detection(event.alert)
        assert math.isclose(body["ra"], det.ra, rel_tol=1e-6) and math.isclose(body["dec"], det.dec, rel_tol=1e-6)
        assert body["mission"] == {"ztf": "ZTF", "rubin": "Rubin"}[event.alert.survey]
        assert body["alert_tense"] == ("test" if event.role == "test" else "current")
        repeat = fields.n_previous(event.alert) > 0 or (event.view.n_detections or 0) > 1
        assert body["alert_type"] == ("subsequent" if repeat else "initial")
        assert fields.object_key(event.alert) in body["id"]
        assert body["event_name"] == internal_name(event.view)
        if det.mag is not None:
            assert math.isclose(body["mag"], det.mag, rel_tol=1e-6) and body["filter"] == det.band
    voevents = yield threads.deferToThread(consume, kafka_broker, voevent_topic, "t-voevents")
    assert sorted(m.value() for m in voevents) == sorted([e.xml for e in ztf] + [retraction.xml])


def notice_of(event, archive_page=""):
    """The notice the gcn-kafka route makes of ``event`` (from its VOEvent, as the route does when it sends)."""
    root = safe_fromstring(event.xml)
    facts = Facts(event_from_tree(root, event.xml, origin="test"), root)
    return notice(facts.event, facts, archive_page)


def test_notices_of_every_sample_follow_the_current_gcn_core_schemas():
    samples = events()
    assert len({e.alert.survey for e in samples}) == 2 and len(samples) > 50
    for event in samples:
        body = notice_of(event, "https://archive.example.org/objects/{internal_name}?alert={alert_id}")
        assert validation_errors(body, *NOTICE_SCHEMA) == [], event.ivorn
        assert body["data_archive_page"] == (f"https://archive.example.org/objects/{internal_name(event.view)}"
                                             f"?alert={fields.alert_id(event.alert)}")  # all 64 bits of it
        assert json.loads(body["additional_info"])["alert_id"] == str(fields.alert_id(event.alert))
        assert body["alert_type"] in ("initial", "subsequent") and body["alert_tense"] in ("current", "test")
    # every block the notice uses is GCN's own (vendored), resolved from the files: their $ids are gcn.nasa.gov's
    core = resource("schemas", "gcn", "core")
    ids = {json.loads(p.read_text())["$id"] for p in core.rglob("*.schema.json")}
    refs = {part["$ref"] for part in json.loads(resource("schemas", *NOTICE_SCHEMA).read_text())["allOf"]}
    assert refs <= ids and all(r.startswith("https://gcn.nasa.gov/schema/") for r in refs)


def test_the_schema_is_strict_as_a_mission_schema_and_current():
    body = notice_of(events("ztf")[0])
    for old_style in ({"ivorn": "ivo://a/b#c"}, {"survey": "ztf"}, {"reliability": 0.9}, {"object_key": "ZTF1"}):
        problems = validation_errors({**body, **old_style}, *NOTICE_SCHEMA)
        assert problems and "Unevaluated properties are not allowed" in problems[0], old_style
    # GCN's current Alert block: test is a tense, not a type
    assert validation_errors({**body, "alert_type": "test"}, *NOTICE_SCHEMA)
    assert validation_errors({**body, "alert_type": "subsequent", "alert_tense": "test"}, *NOTICE_SCHEMA) == []
    assert validation_errors({**body, "$schema": "https://vogateway.local/x.json"}, *NOTICE_SCHEMA) == []
    assert validation_errors({**body, "$schema": "vogateway-notice"}, *NOTICE_SCHEMA)
    without = {k: v for k, v in body.items() if k != "containment_probability"}
    assert any("containment_probability" in p for p in validation_errors(without, *NOTICE_SCHEMA))


def test_sequence_types_and_test_tense():
    rubin = events("rubin", "11.1")
    first = next(e for e in rubin if e.view.n_previous == 0 and (e.view.n_detections or 0) <= 1)
    repeat = next(e for e in rubin if e.view.n_previous > 0)
    assert notice_of(first)["alert_type"] == "initial"
    assert notice_of(repeat)["alert_type"] == "subsequent"
    assert notice_of(retraction_of(repeat))["alert_type"] == "retraction"
    assert notice_of(cited(repeat, "supersedes"))["alert_type"] == "update"
    assert {notice_of(e)["alert_tense"] for e in rubin} == {"test"}  # the bundled Rubin samples are simulated
    assert [notice_of(e)["alert_tense"] for e in events("ztf")] == [
        "test" if e.role == "test" else "current" for e in events("ztf")]
    assert "current" in [notice_of(e)["alert_tense"] for e in events("ztf")]


def cited(event, cite):
    root = etree.fromstring(event.xml)
    root.set("ivorn", event.ivorn + "-" + cite)
    for old in root.findall("Citations"):
        root.remove(old)
    citations = etree.SubElement(root, "Citations")
    etree.SubElement(citations, "EventIVORN", cite=cite).text = event.ivorn
    return parse_event(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), origin="vtp://test")


def test_error_circle_states_its_containment_for_a_1_sigma_radius():
    event = rubin_event(diaSource={"raErr": 2e-5, "decErr": 1e-5})
    body = notice_of(event)
    assert body["ra_dec_error"] == pytest.approx(2e-5)
    # the share of a circular 2-D Gaussian (sigma per axis) inside the radius sigma, counted
    rng = numpy.random.default_rng(13)
    xy = rng.normal(0.0, 1.0, size=(400_000, 2))
    inside = float(numpy.mean(numpy.hypot(xy[:, 0], xy[:, 1]) <= 1.0))
    assert body["containment_probability"] == pytest.approx(inside, abs=0.003)
    assert body["containment_probability"] != 0.9


def test_observation_start_and_stop_from_the_exposure():
    ztf = next(e for e in events("ztf") if e.alert.record["candidate"].get("exptime"))
    body = notice_of(ztf)
    exptime = ztf.alert.record["candidate"]["exptime"]
    assert body["observation_start"] == body["trigger_time"]  # ZTF's jd is the start of the exposure
    start, stop = (parse_iso(body[k]) for k in ("observation_start", "observation_stop"))
    assert (stop - start).total_seconds() == pytest.approx(exptime, abs=1e-3)
    rubin = rubin_event(diaSource={"exposureTime": 30.0})
    body = notice_of(rubin)
    start, stop, mid = (parse_iso(body[k]) for k in ("observation_start", "observation_stop", "trigger_time"))
    assert (stop - start).total_seconds() == pytest.approx(30.0, abs=1e-3)
    assert (mid - start).total_seconds() == pytest.approx(15.0, abs=1e-3)  # Rubin's time is mid-exposure
    assert "observation_start" not in notice_of(events("rubin", "11.1")[0])  # no exposure time: not made up


def test_a_notice_that_breaks_the_schema_fails_with_the_reason():
    destination = GcnNotices(producer=None, topic="unused")
    item = outbox.Item(1, "notices", "notices:x", "ivo://a.b/c#d", None, b"", {}, 1, "send", "", False)
    outcome = destination.send(item, json.dumps({"alert_type": "sideways", "id": []}).encode()).result
    assert outcome.kind == "failed"
    assert "'alert_datetime' is a required property" in outcome.detail and "'mission' is a required" in outcome.detail
    # and a stored VOEvent that does not parse fails with the reason (no crash)
    broken = outbox.Item(2, "notices", "notices:y", "ivo://a.b/c#e", None, b"<VOEvent", {}, 1, "send", "", False)
    outcome = destination.deliver(broken).result
    assert outcome.kind == "failed" and "not XML" in outcome.detail


@pytest_twisted.inlineCallbacks
def test_voevents_to_a_vtp_receiver(database):
    node = yield Node().listen()
    try:
        selected = events("ztf")
        config = make_config({"name": "vtp", "kind": "vtp", "remote": node.receive, "filter": "survey == 'ztf'",
                              "timeout": 5.0})
        sink, services = yield start(config, database)
        try:
            for event in selected:
                yield sink.accept(event)
            yield until(lambda: len(rows(database, status="sent")) == len(selected), what="acked")
        finally:
            yield stop(services)
        assert sorted(node.recorder.ivorns) == sorted(e.ivorn for e in selected)
    finally:
        yield node.close()
