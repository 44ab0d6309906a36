"""Replay against real peers on loopback: `vogateway replay --to` submits stored events to a real Comet broker and a
Comet subscriber of it saves them; a `vogateway serve` with [replay] on_subscribe sends a late Comet subscriber the
recent events (not the older ones); `vogateway replay --subscriber IVO` has a running gateway send them to its
connected Comet subscriber; a long replay to a subscriber with a small buffer is paced by acks, not dropped; bad
arguments are one sentence and exit 2."""

import dataclasses
import sys
from datetime import timedelta

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, utils
from vtp.cometkit import Comet, require_comet
from vtp.test_comet_interop import saved_by
from vtp.test_loopback import Node, node, until  # noqa: F401  (node: the fixture)
from vtp.vtpkit import Recorder, c14n, ivorn, make_pipeline, voevent
from web.webkit import EVENTS

from gateway.store import Database, Store
from gateway.store.rows import timestamp
from gateway.times import utcnow
from gateway.vtp.author import send_events
from gateway.vtp.replay import SubscriberReplay, replay_on_subscribe
from gateway.vtp.subscriber import subscriber_service
from support import free_port

OLD = dataclasses.replace(EVENTS[0], ivorn="ivo://vogateway.local/alerts#old-one",
                          xml=EVENTS[0].xml.replace(EVENTS[0].ivorn.encode(), b"ivo://vogateway.local/alerts#old-one"),
                          received=utcnow() - timedelta(hours=3))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    require_comet()
    return tmp_path_factory.mktemp("replay")


@defer.inlineCallbacks
def stored_db(path, events):
    """A SQLite alert DB at ``path`` holding ``events``; closed again."""
    store = Store(Database(f"sqlite:///{path}", reactor))
    yield defer.gatherResults([store.accept(e) for e in events])
    yield store.close()


