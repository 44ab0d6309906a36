"""The receiver, protocol level: every submission acked or nak'd with a reason; the ack waits for the pipeline."""

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from vtp.vtpkit import DATA, Recorder, connect, framed, ivorn, make_pipeline, voevent, written

from gateway.vtp import messages
from gateway.vtp.access import Whitelist
from gateway.vtp.receiver import Receiver


def synchronous(function, *args):
    return defer.maybeDeferred(function, *args)


@pytest.fixture
def clock():
    return task.Clock()


def make_receiver(clock, *sinks, **options):
    pipeline = make_pipeline(*sinks, clock=clock)
    options.setdefault("run_blocking", synchronous)
    return Receiver(pipeline, "ivo://vtp.test/receiver", clock=clock, **options), pipeline


def submit(proto, payload: bytes):
    proto.dataReceived(framed(payload))


def replies(transport):
    return [messages.parse_message(p) for p in written(transport)]


def test_valid_event_is_acked_only_after_the_pipeline_took_it(clock):
    sink = Recorder(hold=True)
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    submit(proto, voevent("r1"))
    assert sink.ivorns == [ivorn("r1")]
    assert written(transport) == []  # the sink has not finished
    sink.pending[0].callback(None)
    [ack] = replies(transport)
    assert (ack.role, ack.origin, ack.response) == ("ack", ivorn("r1"), "ivo://vtp.test/receiver")
    assert receiver.accepted == 1 and not transport.disconnecting


def test_sink_failure_is_a_nak_so_the_author_retries(clock):
    sink = Recorder(hold=True)
    receiver, pipeline = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    submit(proto, voevent("r2"))
    sink.pending[0].errback(RuntimeError("disk full"))
    [nak] = replies(transport)
    assert nak.role == "nak" and "disk full" in nak.result
    assert ivorn("r2") not in pipeline.seen  # a retry will be routed


def test_many_submissions_on_one_connection_are_answered_in_order(clock):
    sink = Recorder()
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    proto.dataReceived(b"".join(framed(voevent(f"m{n}")) for n in range(5)))
    assert [(r.role, r.origin) for r in replies(transport)] == [("ack", ivorn(f"m{n}")) for n in range(5)]
    assert sink.ivorns == [ivorn(f"m{n}") for n in range(5)]


def test_duplicate_is_acked_and_not_routed_again_and_logged(clock):
    sink = Recorder()
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        submit(proto, voevent("d1"))
        submit(proto, voevent("d1"))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [r.role for r in replies(transport)] == ["ack", "ack"]
    assert sink.ivorns == [ivorn("d1")] and receiver.duplicates == 1
    lines = [formatEvent(e) for e in logged if "duplicate" in (e.get("log_format") or "")]
    assert len(lines) == 1 and ivorn("d1") in lines[0] and "acked, not routed again" in lines[0]


def test_duplicate_known_to_the_store_is_acked_and_not_routed(clock):
    sink = Recorder()
    receiver, _ = make_receiver(clock, sink, has_ivorn=lambda i: defer.succeed(i == ivorn("stored")))
    proto, transport = connect(receiver)
    submit(proto, voevent("stored"))
    assert [r.role for r in replies(transport)] == ["ack"] and sink.events == []


def test_invalid_voevent_is_nakd_with_the_schema_problem(clock):
    sink = Recorder()
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    submit(proto, voevent("bad").replace(b"<Who>", b"<Whom/><Who>"))
    [nak] = replies(transport)
    assert nak.role == "nak" and nak.origin == ivorn("bad") and "invalid VOEvent 2.0" in nak.result
    assert "Whom" in nak.result and sink.events == []


def test_ivorn_without_local_id_is_nakd(clock):
    receiver, _ = make_receiver(clock, Recorder())
    proto, transport = connect(receiver)
    submit(proto, voevent("x").replace(b"ivo://vtp.test/stream#x", b"ivo://vtp.test/stream"))
    [nak] = replies(transport)
    assert nak.role == "nak" and "ivo://authority/path#localID" in nak.result


@pytest.mark.parametrize("payload, reason", [
    (b"this is not XML", "unreadable XML"),
    (b"\xff\xfe\x00<", "unreadable XML"),
    (b'<trn:Transport xmlns:trn="http://www.telescope-networks.org/xml/Transport/v1.1" role="publish"/>',
     "unknown Transport role 'publish'"),
    (messages.iamalive("ivo://confused/author", 0), "expected a VOEvent"),
])
def test_garbage_and_unknown_roles_are_nakd_and_the_connection_survives(clock, payload, reason):
    sink = Recorder()
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    submit(proto, payload)
    submit(proto, voevent("after"))
    nak, ack = replies(transport)
    assert nak.role == "nak" and reason in nak.result
    assert ack.role == "ack" and sink.ivorns == [ivorn("after")]


def test_billion_laughs_is_nakd_without_expansion(clock):
    receiver, _ = make_receiver(clock, Recorder())
    proto, transport = connect(receiver)
    started = time.process_time()
    submit(proto, (DATA / "billion_laughs.xml").read_bytes())
    assert time.process_time() - started < 1.0
    [nak] = replies(transport)
    assert nak.role == "nak" and "unreadable XML" in nak.result
    assert "lollol" not in nak.result and len(nak.result) < 2000


