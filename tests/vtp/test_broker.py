"""The broker, protocol level: StringTransport peers and a task.Clock, no sockets."""

import re
import tracemalloc
from datetime import datetime, timezone

import pytest
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from gateway.event import Event
from gateway.vtp import messages
from gateway.vtp.access import Rule, Whitelist
from gateway.vtp.broker import Broker
from vtp.vtpkit import connect, framed, ivorn, roles, voevent, written

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def event(local_id, mag=18.5):
    return Event(ivorn=ivorn(local_id), role="test", received=NOW, xml=voevent(local_id, mag), origin="test")


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def broker(clock):
    b = Broker("ivo://vtp.test/broker", clock=clock, iamalive_interval=60.0, buffer_events=50, buffer_bytes=200_000)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(log_events, level=None):
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in log_events if level is None or e.get("log_level") == level]


def reply(proto, data: bytes):
    proto.dataReceived(framed(data))


def authenticated(proto, name="ivo://sub/test"):
    """The subscriber's reply to authenticate (what every VTP subscriber sends first)."""
    reply(proto, messages.authenticate_response(name, "ivo://vtp.test/broker", [], 0))
    return proto


def publish(broker, *events):
    """Accept ``events`` and let the flush timer run (the broker sends in batches, on its clock)."""
    for e in events:
        broker.accept(e)
    broker.clock.advance(broker.flush_interval)


def test_authenticate_on_connect_then_every_event(broker):
    proto, transport = connect(broker)
    sent = written(transport)
    assert roles(sent) == ["authenticate"]
    assert messages.parse_message(sent[0]).origin == "ivo://vtp.test/broker"
    publish(broker, *(event(f"e{n}") for n in range(3)))
    assert written(transport) == [voevent(f"e{n}") for n in range(3)]
    assert proto.sent == 3 and broker.deliveries == 3


def test_subscriber_xpath_filter_is_honoured(broker):
    bright, _ = connect(broker)
    everything, all_transport = connect(broker, port=40001)
    bright_transport = bright.transport
    reply(bright, messages.authenticate_response("ivo://sub/bright", "ivo://vtp.test/broker",
                                                 ["//Param[@name='mag' and @value < 18]"], 0))
    written(bright_transport), written(all_transport)
    publish(broker, event("faint", 19.0), event("bright", 17.0))
    assert written(bright_transport) == [voevent("bright", 17.0)]
    assert len(written(all_transport)) == 2
    assert bright.filtered == 1 and bright.remote_ivo == "ivo://sub/bright"


def test_invalid_filter_is_logged_and_ignored(broker, logged):
    proto, transport = connect(broker)
    reply(proto, messages.authenticate_response("ivo://s", "ivo://b", ["//[[["], 0))
    assert proto.filters == []
    assert any("invalid XPath" in t for t in texts(logged))


def test_acks_are_matched_to_ivorns_and_missed_events_counted(broker, clock):
    proto, transport = connect(broker)
    publish(broker, *(event(f"a{n}") for n in range(4)))
    reply(proto, messages.ack("ivo://s", ivorn("a2"), 0))
    reply(proto, messages.ack("ivo://s", ivorn("a0"), 0))
    reply(proto, messages.ack("ivo://s", ivorn("never-sent"), 0))  # not counted
    reply(proto, messages.nak("ivo://s", ivorn("a1"), "not for me", 0))
    assert (proto.acked, proto.naked, proto.missed) == (2, 1, 1)
    assert list(proto.outstanding) == [ivorn("a3")]
    # answering iamalive keeps it connected; a3 is never acked: missed after ack_timeout (2 intervals)
    for _ in range(3):
        clock.advance(60)
        reply(proto, messages.iamalive_response("ivo://s", "ivo://vtp.test/broker", 0))
    assert proto.missed == 2 and not proto.outstanding
    assert not transport.disconnecting and proto in broker.subscribers


def test_subscriber_that_never_acks_stays_bounded(broker):
    proto, transport = connect(broker)
    for n in range(500):
        publish(broker, event(f"n{n}"))
        transport.clear()
    assert len(proto.outstanding) <= broker.buffer_events
    assert proto.missed == 500 - broker.buffer_events
    assert proto in broker.subscribers


