"""GCN-style forwards: JSON notices and VOEvents to Kafka topics, and VOEvents to VTP brokers.

GCN distributes over Kafka now (``gcn.notices.<mission>...`` JSON, ``gcn.classic.voevent.*`` XML); brokers that
still speak VTP get the VOEvent as an author would send it.

- :class:`GcnNotices`: one JSON notice per event following the core blocks of GCN's unified schema (Alert,
  Reporter, Event, Localization, DateTime, Photometry; ``$schema`` set), checked against
  ``schemas/gcn/notice-core.schema.json`` before it is sent; a VOEvent that cites another as ``retraction``
  becomes ``alert_type: retraction``.
- :class:`VOEventToKafka`: the VOEvent bytes unchanged.
- :class:`VOEventToVTP`: the VOEvent submitted to a VTP receiver (:func:`gateway.vtp.author.send_events`).

Kafka messages are keyed by the outbox idempotency key, so a consumer can drop the duplicate that an
at-least-once resend (after a crash between the broker's ack and our record of it) may produce.
confluent-kafka's ``produce`` only queues; a thread of ours polls for delivery reports and hands them to the
reactor, so nothing here blocks it. ``settings`` go to librdkafka unchanged (SASL_SSL, OAUTHBEARER/OIDC, ...).
"""

from __future__ import annotations

import json
import threading
from typing import Optional

from twisted.internet import defer, threads
from twisted.logger import Logger

from gateway.event import Event
from gateway.filters import Facts
from gateway.forward import outbox
from gateway.forward.common import dumps, validation_errors
from gateway.times import format_iso
from gateway.voevent.parse import event_from_tree, safe_fromstring
from gateway.vtp.author import send_events
from gateway.vtp.tls import TLSFiles

log = Logger()

NOTICE_SCHEMA = ("gcn", "notice-core.schema.json")
#: ``$schema`` of our notices: the ``$id`` of schemas/gcn/notice-core.schema.json
NOTICE_SCHEMA_URL = "https://vogateway.local/schemas/gcn/notice-core.schema.json"
MISSIONS = {"rubin": ("Rubin", "LSSTCam"), "ztf": ("ZTF", "ZTF camera")}