@pytest.fixture
def http_probe():
    """A loopback HTTP server counting requests: an external entity must never be fetched."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"FETCHED")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()


def test_external_entity_is_nakd_and_nothing_fetched_or_read(clock, http_probe):
    port, hits = http_probe
    receiver, _ = make_receiver(clock, Recorder())
    proto, transport = connect(receiver)
    submit(proto, (DATA / "external_entity.xml").read_bytes().replace(b"PORT", str(port).encode()))
    [nak] = replies(transport)
    assert nak.role == "nak" and "root:" not in nak.result and "FETCHED" not in nak.result
    # the probe serves one connection at a time, in order: a fetch would have been served before this request
    urllib.request.urlopen(f"http://127.0.0.1:{port}/after", timeout=10).read()
    assert hits == ["/after"]


def test_author_whitelist_default_is_loopback_only(clock):
    receiver, _ = make_receiver(clock, Recorder())
    stranger, stranger_transport = connect(receiver, host="10.9.8.7")
    submit(stranger, voevent("intruder"))
    assert stranger_transport.disconnecting and stranger_transport.value() == b""
    assert receiver.refused == 1 and receiver.accepted == 0


def test_author_whitelist_by_network(clock):
    receiver, _ = make_receiver(clock, Recorder(), whitelist=Whitelist(["10.0.0.0/8"]))
    proto, transport = connect(receiver, host="10.9.8.7")
    submit(proto, voevent("friend"))
    assert [r.role for r in replies(transport)] == ["ack"]


def test_client_that_connects_and_sends_nothing_is_closed_after_the_idle_timeout(clock):
    receiver, _ = make_receiver(clock, Recorder(), idle_timeout=20.0)
    proto, transport = connect(receiver)
    clock.advance(19.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting


def test_prefix_longer_than_body_waits_then_times_out(clock):
    receiver, _ = make_receiver(clock, Recorder(), idle_timeout=20.0)
    proto, transport = connect(receiver)
    body = voevent("short")
    proto.dataReceived(framed(body)[:4].replace(b"\x00\x00", b"\x00\x01", 1) + body)  # promises 64 KiB more
    assert transport.value() == b""
    clock.advance(21)
    assert transport.disconnecting and receiver.accepted == 0


def test_prefix_shorter_than_body_naks_the_fragments(clock):
    receiver, _ = make_receiver(clock, Recorder())
    proto, transport = connect(receiver)
    body = voevent("cut")
    proto.dataReceived(len(body[:100]).to_bytes(4, "big") + body)
    first = replies(transport)
    assert first and first[0].role == "nak" and "unreadable XML" in first[0].result
    # the rest of the body is then read as a length prefix: four printable bytes announce > 500 MB: closed
    assert transport.disconnecting and receiver.accepted == 0


def test_length_prefix_over_the_limit_closes_without_allocating(clock):
    receiver, _ = make_receiver(clock, Recorder(), max_frame_bytes=100_000)
    proto, transport = connect(receiver)
    import tracemalloc

    tracemalloc.start()
    proto.dataReceived((2 ** 31).to_bytes(4, "big") + b"x" * 1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert transport.disconnecting and transport.value() == b""
    assert peak < 1_000_000


def test_small_events_are_validated_inline_large_ones_through_run_blocking(clock):
    handed_off = []

    def counting(function, *args):
        handed_off.append(args[0].get("ivorn"))  # the validator gets the frame's parsed tree
        return synchronous(function, *args)

    sink = Recorder()
    receiver, _ = make_receiver(clock, sink, run_blocking=counting, inline_bytes=len(voevent("small")) + 100)
    proto, transport = connect(receiver)
    big = voevent("big").replace(b"</Who>", b"</Who><!--" + b"x" * 1000 + b"-->")
    submit(proto, voevent("small"))
    submit(proto, big)
    submit(proto, big.replace(b"<Who>", b"<Whom/><Who>").replace(b"#big", b"#bad"))
    assert [(r.role, r.origin) for r in replies(transport)] == [
        ("ack", ivorn("small")), ("ack", ivorn("big")), ("nak", ivorn("bad"))]
    assert handed_off == [ivorn("big"), ivorn("bad")]
    assert sink.ivorns == [ivorn("small"), ivorn("big")]
    assert (proto.acked, proto.naked) == (2, 1)


def test_submissions_wait_their_turn_while_the_pipeline_holds_one(clock):
    sink = Recorder(hold=True)
    receiver, _ = make_receiver(clock, sink)
    proto, transport = connect(receiver)
    proto.dataReceived(b"".join(framed(voevent(f"w{n}")) for n in range(3)))
    assert sink.ivorns == [ivorn("w0")] and written(transport) == []
    sink.pending[0].callback(None)
    assert [r.origin for r in replies(transport)] == [ivorn("w0")] and sink.ivorns == [ivorn("w0"), ivorn("w1")]
    sink.pending[1].errback(RuntimeError("disk full"))
    sink.pending[2].callback(None)
    assert [(r.role, r.origin) for r in replies(transport)] == [("nak", ivorn("w1")), ("ack", ivorn("w2"))]
