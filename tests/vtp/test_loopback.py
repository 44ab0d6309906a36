"""Our own roles over real loopback sockets: author -> receiver -> pipeline -> broker -> subscriber client."""

import os
import socket

import psutil
import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString

from gateway.vtp.author import send_events
from gateway.vtp.broker import Broker
from gateway.vtp.framing import FrameProtocol
from gateway.vtp.receiver import Receiver
from gateway.vtp.subscriber import subscriber_service
from support import ClockedReactor
from vtp.vtpkit import Recorder, ivorn, make_pipeline, voevent


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def until(condition, timeout=20.0, what="condition"):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        yield sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Node:
    """A gateway's VTP side on loopback: pipeline -> broker, receiver feeding the pipeline; ports chosen by the OS."""

    def __init__(self, **broker_options):
        self.recorder = Recorder()
        self.broker = Broker("ivo://vtp.test/node", **broker_options)
        self.pipeline = make_pipeline(self.broker, self.recorder)
        self.receiver = Receiver(self.pipeline, "ivo://vtp.test/node")
        self.ports = []

    @defer.inlineCallbacks
    def listen(self):
        for factory in (self.broker, self.receiver):
            port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
            self.ports.append(port)
        return self

    @property
    def broadcast(self):
        return f"127.0.0.1:{self.ports[0].getHost().port}"

    @property
    def receive(self):
        return f"127.0.0.1:{self.ports[1].getHost().port}"

    def close(self):
        for subscriber in list(self.broker.subscribers):
            subscriber.transport.abortConnection()
        return defer.gatherResults([port.stopListening() for port in self.ports])


@pytest.fixture
def node():
    made = []

    @defer.inlineCallbacks
    def make(**options):
        n = yield Node(**options).listen()
        made.append(n)
        return n

    yield make
    for n in made:
        pytest_twisted.blockon(n.close())


def subscribe(remote, filters=(), reactor=reactor):
    recorder = Recorder()
    service = subscriber_service(reactor, remote, make_pipeline(recorder), "ivo://vtp.test/sub", filters)
    service.startService()
    return service, recorder


@pytest_twisted.inlineCallbacks
def test_author_to_receiver_to_broker_to_subscriber(node):
    n = yield node()
    service, got = subscribe(n.broadcast)
    try:
        yield until(lambda: len(n.broker.subscribers) == 1, what="subscriber")
        payloads = [voevent(f"loop{i}") for i in range(20)]
        results = yield send_events(n.receive, payloads, "ivo://vtp.test/author", timeout=10)
        assert [(r.ivorn, r.accepted) for r in results] == [(ivorn(f"loop{i}"), True) for i in range(20)]
        yield until(lambda: len(got.events) == 20, what="20 events at the subscriber")
        assert [e.xml for e in got.events] == payloads  # byte for byte, in order
        yield until(lambda: n.broker.deliveries == 20 and not next(iter(n.broker.subscribers)).outstanding,
                    what="acks")
        [sub] = n.broker.subscribers
        assert (sub.acked, sub.missed) == (20, 0)
        # re-sent: acked, not broadcast again (a new event sent after them arrives next, with nothing before it)
        again = yield send_events(n.receive, payloads[:3], timeout=10)
        assert all(r.accepted for r in again) and n.receiver.duplicates == 3
        yield send_events(n.receive, [voevent("loop-after")], timeout=10)
        yield until(lambda: len(got.events) > 20, what="the event sent after the duplicates")
        assert got.ivorns == [ivorn(f"loop{i}") for i in range(20)] + [ivorn("loop-after")]
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_upstream_filter_travels_to_the_broker(node):
    n = yield node()
    service, got = subscribe(n.broadcast, ["//Param[@name='mag' and @value > 20]"])
    try:
        yield until(lambda: n.broker.subscribers and next(iter(n.broker.subscribers)).filters, what="filter")
        # "lit" is filtered out upstream: the next matching event arrives right after "dim"
        yield send_events(n.receive, [voevent("dim", 21.0), voevent("lit", 15.0), voevent("dim2", 22.0)], timeout=10)
        yield until(lambda: len(got.events) >= 2, what="events")
        assert got.ivorns == [ivorn("dim"), ivorn("dim2")]
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_subscriber_reconnects_with_backoff_after_the_broker_drops_it(node):
    n = yield node()
    clock = task.Clock()  # the reconnection backoff; the sockets are real
    service, got = subscribe(n.broadcast, reactor=ClockedReactor(clock))
    try:
        yield until(lambda: len(n.broker.subscribers) == 1, what="subscriber")
        next(iter(n.broker.subscribers)).transport.abortConnection()
        yield until(lambda: len(n.broker.subscribers) == 0, what="drop")
        # the retry waits its backoff (at least 1 s, with up to 1 s of jitter), and not less
        def retries():  # the connection's alive timeout (120 s) is on the clock too
            return [call for call in clock.getDelayedCalls() if call.getTime() - clock.seconds() < 100]

        yield until(retries, what="a reconnection scheduled")
        [retry] = retries()
        delay = retry.getTime() - clock.seconds()
        assert 1.0 <= delay <= 3.0, delay  # Twisted counts the drop as attempt 1: 1 s x 2 + jitter
        clock.advance(delay - 0.001)
        assert retry.active() and len(n.broker.subscribers) == 0
        clock.advance(0.001)
        yield until(lambda: len(n.broker.subscribers) == 1, timeout=10, what="reconnection")
        yield send_events(n.receive, [voevent("after-reconnect")], timeout=10)
        yield until(lambda: got.ivorns == [ivorn("after-reconnect")], what="event after reconnecting")
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_send_reports_refused_connection_and_nak(node):
    n = yield node()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    refused = yield send_events(f"127.0.0.1:{port}", [voevent("r1"), voevent("r2")], timeout=5)
    assert [r.accepted for r in refused] == [False, False]
    assert all(r.reason.startswith("connection failed") for r in refused)
    mixed = yield send_events(n.receive, [voevent("good"), b"<not-a-voevent/>", voevent("bad").replace(
        b"<Who>", b"<Whom/><Who>")], timeout=5)
    assert [r.verdict for r in mixed] == ["ack", "failed", "nak"]
    assert "invalid VOEvent 2.0" in mixed[2].reason