def test_iamalive_every_interval_and_a_silent_subscriber_is_dropped(broker, clock, logged):
    talker, talker_transport = connect(broker)
    mute, mute_transport = connect(broker, port=40001)
    authenticated(talker), authenticated(mute)  # mute answers authenticate, then nothing more
    written(talker_transport), written(mute_transport)
    clock.advance(59.9)
    assert written(mute_transport) == []
    clock.advance(0.1)
    assert roles(written(mute_transport)) == ["iamalive"]
    assert roles(written(talker_transport)) == ["iamalive"]
    reply(talker, messages.iamalive_response("ivo://talker", "ivo://vtp.test/broker", 0))
    clock.advance(59.9)
    assert not mute_transport.disconnecting  # alive_timeout defaults to the interval
    clock.advance(0.1)
    assert mute_transport.disconnecting and mute not in broker.subscribers
    assert not talker_transport.disconnecting and roles(written(talker_transport)) == ["iamalive"]
    assert broker.dropped_silent == 1
    assert any("did not answer iamalive" in t for t in texts(logged))


def test_slow_subscriber_is_disconnected_and_logged_others_keep_receiving(broker, logged):
    slow, slow_transport = connect(broker)
    fast, fast_transport = connect(broker, port=40001)
    written(fast_transport)
    slow.pauseProducing()  # what Twisted does when the socket buffer is full: the subscriber reads nothing
    tracemalloc.start()
    for n in range(200):
        publish(broker, event(f"s{n}"))
        assert slow.queued_bytes <= broker.buffer_bytes and slow.queued_frames <= broker.buffer_events
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert slow_transport.disconnecting and slow not in broker.subscribers
    assert broker.dropped_slow == 1 and slow.missed >= broker.buffer_events
    assert len(written(fast_transport)) == 200
    assert peak < 2 * broker.buffer_bytes
    assert any("slow-subscriber policy" in t for t in texts(logged, LogLevel.warn))


def test_paused_subscriber_gets_its_queue_when_it_resumes(broker):
    proto, transport = connect(broker)
    written(transport)
    proto.pauseProducing()
    for n in range(10):
        publish(broker, event(f"q{n}"))
    assert written(transport) == [] and proto.queued_frames == 10
    proto.resumeProducing()
    assert written(transport) == [voevent(f"q{n}") for n in range(10)]
    assert proto.queued_bytes == 0


def test_subscriber_whitelist_by_network(clock, logged):
    broker = Broker("ivo://b", clock=clock, whitelist=Whitelist(["10.0.0.0/8"]))
    outsider, outsider_transport = connect(broker, host="192.168.1.5")
    insider, insider_transport = connect(broker, host="10.1.2.3")
    assert outsider_transport.disconnecting and outsider_transport.value() == b""
    assert roles(written(insider_transport)) == ["authenticate"]
    assert broker.subscribers == {insider} and broker.refused == 1
    assert any("subscriber whitelist" in t for t in texts(logged))


def test_server_side_rule_filter_and_cap(clock):
    rules = [Rule(network="10.0.0.0/8", filter="//Param[@name='mag' and @value < 18]", max_events=2, window=30.0)]
    broker = Broker("ivo://b", clock=clock, rules=rules)
    ruled, ruled_transport = connect(broker, host="10.0.0.7")
    free, free_transport = connect(broker, host="127.0.0.1")
    authenticated(ruled)  # it stays past the handshake timeout below
    written(ruled_transport), written(free_transport)
    publish(broker, event("faint", 19.0), *(event(f"b{n}", 17.0) for n in range(4)))
    assert written(ruled_transport) == [voevent("b0", 17.0), voevent("b1", 17.0)]
    assert (ruled.filtered, ruled.capped) == (1, 2)
    assert len(written(free_transport)) == 5
    clock.advance(30)  # a new window
    publish(broker, event("b9", 17.0))
    assert written(ruled_transport) == [voevent("b9", 17.0)]


