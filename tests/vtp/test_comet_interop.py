"""Interop with the reference implementation: real Comet 3.1.0 processes on loopback, both directions.

Comet processes are shared per module (start-up is ~1-2 s each); every test uses its own IVORNs.
"""

import sys

import pytest
import pytest_twisted
from lxml import etree
from twisted.internet import defer, reactor, utils
from vtp.cometkit import Comet, comet_file_name, require_comet, sendvo
from vtp.test_loopback import Node, until
from vtp.vtpkit import Recorder, c14n, ivorn, make_pipeline, voevent

from gateway.vtp.author import send_events
from gateway.vtp.subscriber import subscriber_service


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    require_comet()
    return tmp_path_factory.mktemp("comet")


@pytest.fixture(scope="module")
def comet_broker(workdir):
    comet = Comet.broker(workdir)
    yield comet
    comet.stop()


@pytest.fixture(scope="module")
def our_node(workdir):
    node = pytest_twisted.blockon(Node().listen())
    yield node
    pytest_twisted.blockon(node.close())


@pytest.fixture(scope="module")
def comet_subscriber(workdir, our_node):
    """A Comet subscriber (--save-event) of our broker."""
    comet = Comet.subscriber(workdir, our_node.broadcast)
    yield comet
    comet.stop()


def _whole_xml(data: bytes) -> bool:
    try:
        c14n(data)
    except etree.XMLSyntaxError:
        return False
    return True


@defer.inlineCallbacks
def saved_by(comet, ivorns, timeout=30.0):
    names = {comet_file_name(i): i for i in ivorns}

    def all_written():
        # Comet writes each file in place, not by rename: one that exists may still be empty or half written
        saved = comet.saved()
        return set(names) <= set(saved) and all(_whole_xml(saved[name]) for name in names)

    yield until(all_written, timeout=timeout, what=f"Comet saving {len(names)} events; log: {comet.output()}")
    saved = comet.saved()
    return {names[name]: saved[name] for name in names}


@pytest_twisted.inlineCallbacks
def test_our_broker_to_comet_subscriber(our_node, comet_subscriber):
    yield until(lambda: any(s.remote_ivo == "ivo://vtp.test/comet-subscriber" for s in our_node.broker.subscribers),
                timeout=30, what=f"Comet subscribing; log: {comet_subscriber.output()}")
    payloads = {ivorn(f"to-comet-{n}"): voevent(f"to-comet-{n}", 15 + n / 10) for n in range(25)}
    results = yield send_events(our_node.receive, list(payloads.values()), timeout=10)
    assert all(r.accepted for r in results), results
    saved = yield saved_by(comet_subscriber, payloads)
    for key, xml in payloads.items():
        assert c14n(saved[key]) == c14n(xml), key
    # Comet acked every one of them, matched by IVORN
    [comet] = [s for s in our_node.broker.subscribers if s.remote_ivo == "ivo://vtp.test/comet-subscriber"]
    yield until(lambda: comet.acked >= 25, what="Comet's acks")
    assert comet.missed == 0


@pytest_twisted.inlineCallbacks
def test_comet_sendvo_to_our_receiver_is_acked_and_broadcast(our_node, comet_subscriber, tmp_path):
    recorder = Recorder()
    ours = subscriber_service(reactor, our_node.broadcast, make_pipeline(recorder), "ivo://vtp.test/ours")
    ours.startService()
    try:
        yield until(lambda: len(our_node.broker.subscribers) >= 2, what="both subscribers")
        yield until(lambda: any(s.remote_ivo == "ivo://vtp.test/comet-subscriber"
                                for s in our_node.broker.subscribers), timeout=30, what="Comet subscribed")
        path = tmp_path / "sendvo.xml"
        path.write_bytes(voevent("from-sendvo"))
        out, err, code = yield sendvo(int(our_node.receive.split(":")[1]), path)
        assert code == 0, (out, err)
        assert our_node.receiver.accepted >= 1
        yield until(lambda: ivorn("from-sendvo") in recorder.ivorns, what="our subscriber receiving it")
        saved = yield saved_by(comet_subscriber, [ivorn("from-sendvo")])
        assert c14n(saved[ivorn("from-sendvo")]) == c14n(path.read_bytes())
        # sent again: acked (exit 0) but not broadcast twice
        out, err, code = yield sendvo(int(our_node.receive.split(":")[1]), path)
        assert code == 0, (out, err)
        # an event sent after it reaches our subscriber after any second broadcast would have
        yield send_events(our_node.receive, [voevent("after-sendvo")], timeout=10)
        yield until(lambda: ivorn("after-sendvo") in recorder.ivorns, what="the event sent after the duplicate")
        assert recorder.ivorns.count(ivorn("from-sendvo")) == 1
    finally:
        yield ours.stopService()


@pytest_twisted.inlineCallbacks
def test_comet_broker_to_our_subscriber(comet_broker):
    recorder = Recorder()
    ours = subscriber_service(reactor, f"127.0.0.1:{comet_broker.broadcast}", make_pipeline(recorder),
                              "ivo://vtp.test/ours", ["//Param[@name='mag' and @value < 30]"])
    ours.startService()
    try:
        connected = yield ours.whenConnected()
        # Comet installs our filter on our authenticate reply, and logs it naming our port
        installing = f"Installing filter //Param[@name='mag' and @value < 30] for IPv4Address(type='TCP', " \
                     f"host='127.0.0.1', port={connected.transport.getHost().port})"
        yield until(lambda: installing in comet_broker.log.read_text(errors="replace"), timeout=30,
                    what=f"Comet installing our filter; log: {comet_broker.output()}")
        payloads = [voevent(f"via-comet-{n}", 16.0) for n in range(10)]
        results = yield send_events(f"127.0.0.1:{comet_broker.receive}", payloads, timeout=15)
        assert [r.accepted for r in results] == [True] * 10, results
        yield until(lambda: len(recorder.events) == 10, timeout=30,
                    what=f"10 events from Comet; log: {comet_broker.output()}")
        assert recorder.ivorns == [ivorn(f"via-comet-{n}") for n in range(10)]
        for event, xml in zip(recorder.events, payloads):
            assert c14n(event.xml) == c14n(xml)
    finally:
        yield ours.stopService()


@pytest_twisted.inlineCallbacks
def test_vogateway_send_to_comet_receiver(comet_broker, tmp_path):
    files = []
    for n in range(3):
        path = tmp_path / f"e{n}.xml"
        path.write_bytes(voevent(f"cli-to-comet-{n}"))
        files.append(str(path))
    bad = tmp_path / "bad.xml"
    bad.write_bytes(voevent("cli-bad").replace(b"<Who>", b"<Whom/><Who>"))
    out, err, code = yield utils.getProcessOutputAndValue(
        sys.executable, ["-m", "gateway.cli", "send", f"127.0.0.1:{comet_broker.receive}", *files])
    assert code == 0, (out, err)
    assert out.decode().count(": ack ivo://vtp.test/stream#cli-to-comet-") == 3
    out, err, code = yield utils.getProcessOutputAndValue(
        sys.executable, ["-m", "gateway.cli", "send", f"127.0.0.1:{comet_broker.receive}", str(bad)])
    assert code != 0 and b"nak" in out, (out, err)