class KafkaProducer:
    """A confluent-kafka Producer driven off the reactor: ``send`` fires with an Outcome per message."""

    def __init__(self, brokers: str, settings: Optional[dict] = None, reactor=None, timeout: float = 30.0):
        from confluent_kafka import Producer

        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        config = {"bootstrap.servers": brokers, "message.timeout.ms": int(timeout * 1000),
                  "socket.timeout.ms": max(10_000, int(timeout * 1000)), **(settings or {})}
        self.producer = Producer(config)
        self._running = True
        self._thread = threading.Thread(target=self._poll, name="forward-kafka-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._running:
            self.producer.poll(0.1)

    def send(self, topic: str, value: bytes, key: str) -> defer.Deferred:
        from confluent_kafka import KafkaError, KafkaException

        d = defer.Deferred()

        def report(err, msg):
            self.reactor.callFromThread(fire, err, msg)

        def fire(err, msg):
            if err is None:
                d.callback(outbox.delivered(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"))
            elif err.fatal():
                d.callback(outbox.failed(f"kafka: {err.str()}"))
            else:
                # a timed-out message may have reached the broker: uncertain
                d.callback(outbox.retry(f"kafka: {err.str()}", uncertain=err.code() == KafkaError._MSG_TIMED_OUT))

        try:
            self.producer.produce(topic, value=value, key=key.encode(), on_delivery=report)
        except BufferError:
            return defer.succeed(outbox.retry("kafka: local producer queue full", after=1.0))
        except KafkaException as error:
            return defer.succeed(outbox.retry(f"kafka: {error}"))
        return d

    def stop(self) -> defer.Deferred:
        def close():
            self.producer.flush(5)
            self._running = False
            self._thread.join(2)
            self.producer = None  # let librdkafka close its connections now, not at exit
        return threads.deferToThread(close)


def _iso(value: Optional[str]) -> Optional[str]:
    """Our VOEvent times (UTC, no zone) as ISO 8601 with ``Z``."""
    if not value:
        return None
    value = value.strip()
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


def is_retraction(facts) -> bool:
    root = facts.root()
    return root is not None and root.find("Citations/EventIVORN[@cite='retraction']") is not None


def notice(event: Event, facts) -> dict:
    """A GCN-style JSON notice for one event (alert or incoming VOEvent)."""
    survey = facts.get("survey") if isinstance(facts.get("survey"), str) else None
    mission, instrument = MISSIONS.get(survey or "", (None, None))
    if mission is None:
        mission = (facts.view.author or event.ivorn).split("//", 1)[-1].split("/", 1)[0] or "unknown"
    retraction = is_retraction(facts)
    previous = facts.get("n_previous")
    if retraction:
        alert_type = "retraction"
    elif event.role == "test":
        alert_type = "test"
    elif isinstance(previous, (int, float)) and previous > 0:
        alert_type = "update"
    else:
        alert_type = "initial"
    body: dict = {
        "$schema": NOTICE_SCHEMA_URL,
        "alert_datetime": format_iso(event.received),
        "alert_tense": "current",
        "alert_type": alert_type,
        "mission": mission,
        "messenger": "EM",
        "id": [event.ivorn],
        "ivorn": event.ivorn,
        "survey": survey or "other",
    }
    if instrument:
        body["instrument"] = instrument
    obj = facts.get("object")
    if isinstance(obj, str):
        body["id"].append(obj)
        body["object_key"] = obj
    ra, dec = facts.get("ra"), facts.get("dec")
    if isinstance(ra, float) and isinstance(dec, float):
        body["ra"], body["dec"] = ra, dec
        error = _error_radius(event, facts)
        if error is not None:
            body["ra_dec_error"] = error
    trigger = _trigger_time(event, facts)
    if trigger:
        body["trigger_time"] = trigger
    band, mag, mag_err = facts.get("band"), facts.get("mag"), facts.get("mag_err")
    if isinstance(band, str):
        body["filter"] = band
    if isinstance(mag, float):
        body["mag"] = mag
        body["mag_system"] = "AB"
        if isinstance(mag_err, float) and mag_err >= 0:
            body["mag_error"] = mag_err
    limit = _limiting_mag(event, facts)
    if limit is not None:
        body["limiting_mag"] = limit
        body["limiting_mag_sigma"] = 5
    for name in ("reliability", "snr"):
        value = facts.get(name)
        if isinstance(value, float):
            body[name] = value
    n = facts.get("n_detections")
    if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
        body["record_number"] = int(n)
    return body


def _error_radius(event, facts) -> Optional[float]:
    """The alert's own position error (deg; none for ZTF, which publishes none), or the VOEvent's Error2Radius."""
    view = facts.view
    if view.detection is not None:
        errors = [e for e in (view.detection.ra_err, view.detection.dec_err) if e is not None]
        return max(errors) if errors else None
    error = view.error_radius
    return error if error is not None and error >= 0 else None


def _trigger_time(event, facts) -> Optional[str]:
    return _iso(facts.view.iso_utc)


def _limiting_mag(event, facts) -> Optional[float]:
    """ZTF ships the 5-sigma limit of the image (``diffmaglim``, also a Param of its VOEvent); Rubin none."""
    return facts.view.limiting_mag


class _ToKafka:
    """A destination on a Kafka topic: the outbox keeps only the event's key; the payload is made when sent."""

    def __init__(self, producer: KafkaProducer, topic: str):
        self.producer, self.topic = producer, topic

    def prepare(self, event: Event, facts, route: str) -> outbox.Prepared:
        # the VOEvent is stored and the payload made from it when sent: the pipeline pays for a row, nothing more
        return outbox.Prepared(f"{route}:{event.ivorn}", None)

    def stop(self):
        return self.producer.stop()


class GcnNotices(_ToKafka):
    """JSON notices to a Kafka topic."""

    kind = "gcn-kafka"

    def deliver(self, item: outbox.Item) -> defer.Deferred:
        try:
            payload = notice_bytes(item)
        except ValueError as error:
            return defer.succeed(outbox.failed(f"cannot make a notice of the stored VOEvent: {error}"))
        return self.send(item, payload)

    def send(self, item: outbox.Item, payload: bytes) -> defer.Deferred:
        """Check ``payload`` (a JSON notice) against the schema and send it."""
        try:
            body = json.loads(payload)
        except ValueError as error:
            return defer.succeed(outbox.failed(f"notice is not JSON: {error}"))
        problems = validation_errors(body, *NOTICE_SCHEMA)
        if problems:
            return defer.succeed(outbox.failed("notice does not follow schemas/gcn/notice-core.schema.json: "
                                               + "; ".join(problems[:5])))
        return self.producer.send(self.topic, payload, item.key)


def stored_facts(item: outbox.Item) -> Facts:
    """Facts of the event an outbox row sends (its VOEvent, parsed once); ``.event`` is the Event."""
    root = safe_fromstring(item.payload)
    return Facts(event_from_tree(root, item.payload, origin=item.meta.get("origin", "outbox")), root)


def notice_bytes(item: outbox.Item) -> bytes:
    facts = stored_facts(item)
    return dumps(notice(facts.event, facts))


class VOEventToKafka(_ToKafka):
    """The VOEvent, unchanged, to a Kafka topic (as GCN's ``gcn.classic.voevent.*`` topics carry them)."""

    kind = "voevent-kafka"

    def deliver(self, item: outbox.Item) -> defer.Deferred:
        return self.producer.send(self.topic, item.payload, item.key)


class VOEventToVTP:
    """The VOEvent submitted to a VTP broker's receiver, as an author. Receivers deduplicate by IVORN, so a
    resend after an uncertain attempt is harmless."""

    kind = "vtp"

    def __init__(self, remote: str, local_ivo: str, timeout: float, reactor=None, tls=None):
        if reactor is None:
            from twisted.internet import reactor
        self.remote, self.local_ivo, self.timeout, self.reactor = remote, local_ivo, timeout, reactor
        self.tls = tls or TLSFiles()

    def prepare(self, event: Event, facts, route: str) -> outbox.Prepared:
        return outbox.Prepared(f"{route}:{event.ivorn}", None)

    @defer.inlineCallbacks
    def deliver(self, item: outbox.Item):
        [result] = yield send_events(self.remote, [item.payload], self.local_ivo, self.timeout, self.reactor,
                                     tls=self.tls)
        if result.accepted:
            return outbox.delivered("ack")
        if result.nakd:
            return outbox.failed(f"nak: {result.reason}")
        # "connection failed" never reached the receiver; a timeout or a closed connection may have
        return outbox.retry(result.reason, uncertain=not result.reason.startswith("connection failed"))