def test_server_side_rule_in_the_filter_language(clock):
    """A rule may use the filter language of routes instead of XPath; it sees alert fields, not only Params."""
    from gateway.alerts.files import iter_inputs
    from gateway.config import load
    from gateway.convert import make_converter
    from gateway.resources import SAMPLES

    convert = make_converter(load())
    events = [convert(a) for a in iter_inputs([str(SAMPLES)]) if not isinstance(a, Exception)]
    rules = [Rule(network="10.0.0.0/8", expression="survey == 'ztf' and mag < 19", max_events=0)]
    broker = Broker("ivo://b", clock=clock, rules=rules)
    ruled, ruled_transport = connect(broker, host="10.0.0.7")
    free, free_transport = connect(broker, host="127.0.0.1")
    written(ruled_transport), written(free_transport)
    publish(broker, *events)
    expected = [e.ivorn for e in events if e.alert.survey == "ztf" and e.alert.record["candidate"]["magpsf"] < 19]
    assert 0 < len(expected) < len(events)
    sent = [re.search(rb' ivorn="([^"]+)"', frame).group(1).decode() for frame in written(ruled_transport)]
    assert sent == expected
    assert ruled.filtered == len(events) - len(expected)
    assert len(written(free_transport)) == len(events)


def test_rule_with_a_bad_expression_names_the_column():
    with pytest.raises(ValueError, match="column 11: unexpected .and."):
        Rule.from_config({"network": "10.0.0.0/8", "expression": "survey == and mag < 19"})
    with pytest.raises(ValueError, match="unknown subscriber rule key"):
        Rule.from_config({"network": "10.0.0.0/8", "where": "mag < 19"})


def test_events_from_a_subscriber_and_garbage_are_ignored(broker, logged):
    proto, transport = connect(broker)
    written(transport)
    reply(proto, voevent("sneaky"))
    reply(proto, b"garbage")
    reply(proto, b'<Transport role="dance"/>')
    assert proto in broker.subscribers and written(transport) == []
    assert any("unknown Transport role" in t for t in texts(logged))


def test_oversized_event_is_not_broadcast_and_comet_cap_is_warned(clock, logged):
    broker = Broker("ivo://b", clock=clock, max_frame_bytes=150_000)
    proto, transport = connect(broker)
    written(transport)
    big = event("big")
    padded = Event(ivorn=big.ivorn, role="test", received=NOW,
                   xml=big.xml.replace(b"</How>", b"<!--" + b"x" * 120_000 + b"--></How>"))
    publish(broker, padded)
    assert broker.over_comet_cap == 1 and len(written(transport)) == 1
    huge = Event(ivorn=big.ivorn, role="test", received=NOW,
                 xml=big.xml.replace(b"</How>", b"<!--" + b"x" * 200_000 + b"--></How>"))
    publish(broker, huge)
    assert broker.too_large == 1 and written(transport) == []
    assert any("Comet-based subscribers" in t for t in texts(logged))


def counting_writes(transport):
    """Count the write calls made on a StringTransport (what goes to the socket is unchanged)."""
    calls = []
    write = transport.write
    transport.write = lambda data: (calls.append(len(data)), write(data))[1]
    return calls


def test_a_lone_event_goes_at_once_and_a_burst_in_one_write_per_subscriber(broker, clock):
    subscribers = [connect(broker, port=40000 + n) for n in range(3)]
    writes = []
    for _, transport in subscribers:
        written(transport)
        writes.append(counting_writes(transport))
    broker.accept(event("lone"))
    clock.advance(0)  # the next reactor turn
    assert all(written(t) == [voevent("lone")] for _, t in subscribers)
    for n in range(5):  # within flush_interval of the last flush: held, then sent together
        broker.accept(event(f"burst{n}"))
    clock.advance(0)
    assert all(written(t) == [] for _, t in subscribers)
    clock.advance(broker.flush_interval)
    assert all(written(t) == [voevent(f"burst{n}") for n in range(5)] for _, t in subscribers)
    assert all(len(calls) == 2 for calls in writes)  # one write per flush
    clock.advance(10)
    broker.accept(event("later"))
    clock.advance(0)
    assert all(written(t) == [voevent("later")] for _, t in subscribers)
    assert broker.deliveries == 3 * 7 and all(p.sent == 7 for p, _ in subscribers)


