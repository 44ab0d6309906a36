"""KafkaSource against a real Kafka-protocol broker (Tansu on 127.0.0.1), with the real Pipeline."""

import contextlib
import re
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher

from gateway.alerts import fields
from gateway.alerts.decode import encode_wire
from gateway.alerts.kafka import RETRY_FIRST, KafkaSource, parse_kafka_url
from gateway.alerts.schemas import rubin_schema_id
from gateway.event import Event, utcnow
from gateway.pipeline import Pipeline, Router

from alertdata import LIBRARY, first_record, rubin_files
from kafka_broker import FAST_GROUP, kafka_broker  # noqa: F401  (the fixture)
from support import ClockedReactor


def convert(alert):
    return Event(ivorn=f"ivo://test.kafka/alerts#{fields.alert_id(alert)}", role="test", received=utcnow(),
                 xml=b"<VOEvent/>", alert=alert, origin=alert.source)


def parse(xml, origin):
    ivorn = re.search(rb'ivorn="([^"]+)"', xml)
    if ivorn is None:
        raise ValueError("no ivorn")
    return Event(ivorn=ivorn[1].decode(), role="test", received=utcnow(), xml=xml, origin=origin)


class RecordingSink:
    """Accepts events; ``fail`` (a predicate on the event) makes accept fail; ``hold`` keeps Deferreds open."""

    def __init__(self, fail=None, hold=False):
        self.events, self.attempts, self.held = [], 0, []
        self.fail, self.hold = fail, hold

    def accept(self, event):
        self.attempts += 1
        if self.fail is not None and self.fail(event):
            raise RuntimeError("sink is down")
        self.events.append(event)
        if self.hold:
            self.held.append(defer.Deferred())
            return self.held[-1]
        return None


def make_pipeline(sink):
    return Pipeline(convert, parse, Router([sink]))


def packets(count, start):
    """``count`` wire-format Rubin packets (alternating 7.4 and 11.1) with alert ids start, start+1, ..."""
    out = []
    for n in range(count):
        version = ("7.4", "11.1")[n % 2]
        record, _ = first_record(rubin_files()[version])
        key = "alertId" if "alertId" in record else "diaSourceId"
        record = dict(record, **{key: start + n})
        out.append(encode_wire(record, rubin_schema_id(version), LIBRARY.by_version("rubin", version)))
    return out


def source(broker, topic, pipeline, group, reactor=None, **kwargs):
    if reactor is None:
        from twisted.internet import reactor

    settings = {"auto.offset.reset": "earliest", **FAST_GROUP}
    return KafkaSource(broker.bootstrap, [topic], pipeline, group, settings=settings, library=LIBRARY,
                       reactor=reactor, **kwargs)


@defer.inlineCallbacks
def until(condition, timeout=60.0, what="condition"):
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        yield task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class PollWatch:
    """Wraps the confluent Consumer that a KafkaSource makes (while ``installed``) to see its thread's loop: each
    time the thread is about to poll, ``entries`` gets (on the reactor) how many messages it had been given so far.
    It goes through callFromThread like the source's own hand-overs, so anything the thread handed over before
    that poll has reached the pipeline by the time its entry is seen."""

    def __init__(self):
        self.entries: list[int] = []

    @contextlib.contextmanager
    def installed(self):
        import confluent_kafka
        from twisted.internet import reactor

        real, entries = confluent_kafka.Consumer, self.entries

        class Watched:
            def __init__(self, config):
                self._consumer, self._messages = real(config), 0

            def poll(self, *args, **kwargs):
                reactor.callFromThread(entries.append, self._messages)
                message = self._consumer.poll(*args, **kwargs)
                if message is not None and not message.error():
                    self._messages += 1
                return message

            def __getattr__(self, name):
                return getattr(self._consumer, name)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(confluent_kafka, "Consumer", Watched)
            yield self


@contextlib.contextmanager
def log_events(text):
    """Collects (formatted) log events containing ``text`` while the block runs."""
    seen = []

    def observer(event):
        line = formatEvent(event)
        if text in line:
            seen.append(line)

    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)