class Silent(FrameProtocol):
    """Connects and never reads: the kernel buffers fill, then Twisted's, then the broker's queue."""

    def connectionMade(self):
        self.transport.pauseProducing()


class Counter(FrameProtocol):
    def __init__(self):
        super().__init__()
        self.count = 0

    def frameReceived(self, payload):
        self.count += 1


@pytest_twisted.inlineCallbacks
def test_subscriber_that_reads_nothing_is_disconnected_others_keep_receiving(node):
    n = yield node(buffer_bytes=300_000, buffer_events=200)
    host, port = n.broadcast.split(":")
    silent = yield connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), Silent())
    reader = yield connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), Counter())
    yield until(lambda: len(n.broker.subscribers) == 2, what="two subscribers")
    me = psutil.Process(os.getpid())
    rss_before = me.memory_info().rss
    from gateway.event import Event, utcnow

    padding = b"<!--" + b"p" * 20_000 + b"-->"
    sent = 0
    for batch in range(1000):
        for i in range(5):  # bursts well inside the buffer: a reading subscriber keeps up
            xml = voevent(f"flood{sent}").replace(b"</How>", padding + b"</How>")
            n.broker.accept(Event(ivorn(f"flood{sent}"), "test", utcnow(), xml))
            sent += 1
            for sub in n.broker.subscribers:
                assert sub.queued_bytes <= n.broker.buffer_bytes
        yield sleep(0.002)  # let the reactor write and read
        if n.broker.dropped_slow:
            break
    assert n.broker.dropped_slow == 1, "the silent subscriber was not disconnected"
    yield until(lambda: reader.count == sent + 1, what="reader got every event")  # + authenticate
    assert me.memory_info().rss - rss_before < 100_000_000
    assert len(n.broker.subscribers) == 1
    silent.transport.abortConnection()
    reader.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_a_thousand_connections_opened_and_dropped(node):
    n = yield node()
    service, got = subscribe(n.broadcast)
    try:
        yield until(lambda: len(n.broker.subscribers) == 1, what="subscriber")
        me = psutil.Process(os.getpid())
        fds_before = me.num_fds()
        for target in (n.broadcast, n.receive):
            host, port = target.split(":")
            for start in range(0, 500, 25):  # in waves within the listen backlog (50)
                connections = yield defer.gatherResults([
                    connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), protocol.Protocol())
                    for _ in range(25)])
                for connection in connections:
                    connection.transport.abortConnection()
        results = yield send_events(n.receive, [voevent("still-here")], timeout=10)
        assert results[0].accepted
        yield until(lambda: got.ivorns == [ivorn("still-here")], what="event after the storm")
        yield until(lambda: len(n.broker.subscribers) == 1, what="transient subscribers gone")
        yield until(lambda: me.num_fds() <= fds_before + 5, what="file descriptors released")
    finally:
        yield service.stopService()


class Mute(protocol.Protocol):
    """Reads what it is sent, never answers; the factory's ``talkers`` are the connections that sent something."""

    def dataReceived(self, data):
        self.factory.talkers.add(self)


@pytest_twisted.inlineCallbacks
def test_send_times_out_on_a_receiver_that_never_answers():
    factory = protocol.Factory.forProtocol(Mute)
    factory.talkers = set()
    port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    clock = task.Clock()  # the reply timeout; the connections are real
    try:
        sending = send_events(f"127.0.0.1:{port.getHost().port}", [voevent("t1"), voevent("t2")], timeout=0.3,
                              reactor=ClockedReactor(clock))
        for n in (1, 2):  # each event waits 0.3 s for its reply on a connection of its own, then gives up
            yield until(lambda: len(factory.talkers) == n, what=f"submission {n} received")
            clock.advance(0.299)
            assert not sending.called and len(factory.talkers) == n
            clock.advance(0.001)
        results = yield sending
        assert [(r.verdict, r.reason) for r in results] == [("failed", "no reply within 0.3 s")] * 2
    finally:
        yield port.stopListening()