def test_stop_sends_what_is_waiting_for_a_flush(broker, clock):
    proto, transport = connect(broker)
    written(transport)
    broker.accept(event("first"))
    clock.advance(0)
    broker.accept(event("pending"))
    broker.stop()
    assert written(transport) == [voevent("first"), voevent("pending")]


def test_each_distinct_filter_is_evaluated_once_per_event(broker, monkeypatch):
    import gateway.vtp.broker as broker_module

    evaluated = []
    real_admits = broker_module.admits
    monkeypatch.setattr(broker_module, "admits", lambda xpath, root: evaluated.append(xpath.path) or
                        real_admits(xpath, root))
    bright = "//Param[@name='mag' and @value < 18]"
    faint = "//Param[@name='mag' and @value >= 18]"
    subscribers = [connect(broker, port=40000 + n) for n in range(8)]
    for n, (proto, transport) in enumerate(subscribers):
        written(transport)
        if n < 6:  # five alike, one different, two without filters
            reply(proto, messages.authenticate_response(f"ivo://sub/{n}", "ivo://vtp.test/broker",
                                                        [faint if n == 5 else bright], 0))
    publish(broker, event("f1", 19.0), event("b1", 17.0), event("b2", 16.0), event("f2", 18.5))
    assert sorted(evaluated) == sorted([bright] * 4 + [faint] * 4)
    got = [written(transport) for _, transport in subscribers]
    assert got[:5] == [[voevent("b1", 17.0), voevent("b2", 16.0)]] * 5
    assert got[5] == [voevent("f1", 19.0), voevent("f2", 18.5)]
    assert got[6] == got[7] and len(got[6]) == 4
    assert [p.filtered for p, _ in subscribers] == [2] * 6 + [0, 0]


def test_acks_read_in_place_agree_with_the_full_parse(broker, logged):
    proto, transport = connect(broker)
    amp = Event(ivorn="ivo://vtp.test/stream#a&b", role="test", received=NOW, xml=voevent("amp"), origin="test")
    publish(broker, *(event(f"k{n}") for n in range(6)), amp)
    acks = [messages.ack("ivo://s", ivorn(f"k{n}"), 0) for n in range(6)]
    proto.dataReceived(b"".join(framed(a) for a in acks[:3]))  # the first checked in full, then read by its head
    assert proto._ack_head is not None
    data = framed(acks[3])
    for n in range(len(data)):  # split anywhere
        proto.dataReceived(data[n:n + 1])
    comet_style = acks[4].replace(b"<trn:Transport", b"<trn:Transport ").replace(b"Z</TimeStamp>",
                                                                               b".5Z</TimeStamp>")
    reply(proto, comet_style)
    reply(proto, messages.ack("ivo://s", "ivo://vtp.test/stream#a&b", 0))  # &amp; in Origin: the full parser
    head = acks[5][:acks[5].index(b"<Origin>") + 8]
    reply(proto, head + b"<b>" + ivorn("k5").encode() + b"</b></Origin></trn:Transport>")  # markup: not an ack
    assert proto.acked == 6 and list(proto.outstanding) == [ivorn("k5")]
    reply(proto, acks[5])
    assert proto.acked == 7 and not proto.outstanding
    assert proto in broker.subscribers and written(transport)[-1] == voevent("amp")


def test_acks_whose_start_changes_every_time_are_all_read(broker):
    proto, transport = connect(broker)
    publish(broker, *(event(f"t{n}") for n in range(4)))
    for n in range(4):  # a TimeStamp before the Origin: no two heads alike
        ack = messages.ack("ivo://s", ivorn(f"t{n}"), 0).replace(
            b"<Origin>", f"<TimeStamp>2026-11-24T12:00:0{n}Z</TimeStamp><Origin>".encode())
        reply(proto, ack)
    assert proto.acked == 4 and not proto.outstanding
