"""GCN-style forwards: JSON notices and VOEvents to a Kafka-protocol broker (Tansu on loopback), VOEvents to a
VTP receiver (ours, on loopback)."""

import json
import math

import pytest_twisted
from lxml import etree
from twisted.internet import threads

from forward.kit import events, until
from forward.test_outbox import make_config, rows, start, stop
from gateway.alerts import fields
from gateway.forward import outbox
from gateway.forward.common import validation_errors
from gateway.forward.gcn import GcnNotices
from gateway.voevent.parse import parse_event
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
        assert validation_errors(body, "gcn", "notice-core.schema.json") == []
        assert message.key().decode() == f"notices:{body['ivorn']}"
        assert body["$schema"]
        by_ivorn[body["ivorn"]] = body
    assert by_ivorn[retraction.ivorn]["alert_type"] == "retraction"
    for event in selected:
        body = by_ivorn[event.ivorn]
        det = fields.detection(event.alert)
        assert math.isclose(body["ra"], det.ra, rel_tol=1e-6) and math.isclose(body["dec"], det.dec, rel_tol=1e-6)
        assert body["mission"] == {"ztf": "ZTF", "rubin": "Rubin"}[event.alert.survey]
        assert body["alert_type"] in ("test", "initial", "update")
        assert fields.object_key(event.alert) in body["id"]
        if det.mag is not None:
            assert math.isclose(body["mag"], det.mag, rel_tol=1e-6) and body["filter"] == det.band
    voevents = yield threads.deferToThread(consume, kafka_broker, voevent_topic, "t-voevents")
    assert sorted(m.value() for m in voevents) == sorted([e.xml for e in ztf] + [retraction.xml])


def test_a_notice_that_breaks_the_schema_fails_with_the_reason():
    destination = GcnNotices(producer=None, topic="unused")
    item = outbox.Item(1, "notices", "notices:x", "ivo://a.b/c#d", None, b"", {}, 1, "send", "", False)
    outcome = destination.send(item, json.dumps({"alert_type": "sideways", "id": []}).encode()).result
    assert outcome.kind == "failed"
    assert "'$schema' is a required property" in outcome.detail and "'mission' is a required" in outcome.detail
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