def stored_xml(path) -> dict:
    """ivorn -> XML of the voevent rows of the SQLite alert DB at ``path`` (read-only)."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {ivorn: xml.encode() for ivorn, xml in conn.execute("SELECT ivorn, xml FROM voevent")}


def vogateway(*args):
    return utils.getProcessOutputAndValue(sys.executable, ["-m", "gateway.cli", *map(str, args)])


@pytest_twisted.inlineCallbacks
def test_replay_to_comet_broker(workdir):
    db = workdir / "to-broker.db"
    yield stored_db(db, [*EVENTS, OLD])
    broker = Comet.broker(workdir, "replay-broker")
    subscriber = Comet.subscriber(workdir, f"127.0.0.1:{broker.broadcast}", "replay-sub")
    try:
        # the Comet subscriber is connected once an event sent to the broker reaches it
        canary = voevent("replay-canary")

        @defer.inlineCallbacks
        def canary_saved():
            yield send_events(f"127.0.0.1:{broker.receive}", [canary], timeout=5)
            return "ivo_vtp.test_streamreplay-canary" in subscriber.saved()
        for _ in range(60):
            if (yield canary_saved()):
                break
        out, err, code = yield vogateway("replay", "--since", "1h", "--to", f"127.0.0.1:{broker.receive}",
                                         "--db", f"sqlite:///{db}", "-q")
        assert code == 0, (out, err)
        assert err.decode().strip().splitlines()[0] == (f"{len(EVENTS)} events replayed to 127.0.0.1:{broker.receive}:"
                                                        f" {len(EVENTS)} acked, 0 nak'd, 0 not answered")
        saved = yield saved_by(subscriber, [e.ivorn for e in EVENTS])
        for event in EVENTS:
            assert c14n(saved[event.ivorn]) == c14n(event.xml), event.ivorn
        assert not any("old-one" in name for name in subscriber.saved())  # received before --since
        # the same replay again: Comet has every IVORN and refuses them; nothing is saved twice
        out, err, code = yield vogateway("replay", "--since", "1h", "--to", f"127.0.0.1:{broker.receive}",
                                         "--db", f"sqlite:///{db}", "-q", "--limit", "5")
        assert code == 0 and b"5 events replayed" in err, (out, err)
    finally:
        subscriber.stop()
        broker.stop()


@defer.inlineCallbacks
def serve(workdir, name, config_text=""):
    """`vogateway serve` on the bundled samples, with an old event stored already; (process, ports, log path)."""
    import subprocess

    state = workdir / name
    state.mkdir()
    yield stored_db(state / "gateway.db", [OLD])
    (state / "config.toml").write_text(config_text)
    ports = {key: free_port() for key in ("http", "broadcast", "receive")}
    log = state / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(state / "config.toml"), "--state-dir",
         str(state), "--db", f"sqlite:///{state / 'gateway.db'}", "--output", "", "--workers", "-1",
         "--http", f"127.0.0.1:{ports['http']}", "--broadcast", f"127.0.0.1:{ports['broadcast']}",
         "--receive", f"127.0.0.1:{ports['receive']}"], cwd=state, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return (process, ports, log)


@pytest_twisted.inlineCallbacks
def test_late_comet_subscriber_gets_the_last_hour(workdir):
    from support import stop_process

    process, ports, log = yield serve(workdir, "on-subscribe", '[replay]\non_subscribe = "1h"\n')
    subscriber = None
    try:
        yield until(lambda: "replay done" in log.read_text(), timeout=120, what=f"the samples; {log.read_text()}")
        subscriber = Comet.subscriber(workdir, f"127.0.0.1:{ports['broadcast']}", "late-sub")
        saved = yield saved_by(subscriber, [e.ivorn for e in EVENTS], timeout=60)
        stored = stored_xml(log.parent / "gateway.db")  # as this gateway built them (its own Who/Date)
        for event in EVENTS:
            assert c14n(saved[event.ivorn]) == c14n(stored[event.ivorn]), event.ivorn
        # oldest first, so the 3 h old event would have come first: it was left out
        assert not any("old-one" in name for name in subscriber.saved())
        yield until(lambda: "replay to subscriber" in log.read_text(), what="the replay's log line")
        line = next(x for x in log.read_text().splitlines() if "replay to subscriber" in x)
        assert f"{len(EVENTS)} read, {len(EVENTS)} sent, 0 filtered out" in line, line
    finally:
        if subscriber is not None:
            subscriber.stop()
        stop_process(process)


@pytest_twisted.inlineCallbacks
def test_replay_to_a_connected_subscriber(workdir):
    from support import stop_process

    process, ports, log = yield serve(workdir, "to-subscriber")
    subscriber = None
    http = f"127.0.0.1:{ports['http']}"
    try:
        yield until(lambda: "replay done" in log.read_text(), timeout=120, what=f"the samples; {log.read_text()}")
        subscriber = Comet.subscriber(workdir, f"127.0.0.1:{ports['broadcast']}", "asked-sub")
        for _ in range(60):  # until Comet has answered authenticate: the refusal names the IVOs connected
            out, err, code = yield vogateway("replay", "--since", "1h", "--subscriber", "ivo://vtp.test/nobody",
                                             "--http", http, "-q")
            if b"asked-sub" in err:
                break
        assert subscriber.saved() == {}  # it came after the samples
        assert code == 1 and err.decode().strip() == (
            "vogateway replay: no subscriber with IVO 'ivo://vtp.test/nobody' is connected "
            "(connected: ivo://vtp.test/asked-sub)"), err
        out, err, code = yield vogateway("replay", "--since", "1h", "--subscriber", "ivo://vtp.test/asked-sub",
                                         "--http", http, "-q")
        assert code == 0, (out, err)
        assert f"{len(EVENTS)} read, {len(EVENTS)} sent, 0 left out" in err.decode(), err
        saved = yield saved_by(subscriber, [e.ivorn for e in EVENTS], timeout=60)
        stored = stored_xml(log.parent / "gateway.db")
        assert all(c14n(saved[e.ivorn]) == c14n(stored[e.ivorn]) for e in EVENTS)
        assert not any("old-one" in name for name in subscriber.saved())
        # nothing is listening there: one sentence
        out, err, code = yield vogateway("replay", "--since", "1h", "--subscriber", "ivo://x/y", "--http",
                                         f"127.0.0.1:{free_port()}", "-q")
        assert code == 1 and err.decode().count("\n") == 1 and "no gateway answers at" in err.decode(), err
    finally:
        if subscriber is not None:
            subscriber.stop()
        stop_process(process)


@pytest_twisted.inlineCallbacks
def test_long_replay_is_paced_by_acks(tmp_path):
    """600 events to a subscriber whose broker keeps at most 20 unacked or queued: all arrive, in order, and the
    subscriber is neither dropped as slow nor missing any; a filtering subscriber gets only what it asked for."""
    events = [dataclasses.replace(OLD, ivorn=ivorn(f"paced-{n}"), xml=voevent(f"paced-{n}", 15 + (n % 10) / 2),
                                  received=utcnow() - timedelta(minutes=5)) for n in range(600)]
    store = Store(Database(f"sqlite:///{tmp_path / 'paced.db'}", reactor))
    yield defer.gatherResults([store.accept(e) for e in events])
    node = yield Node(buffer_events=20).listen()
    recorders = [Recorder(), Recorder()]
    services = [subscriber_service(reactor, node.broadcast, make_pipeline(recorders[0]), "ivo://vtp.test/all"),
                subscriber_service(reactor, node.broadcast, make_pipeline(recorders[1]), "ivo://vtp.test/bright",
                                   ["//Param[@name='mag' and @value < 17]"])]
    try:
        for service in services:
            service.startService()
        yield until(lambda: {s.remote_ivo for s in node.broker.subscribers} == {"ivo://vtp.test/all",
                                                                                 "ivo://vtp.test/bright"})
        outcomes = yield defer.gatherResults([
            SubscriberReplay(s, store.events_received, None, None, reactor).run() for s in node.broker.subscribers])
        yield until(lambda: len(recorders[0].events) == 600 and len(recorders[1].events) == 240, timeout=60,
                    what="every replayed event")
        order = [e.ivorn for e in sorted(events, key=lambda e: (timestamp(e.received), e.ivorn))]
        assert recorders[0].ivorns == order
        assert recorders[1].ivorns == [i for i in order if 15 + (int(i.split("-")[-1]) % 10) / 2 < 17]
        assert sorted((o.read, o.sent, o.filtered) for o in outcomes) == [(600, 240, 360), (600, 600, 0)]
        assert node.broker.dropped_slow == 0 and all(s.missed == 0 for s in node.broker.subscribers)
        # the on_subscribe hook: a new subscriber gets the last 10 minutes, through the same path
        node.broker.on_subscribe = replay_on_subscribe(store.events_received, 600, reactor)
        late = Recorder()
        service = subscriber_service(reactor, node.broadcast, make_pipeline(late), "ivo://vtp.test/late")
        services.append(service)
        service.startService()
        yield until(lambda: len(late.events) == 600, timeout=60, what="the late subscriber's replay")
    finally:
        for service in services:
            yield service.stopService()
        yield node.close()
        yield store.close()


@pytest.mark.parametrize("args, sentence", [
    (["--since", "yesterday", "--to", "127.0.0.1:1"], "'yesterday' is neither an ISO-8601 time"),
    (["--offset", "5", "--to", "127.0.0.1:1"], "--offset is a Kafka offset"),
    (["--since", "1h", "--until", "2h", "--to", "127.0.0.1:1"], "is not after --since"),
    (["--since", "1h", "--to", "127.0.0.1:1", "--db", "sqlite:///no/such/alerts.db"], "no alert DB at no/such/alerts.db"),
    (["--since", "1h", "--subscriber", "ivo://a/b", "--http", "somewhere"], "--http 'somewhere': expected HOST:PORT"),
    (["--since", "1h", "--to", "127.0.0.1:1", "--from", "http://x/y"], "expected kafka://BROKERS/TOPIC"),
    (["--since", "1h", "--to", "127.0.0.1:1", "--limit", "-1"], "--limit -1"),
])
def test_bad_arguments_are_one_sentence(args, sentence, tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and sentence in done.stderr, done.stderr
    assert done.stderr.startswith("vogateway replay: ") and "Traceback" not in done.stderr


def test_bad_on_subscribe_is_a_config_error(tmp_path):
    import subprocess

    (tmp_path / "c.toml").write_text('[replay]\non_subscribe = "soon"\n')
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp_path / "c.toml"),
                           "--state-dir", str(tmp_path / "var"), "--db", f"sqlite:///{tmp_path / 'g.db'}",
                           "--http", "127.0.0.1:0", "--broadcast", "127.0.0.1:0", "--receive", "127.0.0.1:0"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("vogateway: config error: replay.on_subscribe: 'soon' is not a "
                                                    "duration (e.g. 90s, 10m, 2h, 1d)")


from kafka_broker import kafka_broker  # noqa: E402,F401  (the fixture)


@pytest_twisted.inlineCallbacks
def test_replay_from_kafka(kafka_broker, node):
    """ZTF container packets on a topic, older and newer: --offset 0 replays them all, --since 1h the newer only,
    made into the same VOEvents (IVORNs) `serve` makes, submitted to a real VTP receiver."""
    from pathlib import Path

    from gateway.alerts.files import iter_inputs
    from gateway.config import load
    from gateway.convert import make_converter
    from gateway.resources import SAMPLES

    files = sorted(Path(SAMPLES, "ztf").rglob("*.avro"))
    assert len(files) >= 2
    convert = make_converter(load())
    ivorns = [[convert(a).ivorn for a in iter_inputs([str(f)]) if not isinstance(a, Exception)] for f in files]
    topic = kafka_broker.create_topic(f"replay-{utcnow().timestamp():.0f}")
    producer = kafka_broker.producer()
    now_ms = int(utcnow().timestamp() * 1000)
    for number, path in enumerate(files):
        age = 3 * 3600_000 if number < len(files) // 2 else 60_000  # the first half 3 h old, the rest 1 min
        producer.produce(topic, path.read_bytes(), timestamp=now_ms - age)
        assert producer.flush(15) == 0  # one record batch each: Tansu's high watermark counts batches
    url = f"kafka://{kafka_broker.bootstrap}/{topic}"
    everything = yield node()
    out, err, code = yield vogateway("replay", "--from", url, "--offset", "0", "--to", everything.receive, "-q")
    assert code == 0, (out, err)
    expected = [i for group in ivorns for i in group]
    yield until(lambda: everything.recorder.ivorns == expected, what=f"every replayed alert; {err}")
    newer = yield node()
    out, err, code = yield vogateway("replay", "--from", url, "--since", "1h", "--to", newer.receive, "-q")
    assert code == 0, (out, err)
    expected = [i for group in ivorns[len(files) // 2:] for i in group]
    yield until(lambda: newer.recorder.ivorns == expected, what=f"the newer alerts; {err}")
    older = yield node()
    out, err, code = yield vogateway("replay", "--from", url, "--offset", "0", "--until", "1h", "--to",
                                     older.receive, "-q")
    assert code == 0, (out, err)
    expected = [i for group in ivorns[:len(files) // 2] for i in group]
    yield until(lambda: older.recorder.ivorns == expected, what=f"the older alerts; {err}")
    out, err, code = yield vogateway("replay", "--from", f"kafka://{kafka_broker.bootstrap}/no-such-topic",
                                     "--offset", "0", "--to", newer.receive, "-q")
    assert code == 2 and err.decode() == (f"vogateway replay: Kafka topic 'no-such-topic' does not exist at "
                                          f"{kafka_broker.bootstrap}\n"), err


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest_twisted.inlineCallbacks
def test_pages_of_stored_events_by_received_time(backend, tmp_path):
    """Keyset pages over [since, until) on both backends: every event once, oldest first, the window respected."""
    from web.webkit import database

    from gateway.commands.replay_run import since_text

    base = utcnow() - timedelta(hours=2)
    events = [dataclasses.replace(OLD, ivorn=ivorn(f"page-{n:03d}"), xml=voevent(f"page-{n:03d}"),
                                  received=base + timedelta(seconds=n * 10)) for n in range(120)]
    with database(backend, tmp_path) as db:
        store = Store(db)
        yield defer.gatherResults([store.accept(e) for e in events])
        since, until = since_text(base + timedelta(seconds=100)), since_text(base + timedelta(seconds=1000))
        pages, after = [], None
        while True:
            page = yield store.events_received(since, until, after, 7)
            if not page:
                break
            pages.append(page)
            after = (page[-1].received, page[-1].ivorn)
        got = [item.ivorn for page in pages for item in page]
        assert got == [ivorn(f"page-{n:03d}") for n in range(10, 100)]
        assert max(len(p) for p in pages) == 7
        count = yield store.count_received(since, until)
        assert count == 90
        yield store.close()


def test_replay_requests_from_elsewhere_are_refused():
    """The HTTP side may listen publicly: POST /replay from a non-loopback client is a 403 sentence."""
    from twisted.internet.address import IPv4Address
    from twisted.web.test.requesthelper import DummyRequest

    from gateway.web.replay import ReplayControl

    request = DummyRequest([b""])
    request.method = b"POST"
    request.client = IPv4Address("TCP", "192.0.2.7", 40000)
    request.args = {b"subscriber": [b"ivo://a/b"]}
    body = ReplayControl(Node().broker, store=None, clock=reactor).render(request)
    assert request.responseCode == 403
    assert body == b"replay is only taken from the gateway's own host (loopback)\n"
