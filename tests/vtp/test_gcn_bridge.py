"""GCN bridge, end to end: GCN-style VOEvent notices on a Kafka topic (Tansu on loopback) -> KafkaSource
(payload="voevent") -> pipeline -> our broker -> a real Comet subscriber, which receives each notice unchanged."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway.alerts.kafka import KafkaSource
from kafka_broker import FAST_GROUP, kafka_broker  # noqa: F401  (the fixture)
from vtp.cometkit import Comet, comet_file_name, require_comet
from vtp.test_loopback import Node, until
from vtp.vtpkit import DATA, c14n

TOPIC = "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"


def notice(trigger: int) -> bytes:
    return (DATA / "gcn_swift_bat_grb_pos.xml").read_bytes().replace(b"TRIGGER", str(trigger).encode())


@pytest.fixture
def workdir(tmp_path):
    require_comet()
    return tmp_path


@pytest_twisted.inlineCallbacks
def test_kafka_voevents_reach_a_comet_subscriber_unchanged(kafka_broker, workdir):
    kafka_broker.create_topic(TOPIC)
    node = yield Node().listen()
    comet = Comet.subscriber(workdir, node.broadcast, name="gcn-listener")
    source = KafkaSource(kafka_broker.bootstrap, [TOPIC], node.pipeline, group_id="vtp-gcn-bridge",
                         settings={"auto.offset.reset": "earliest", **FAST_GROUP}, payload="voevent",
                         reactor=reactor)
    try:
        yield until(lambda: any(s.remote_ivo == "ivo://vtp.test/gcn-listener" for s in node.broker.subscribers),
                    timeout=30, what=f"Comet subscribing; log: {comet.output()}")
        source.startService()
        notices = {f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{t}-0": notice(t) for t in (1234567, 1234568, 1234569)}
        # a broken message on the topic is rejected and does not stop the stream
        kafka_broker.produce(TOPIC, [notices.pop("ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1234567-0"),
                                     b"<not a VOEvent", *notices.values()])
        notices["ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1234567-0"] = notice(1234567)
        names = {comet_file_name(ivorn): ivorn for ivorn in notices}
        yield until(lambda: set(names) <= set(comet.saved()), timeout=60,
                    what=f"Comet saving the GCN notices; log: {comet.output()}")
        saved = comet.saved()
        for name, ivorn in names.items():
            assert saved[name] == notices[ivorn], ivorn  # byte for byte: the notice is passed through unchanged
            assert c14n(saved[name]) == c14n(notices[ivorn])
        assert sorted(node.recorder.ivorns) == sorted(notices)
        assert node.pipeline.stats.rejected_total == 1
        # the Kafka offsets are committed once the broker took the events: a restart does not replay them
        yield until(lambda: kafka_broker.committed(TOPIC, "vtp-gcn-bridge") == 4, timeout=30, what="commit")
    finally:
        yield source.stopService()
        comet.stop()
        yield node.close()
