"""Idle and slowloris subscriber connections are bounded: first message, one message's arrival, iamalive answers.

Protocol level on a task.Clock (StringTransport peers), then once over real loopback sockets.
"""

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from gateway.config import load
from gateway.vtp import messages
from gateway.vtp.broker import Broker
from gateway.vtp.framing import FrameProtocol
from vtp.vtpkit import connect, framed, roles, written


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def warnings(events):
    return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]


def make_broker(clock, **options):
    options = {"iamalive_interval": 60.0, "handshake_timeout": 10.0, "frame_timeout": 5.0, **options}
    broker = Broker("ivo://vtp.test/broker", clock=clock, **options)
    broker.start()
    return broker


def authenticate_reply() -> bytes:
    return framed(messages.authenticate_response("ivo://sub/ok", "ivo://vtp.test/broker", [], 0))


def test_a_connection_that_says_nothing_is_closed_at_the_handshake_timeout(clock, logged):
    broker = make_broker(clock)
    silent, silent_transport = connect(broker)
    polite, polite_transport = connect(broker, port=40001)
    polite.dataReceived(authenticate_reply())
    clock.advance(9.9)
    assert not silent_transport.disconnecting
    clock.advance(0.1)
    assert silent_transport.disconnecting and silent not in broker.subscribers
    assert not polite_transport.disconnecting and polite in broker.subscribers
    assert broker.dropped_idle == 1 and ", 1 as idle" in broker.summary()
    assert warnings(logged) == ["subscriber 127.0.0.1:40000 sent no complete message within 10 s of connecting; "
                                "closing it (vtp.subscriber_handshake_timeout)"]


def test_a_partial_frame_that_trickles_is_closed_however_often_bytes_come(clock, logged):
    broker = make_broker(clock)
    trickler, transport = connect(broker)
    trickler.dataReceived(authenticate_reply())  # past the handshake: now it starts a frame it never finishes
    trickler.dataReceived(b"\x00\x00\x01\x00")  # announces 256 bytes
    for _ in range(4):
        clock.advance(1.2)
        trickler.dataReceived(b"<")
        assert not transport.disconnecting
    clock.advance(0.2)  # 5 s after its first bytes
    assert transport.disconnecting and trickler not in broker.subscribers
    assert broker.dropped_idle == 1
    assert warnings(logged) == ["subscriber 127.0.0.1:40000 took over 5 s to send one message (a partial frame "
                                "trickled in); closing it (vtp.subscriber_frame_timeout)"]


def test_frames_split_over_reads_that_each_complete_in_time_keep_the_connection(clock):
    broker = make_broker(clock)
    proto, transport = connect(broker)
    proto.dataReceived(authenticate_reply())
    alive = framed(messages.iamalive_response("ivo://sub/ok", "ivo://vtp.test/broker", 0))
    for _ in range(10):  # each message takes 4 s, less than the 5 s bound; the bound starts again for each
        proto.dataReceived(alive[:10])
        clock.advance(4)
        proto.dataReceived(alive[10:])
    # two messages in one read, the second left partial: the bound runs for the new one only
    proto.dataReceived(alive + alive[:10])
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting and broker.dropped_idle == 1


def test_a_subscriber_that_does_not_answer_iamalive_is_closed_after_alive_timeout(clock, logged):
    broker = make_broker(clock, alive_timeout=15.0)
    mute, mute_transport = connect(broker)
    talker, talker_transport = connect(broker, port=40001)
    for proto in (mute, talker):
        proto.dataReceived(authenticate_reply())
    written(mute_transport), written(talker_transport)
    clock.advance(60)
    assert roles(written(mute_transport)) == ["iamalive"]
    talker.dataReceived(framed(messages.iamalive_response("ivo://sub/ok", "ivo://vtp.test/broker", 0)))
    clock.advance(14.9)
    assert not mute_transport.disconnecting
    clock.advance(0.1)
    assert mute_transport.disconnecting and broker.dropped_silent == 1
    assert not talker_transport.disconnecting and talker in broker.subscribers
    assert warnings(logged) == ["subscriber 127.0.0.1:40000 did not answer iamalive within 15 s; closing it "
                                "(vtp.subscriber_alive_timeout)"]


def test_zero_turns_a_bound_off_and_the_config_documents_the_defaults(clock):
    broker = make_broker(clock, handshake_timeout=0, frame_timeout=0, alive_timeout=0)
    proto, transport = connect(broker)
    proto.dataReceived(b"\x00\x00\x01")
    clock.advance(3600)  # iamalive sent every minute, never answered, nothing bounds it
    assert not transport.disconnecting and proto in broker.subscribers
    vtp = load().vtp
    assert (vtp.subscriber_handshake_timeout, vtp.subscriber_frame_timeout, vtp.subscriber_alive_timeout) == (
        30.0, 30.0, 60.0)


class Peer(FrameProtocol):
    """A raw subscriber over a real socket: answers authenticate (``polite``) or not; records when it was closed."""

    def __init__(self, polite: bool):
        super().__init__()
        self.polite, self.closed = polite, defer.Deferred()

    def frameReceived(self, payload):
        message = messages.parse_message(payload)
        if self.polite and message.role == "authenticate":
            self.sendFrame(messages.authenticate_response("ivo://sub/ok", message.origin, [], 0))
        elif self.polite and message.role == "iamalive":
            self.sendFrame(messages.iamalive_response("ivo://sub/ok", message.origin, 0))

    def connectionLost(self, reason=protocol.connectionDone):
        super().connectionLost(reason)
        self.closed.callback(reactor.seconds())


@pytest_twisted.inlineCallbacks
def test_real_sockets_silent_and_trickling_peers_are_closed_a_subscriber_stays(logged):
    broker = Broker("ivo://vtp.test/broker", iamalive_interval=0.3, handshake_timeout=0.6, frame_timeout=0.6,
                    alive_timeout=5.0)
    port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(broker)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    trickle = None
    try:
        start = reactor.seconds()
        silent = yield connectProtocol(endpoint, Peer(polite=False))
        trickler = yield connectProtocol(endpoint, Peer(polite=False))
        subscriber = yield connectProtocol(endpoint, Peer(polite=True))
        trickler.transport.write(authenticate_reply() + b"\x00\x00\x10\x00")  # then one byte every 0.1 s
        trickle = task.LoopingCall(lambda: trickler.transport.write(b" "))
        trickle.start(0.1)
        silent_closed = yield silent.closed
        trickler_closed = yield trickler.closed
        assert 0.5 < silent_closed - start < 3.0
        assert 0.5 < trickler_closed - start < 3.0
        yield task.deferLater(reactor, 0.5, lambda: None)  # two more iamalive rounds, answered
        assert not subscriber.closed.called and len(broker.subscribers) == 1 and broker.dropped_idle == 2
    finally:
        if trickle is not None and trickle.running:
            trickle.stop()
        for proto in list(broker.subscribers):
            proto.transport.loseConnection()
        yield port.stopListening()
    said = "\n".join(warnings(logged))
    assert "sent no complete message within 0.6 s of connecting" in said
    assert "took over 0.6 s to send one message" in said