def fresh(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_parse_kafka_url():
    assert parse_kafka_url("kafka://b1:9092,b2:9092/topic1,topic2") == ("b1:9092,b2:9092", ["topic1", "topic2"])
    assert parse_kafka_url("kafka://127.0.0.1:9092/gcn.classic.voevent.LVC_INITIAL") == (
        "127.0.0.1:9092", ["gcn.classic.voevent.LVC_INITIAL"])
    for bad in ("http://b:1/t", "kafka://b:1", "kafka://b:1/", "kafka:///t"):
        with pytest.raises(ValueError):
            parse_kafka_url(bad)


@pytest_twisted.inlineCallbacks
def test_alerts_flow_garbage_is_rejected_and_offsets_committed(kafka_broker):
    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    good = packets(5, 7_000_000)
    kafka_broker.produce(topic, good[:3] + [b"\x01 not a wire-format packet"] + good[3:])
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    consumer = source(kafka_broker, topic, pipeline, group)
    consumer.startService()
    try:
        yield until(lambda: len(sink.events) == 5 and pipeline.stats.rejected_total == 1, what="5 events, 1 rejection")
        yield until(lambda: kafka_broker.committed(topic, group) == 6, what="offset 6 committed")
    finally:
        yield consumer.stopService()
    assert sorted(fields.alert_id(e.alert) for e in sink.events) == list(range(7_000_000, 7_000_005))
    assert pipeline.stats.rejected == {"wrong magic byte": 1}
    assert consumer.received == 6 and consumer.rejected == 1
    assert {e.alert.source for e in sink.events} == {f"kafka://{topic}[0]"}
    assert [e.alert.position for e in sink.events] == [0, 1, 2, 4, 5]
    # a second consumer of the same group gets nothing new: one message produced once it joined is the only one it
    # sees (a redelivery of the first six would reach it before that one, on the same partition)
    again = RecordingSink()
    second = source(kafka_broker, topic, make_pipeline(again), group)
    second.startService()
    try:
        yield until(lambda: second.assignment, what="the second consumer joined the group")
        kafka_broker.produce(topic, packets(1, 7_000_005))
        yield until(lambda: any(fields.alert_id(e.alert) == 7_000_005 for e in again.events),
                    what="the message produced after the second consumer joined")
    finally:
        yield second.stopService()
    assert [fields.alert_id(e.alert) for e in again.events] == [7_000_005] and second.received == 1


@pytest_twisted.inlineCallbacks
def test_a_failing_sink_keeps_the_offset_and_the_message_comes_again(kafka_broker):
    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    kafka_broker.produce(topic, packets(3, 8_000_000))
    poison = "ivo://test.kafka/alerts#8000001"
    sink = RecordingSink(fail=lambda event: event.ivorn == poison)
    consumer = source(kafka_broker, topic, make_pipeline(sink), group)
    consumer.startService()
    try:
        yield until(lambda: len(sink.events) == 2 and consumer.retries >= 1, what="two events and a retry")
        yield until(lambda: kafka_broker.committed(topic, group) == 1, what="offset 1 committed")
    finally:
        yield consumer.stopService()
    assert kafka_broker.committed(topic, group) == 1  # not past the failed message, though the next one went through

    healed = RecordingSink()
    restarted = source(kafka_broker, topic, make_pipeline(healed), group)
    restarted.startService()
    try:
        yield until(lambda: len(healed.events) == 2, what="redelivery")
        yield until(lambda: kafka_broker.committed(topic, group) == 3, what="offset 3 committed")
    finally:
        yield restarted.stopService()
    assert [e.ivorn for e in healed.events] == [poison, "ivo://test.kafka/alerts#8000002"]


@pytest_twisted.inlineCallbacks
def test_a_failure_is_retried_while_running(kafka_broker):
    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    kafka_broker.produce(topic, packets(2, 9_000_000))
    failures = {"left": 1}

    def flaky(event):
        if failures["left"]:
            failures["left"] -= 1
            return True
        return False

    sink = RecordingSink(fail=flaky)
    clock = task.Clock()  # the retry timer; the consumer thread and the broker stay real
    consumer = source(kafka_broker, topic, make_pipeline(sink), group, reactor=ClockedReactor(clock))
    consumer.startService()
    try:
        yield until(lambda: consumer.retries == 1 and len(sink.events) == 1, what="a failure and the next message")
        assert [call.getTime() for call in clock.getDelayedCalls()] == [RETRY_FIRST]  # the retry waits its backoff
        assert kafka_broker.committed(topic, group) < 2  # not past the message that failed
        clock.advance(RETRY_FIRST)
        yield until(lambda: kafka_broker.committed(topic, group) == 2, what="both committed after a retry")
    finally:
        yield consumer.stopService()
    assert len(sink.events) == 2 and consumer.retries == 1


@pytest_twisted.inlineCallbacks
def test_back_pressure_bounds_messages_in_flight(kafka_broker):
    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    kafka_broker.produce(topic, packets(8, 9_100_000))
    sink = RecordingSink(hold=True)
    consumer = source(kafka_broker, topic, make_pipeline(sink), group, max_in_flight=3)
    watch = PollWatch()
    with watch.installed():
        consumer.startService()
    try:
        yield until(lambda: len(sink.held) == 3, what="3 in flight")
        # the thread has a 4th message and has gone round its loop to poll again: it had its chance to pass it on
        yield until(lambda: any(seen >= 4 for seen in watch.entries), what="a poll with a 4th message waiting")
        assert len(sink.held) == 3 and consumer.received == 3 and kafka_broker.committed(topic, group) < 0
        while len(sink.events) < 8:
            assert sum(not d.called for d in sink.held) <= 3
            for d in sink.held:
                if not d.called:
                    d.callback(None)
            yield until(lambda: len(sink.events) == 8 or any(not d.called for d in sink.held), what="more")
        for d in sink.held:
            if not d.called:
                d.callback(None)
        yield until(lambda: kafka_broker.committed(topic, group) == 8, what="offset 8 committed")
    finally:
        for d in sink.held:
            if not d.called:
                d.callback(None)
        yield consumer.stopService()


@pytest_twisted.inlineCallbacks
def test_voevent_payload(kafka_broker):
    topic, group = kafka_broker.create_topic(fresh("gcn.classic.voevent.TEST")), fresh("group")
    xml = b'<?xml version="1.0"?><voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ' \
          b'ivorn="ivo://nasa.gsfc.gcn/TEST#1" role="test" version="2.0"/>'
    kafka_broker.produce(topic, [xml, b"<not-a-voevent/>"])
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    consumer = source(kafka_broker, topic, pipeline, group, payload="voevent")
    consumer.startService()
    try:
        yield until(lambda: len(sink.events) == 1 and pipeline.stats.rejected_total == 1, what="1 event, 1 rejection")
        yield until(lambda: kafka_broker.committed(topic, group) == 2, what="offset 2 committed")
    finally:
        yield consumer.stopService()
    (event,) = sink.events
    assert event.ivorn == "ivo://nasa.gsfc.gcn/TEST#1" and event.origin == f"kafka://{topic}"


@pytest_twisted.inlineCallbacks
def test_ztf_style_messages_are_avro_containers(kafka_broker):
    from alertdata import ztf_real_files

    topic, group = kafka_broker.create_topic(fresh("ztf")), fresh("group")
    kafka_broker.produce(topic, [path.read_bytes() for path in ztf_real_files()])
    converted = []

    def ztf_convert(alert):
        converted.append(alert)
        return Event(ivorn=f"ivo://test.kafka/ztf#{fields.alert_id(alert)}", role="observation", received=utcnow(),
                     xml=b"<VOEvent/>", alert=alert, origin=alert.source)

    sink = RecordingSink()
    consumer = source(kafka_broker, topic, Pipeline(ztf_convert, parse, Router([sink])), group)
    consumer.startService()
    try:
        yield until(lambda: kafka_broker.committed(topic, group) == 3, what="offset 3 committed")
    finally:
        yield consumer.stopService()
    assert len(sink.events) == 3 and {a.schema for a in converted} == {"3.2", "3.3", "3.5"}
    assert [a.position for a in converted] == [0, 1, 2]


@pytest_twisted.inlineCallbacks
def test_a_registry_outage_holds_messages_instead_of_losing_them(kafka_broker):
    from alertdata import Registry
    from gateway.alerts.schemas import SchemaLibrary
    from support import free_port
    from twisted.internet import reactor

    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    kafka_broker.produce(topic, packets(2, 9_200_000))
    port = free_port()
    library = SchemaLibrary(registry_url=f"http://127.0.0.1:{port}", packaged=False, timeout=2)
    sink = RecordingSink()
    pipeline = make_pipeline(sink)
    consumer = KafkaSource(kafka_broker.bootstrap, [topic], pipeline, group, library=library, reactor=reactor,
                           settings={"auto.offset.reset": "earliest", **FAST_GROUP})
    registry = None
    with log_events("holding the partition") as holds:
        consumer.startService()
        try:
            # the registry cannot be reached: the first message is held (and retried later), not rejected
            yield until(lambda: holds, what="the message held while the registry is down")
            assert sink.events == [] and pipeline.stats.rejected_total == 0
            assert kafka_broker.committed(topic, group) < 0
            registry = Registry({str(rubin_schema_id(v)): LIBRARY.by_version("rubin", v).definition
                                 for v in ("7.4", "11.1")}, port=port)
            yield until(lambda: kafka_broker.committed(topic, group) == 2,
                        what="both committed once the registry is up")
        finally:
            yield consumer.stopService()
            if registry is not None:
                registry.close()
    assert len(sink.events) == 2 and pipeline.stats.rejected_total == 0


@pytest_twisted.inlineCallbacks
def test_with_a_worker_pool_messages_are_decoded_and_built_by_the_workers_in_order(kafka_broker):
    """serve's default: a pool of worker processes decodes Kafka messages and builds their VOEvents, as for files;
    the order of a partition, the rejections and the commits are as without it."""
    from twisted.internet import reactor

    from gateway.alerts.packets import decode_packet
    from gateway.pool import WorkerPool, WorkerSettings
    from gateway.voevent.build import Converter

    topic, group = kafka_broker.create_topic(fresh("pooled")), fresh("group")
    good = []
    for n in range(6):  # distinct alerts as the converter names them (8.0+: by the diaSource's own id)
        version = ("7.4", "11.1")[n % 2]
        record, _ = first_record(rubin_files()[version])
        ids = {"alertId": 7_500_000 + n} if "alertId" in record else {
            "diaSourceId": 7_500_000 + n, "diaSource": dict(record["diaSource"], diaSourceId=7_500_000 + n)}
        good.append(encode_wire(dict(record, **ids), rubin_schema_id(version), LIBRARY.by_version("rubin", version)))
    kafka_broker.produce(topic, good[:2] + [b"\x01 not a wire-format packet"] + good[2:])
    converter = Converter("test.kafka", "alerts", "http://127.0.0.1:8080")
    sink = RecordingSink()
    pipeline = Pipeline(converter, parse, Router([sink]), decode=lambda p: decode_packet(p, LIBRARY),
                        link=converter.link)
    pipeline.pool = WorkerPool(WorkerSettings("test.kafka", "alerts", "http://127.0.0.1:8080"), 2, reactor)
    yield pipeline.pool.start()
    consumer = source(kafka_broker, topic, pipeline, group)
    consumer.startService()
    try:
        yield until(lambda: len(sink.events) == 6 and pipeline.stats.rejected_total == 1, what="6 events, 1 rejection")
        yield until(lambda: kafka_broker.committed(topic, group) == 7, what="offset 7 committed")
    finally:
        yield consumer.stopService()
        yield pipeline.pool.stop()
    assert [e.view.alert_id for e in sink.events] == list(range(7_500_000, 7_500_006))
    assert pipeline.stats.rejected == {"wrong magic byte": 1} and pipeline.pool.batches >= 1
    assert all(e.xml.startswith(b"<?xml") and e.rows is not None for e in sink.events)  # built in a worker
    assert consumer.received == 7


@pytest_twisted.inlineCallbacks
def test_after_an_assignment_the_first_messages_are_checked_against_the_store(kafka_broker):
    """A gateway of the group died after storing messages it had not committed: whoever gets the partition reads
    them again. The first ``max_in_flight`` messages after the assignment are looked up in the store; the stored
    ones are duplicates, not broadcast again; later messages are not looked up at all."""
    topic, group = kafka_broker.create_topic(fresh("alerts")), fresh("group")
    kafka_broker.produce(topic, packets(8, 9_100_000))
    committed_by_the_dead = {f"ivo://test.kafka/alerts#{9_100_000 + n}" for n in range(3)}
    asked = []

    def stored(ivorn):
        asked.append(ivorn)
        return ivorn in committed_by_the_dead

    sink = RecordingSink()
    pipeline = Pipeline(convert, parse, Router([sink]), stored=stored)
    consumer = source(kafka_broker, topic, pipeline, group, max_in_flight=5)
    consumer.startService()
    try:
        yield until(lambda: kafka_broker.committed(topic, group) == 8, what="offset 8 committed")
    finally:
        yield consumer.stopService()
    assert [fields.alert_id(e.alert) for e in sink.events] == [9_100_000 + n for n in range(3, 8)]
    assert pipeline.stats.duplicates == 3
    assert asked == [f"ivo://test.kafka/alerts#{9_100_000 + n}" for n in range(5)]  # the window, in order
