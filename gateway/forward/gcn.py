"""GCN-style forwards: JSON notices and VOEvents to Kafka topics, and VOEvents to VTP brokers.

GCN distributes over Kafka now (``gcn.notices.<mission>...`` JSON, ``gcn.classic.voevent.*`` XML); brokers that
still speak VTP get the VOEvent as an author would send it.

- :class:`GcnNotices`: one JSON notice per event made of the core blocks of GCN's unified schema only (Alert,
  Reporter, Event, Localization, DateTime, Photometry, AdditionalInfo; no ``$schema``: there is no published one
  for ours), checked before it is sent against ``schemas/gcn/vogateway-notice.schema.json``: GCN's current core
  schemas (vendored in ``schemas/gcn/core``), closed to other properties as strict mission schemas are, so our
  own fields (IVORN, object key, survey, reliability, SNR) travel as JSON text in ``additional_info``.
  ``alert_type`` (:func:`alert_type`): initial, subsequent (a repeat detection), update (supersedes),
  retraction; a test event is ``alert_tense: test``. ``ra_dec_error`` is our 1-sigma radius, with its
  ``containment_probability`` for a 2-D Gaussian (1 - exp(-1/2) = 0.393; GCN assumes 0.9 without one).
- :class:`VOEventToKafka`: the VOEvent bytes unchanged.
- :class:`VOEventToVTP`: the VOEvent submitted to a VTP receiver (:func:`gateway.vtp.author.send_events`).

Kafka messages are keyed by the outbox idempotency key, so a consumer can drop the duplicate that an
at-least-once resend (after a crash between the broker's ack and our record of it) may produce.
confluent-kafka's ``produce`` only queues; a thread of ours polls for delivery reports and hands them to the
reactor, so nothing here blocks it. ``settings`` go to librdkafka unchanged (SASL_SSL, OAUTHBEARER/OIDC, ...).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Optional
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.logger import Logger

from gateway.event import Event
from gateway.filters import Facts
from gateway.forward import outbox
from gateway.forward.common import dumps, internal_name, validation_errors
from gateway.times import format_iso, utc_mjd_to_utc_iso
from gateway.voevent.parse import event_from_tree, safe_fromstring
from gateway.vtp.author import send_events
from gateway.vtp.tls import TLSFiles

log = Logger()

#: what every notice is checked against: the core blocks of GCN's unified schema, closed to other properties
NOTICE_SCHEMA = ("gcn", "vogateway-notice.schema.json")
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


#: probability that a circular 2-D Gaussian puts the source within its 1-sigma radius: 1 - exp(-1/2). Our
#: Error2Radius (and so ``ra_dec_error``) is that 1-sigma radius; GCN reads 0.9 when none is given.
ONE_SIGMA_CONTAINMENT = 1.0 - math.exp(-0.5)
#: what instant a survey's detection time is: ZTF ``jd`` is the start of the exposure, Rubin's the midpoint
TIME_REF = {"ztf": "start", "rubin": "mid"}


def _iso_z(value: Optional[str]) -> Optional[str]:
    """Our VOEvent times (UTC, no zone) as ISO 8601 with ``Z``."""
    if not value:
        return None
    value = value.strip()
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


def _cites(facts) -> set[str]:
    root = facts.root()
    return set() if root is None else {e.get("cite") for e in root.findall("Citations/EventIVORN")}


def is_retraction(facts) -> bool:
    return "retraction" in _cites(facts)


def alert_type(facts) -> str:
    """GCN's place in the sequence: a retraction; an update (the VOEvent supersedes another); subsequent for a
    repeat detection of the object (earlier detections shipped or counted, or a followup Citation); else initial."""
    cites = _cites(facts)
    if "retraction" in cites:
        return "retraction"
    if "supersedes" in cites:
        return "update"
    view = facts.view
    repeat = (view.n_previous or 0) > 0 or (view.n_detections or 0) > 1 or "followup" in cites
    return "subsequent" if repeat else "initial"


def notice(event: Event, facts, archive_page: str = "") -> dict:
    """A JSON notice (GCN unified schema, core blocks only) for one event (alert or incoming VOEvent).

    ``archive_page``: a template for ``data_archive_page`` (``{internal_name}``, ``{object_key}``, ``{alert_id}``,
    ``{ivorn}``); empty: none. Test events are ``alert_tense: test``."""
    view = facts.view
    survey = view.survey if isinstance(view.survey, str) else None
    mission, instrument = MISSIONS.get(survey or "", (None, None))
    if mission is None:
        mission = (view.author or event.ivorn).split("//", 1)[-1].split("/", 1)[0] or "unknown"
    body: dict = {
        "alert_datetime": format_iso(event.received),
        "alert_tense": "test" if event.role == "test" else "current",
        "alert_type": alert_type(facts),
        "mission": mission,
        "messenger": "EM",
        "id": [event.ivorn],
    }
    if instrument:
        body["instrument"] = instrument
    obj = view.object_key
    if isinstance(obj, str) and obj:
        body["id"].append(obj)
        if survey in MISSIONS:
            body["event_name"] = internal_name(view)
    alert_id = _param_text(facts, "alert_id")
    if archive_page and isinstance(obj, str) and obj:
        body["data_archive_page"] = archive_page.format(
            internal_name=quote(body.get("event_name", obj)), object_key=quote(obj), alert_id=quote(alert_id or ""),
            ivorn=quote(event.ivorn, safe=""))
    if isinstance(view.ra, float) and isinstance(view.dec, float):
        body["ra"], body["dec"] = view.ra, view.dec
        error = view.error_radius
        if error is not None and error >= 0:
            body["ra_dec_error"] = error
            body["containment_probability"] = round(ONE_SIGMA_CONTAINMENT, 4)
    trigger = _iso_z(view.iso_utc)
    if trigger:
        body["trigger_time"] = trigger
        body.update(_exposure(view, survey))
    if isinstance(view.band, str):
        body["filter"] = view.band
    if isinstance(view.mag, float):
        body["mag"] = view.mag
        body["mag_system"] = "AB"
        if isinstance(view.mag_err, float) and view.mag_err >= 0:
            body["mag_error"] = view.mag_err
    # ZTF ships the 5-sigma limit of the image (``diffmaglim``, also a Param of its VOEvent); Rubin none
    if view.limiting_mag is not None:
        body["limiting_mag"] = view.limiting_mag
        body["limiting_mag_sigma"] = 5
    n = view.n_detections
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        body["record_number"] = n
    ours = {"ivorn": event.ivorn, "object_key": obj, "alert_id": alert_id, "survey": survey or "other",
            "reliability": view.reliability, "snr": view.snr}
    body["additional_info"] = json.dumps({k: v for k, v in ours.items() if v is not None}, sort_keys=True,
                                         allow_nan=False)
    return body


def _param_text(facts, name: str) -> Optional[str]:
    """A What Param's value as written: ids are 64-bit, more digits than the view's floats keep."""
    root = facts.root()
    element = None if root is None else root.find(f"What/Param[@name='{name}']")
    value = None if element is None else (element.get("value") or "").strip()
    return value or None


def _exposure(view, survey: Optional[str]) -> dict:
    """``observation_start``/``_stop`` (UTC) from the exposure time the VOEvent gives (``exptime`` Param, s)."""
    exptime, ref, mjd = view.params.get("exptime"), TIME_REF.get(survey or ""), view.mjd_utc
    if not isinstance(exptime, (int, float)) or isinstance(exptime, bool) or exptime <= 0 or ref is None \
            or mjd is None:
        return {}
    start = mjd if ref == "start" else mjd - exptime / 2 / 86400.0
    stop = start + exptime / 86400.0
    return {"observation_start": utc_mjd_to_utc_iso(start) + "Z", "observation_stop": utc_mjd_to_utc_iso(stop) + "Z"}


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
    """JSON notices to a Kafka topic (``archive_page``: see :func:`notice`)."""

    kind = "gcn-kafka"

    def __init__(self, producer: KafkaProducer, topic: str, archive_page: str = ""):
        super().__init__(producer, topic)
        self.archive_page = archive_page

    def deliver(self, item: outbox.Item) -> defer.Deferred:
        try:
            payload = notice_bytes(item, self.archive_page)
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
            return defer.succeed(outbox.failed("notice does not follow schemas/gcn/vogateway-notice.schema.json: "
                                               + "; ".join(problems[:5])))
        return self.producer.send(self.topic, payload, item.key)


def stored_facts(item: outbox.Item) -> Facts:
    """Facts of the event an outbox row sends (its VOEvent, parsed once); ``.event`` is the Event."""
    root = safe_fromstring(item.payload)
    return Facts(event_from_tree(root, item.payload, origin=item.meta.get("origin", "outbox")), root)


def notice_bytes(item: outbox.Item, archive_page: str = "") -> bytes:
    facts = stored_facts(item)
    return dumps(notice(facts.event, facts, archive_page))


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
