"""The outbox end to end with a webhook route on a local HTTP server: durable before the sink fires, delivered
once, retries with backoff while the endpoint is down, 429s obeyed, failures kept for the operator."""

import copy
import hashlib
import hmac
import json
import sqlite3
from types import SimpleNamespace

import pytest
import pytest_twisted
from forward.kit import Scripted, events, serve, until
from support import free_port
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.web import server

from gateway import config as configuration
from gateway.forward import outbox
from gateway.forward.routes import RouteError, forward_services, parse_routes
from gateway.pipeline import Router
from gateway.store import Store
from gateway.store.db import Database


def make_config(*routes, **forward):
    config = configuration.defaults()
    config["forward"].update({"retry_base": 0.05, "retry_max": 0.4, **forward})
    config["forward"]["routes"] = [copy.deepcopy(r) for r in routes]
    return config


def webhook(url, **extra):
    return {"name": "hook", "kind": "webhook", "url": url, "filter": "survey == 'ztf'", "timeout": 2.0, **extra}


def rows(database, **where):
    conn = database.reader()
    try:
        sql = f"SELECT key, status, attempts, last_error, result FROM gateway.{outbox.TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        return [dict(zip(("key", "status", "attempts", "last_error", "result"), r))
                for r in conn.execute(sql, tuple(where.values()))]
    finally:
        conn.close()


@pytest_twisted.inlineCallbacks
def start(config, database):
    sink, services = forward_services(config, database, reactor)
    for service in services:
        service.startService()
    yield None
    return sink, services


@pytest_twisted.inlineCallbacks
def stop(services):
    for service in services:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_rows_are_committed_before_the_sink_fires_and_delivered_once_signed(database, tmp_path):
    receiver = Scripted()
    port, url = yield serve(receiver)
    secret = "s3cret-for-hmac"
    sink, services = yield start(make_config(webhook(url + "/hook", secret=secret)), database)
    try:
        ztf = events("ztf")
        assert sink.accept(events("rubin")[0]) is None  # not selected: nothing to wait for
        for event in ztf:
            d = sink.accept(event)
            assert d is not None
            yield d
            # durable now: a separate connection to the file sees the row
            other = sqlite3.connect(f"{tmp_path}/gateway.db")
            keys = [k for (k,) in other.execute(f"SELECT key FROM {outbox.TABLE}")]
            other.close()
            assert f"hook:{event.ivorn}" in keys
        # the same events again (a source replaying after a crash): no second row, no second delivery
        for event in ztf:
            yield sink.accept(event)
        assert len(rows(database)) == len(ztf)
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), what="all delivered")
        assert len(receiver.requests) == len(ztf)
        seen = set()
        for request in receiver.requests:
            body = request["body"]
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert request["headers"]["x-vogateway-signature"] == expected
            summary = json.loads(body)
            assert request["headers"]["idempotency-key"] == f"hook:{summary['ivorn']}"
            assert summary["survey"] == "ztf" and summary["route"] == "hook"
            seen.add(summary["ivorn"])
        assert seen == {e.ivorn for e in ztf}
    finally:
        yield stop(services)
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_endpoint_down_then_back_is_probed_then_everything_delivered_once(database):
    number = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{number}/hook"
    sink, services = yield start(make_config(webhook(url)), database)
    port = None
    try:
        ztf = events("ztf")
        for event in ztf:
            yield sink.accept(event)
        # a few rows tried, then the route trips and probes one row at a time with backoff: the outage does not
        # spend every row's attempts
        worker = services[0].workers["hook"]
        yield until(lambda: worker.down_since is not None and worker.failing >= worker.trip + 3, what="probing")
        attempts = [r["attempts"] for r in rows(database)]
        assert sum(attempts) <= worker.failing + worker.concurrency, attempts
        assert attempts.count(0) >= len(ztf) - worker.failing - worker.concurrency > 0, attempts
        errors = {r["last_error"] for r in rows(database) if r["attempts"] and r["status"] == "pending"}
        assert errors and all("cannot connect" in e for e in errors), errors
        receiver = Scripted()
        port = yield TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(server.Site(receiver))
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), what="all delivered after recovery")
        keys = [r["headers"]["idempotency-key"] for r in receiver.requests]
        assert sorted(keys) == sorted(f"hook:{e.ivorn}" for e in ztf)  # each exactly once
    finally:
        yield stop(services)
        if port is not None:
            yield port.stopListening()


@pytest_twisted.inlineCallbacks
def deliver_through(database, script, n, **receiver_options):
    """The first ``n`` ZTF events queued on a one-at-a-time webhook route whose endpoint answers by ``script``
    first; fires with (receiver, events) once every one is sent and the route stopped."""
    receiver = Scripted(**receiver_options)
    receiver.script.extend(script)
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url, concurrency=1)), database)
    try:
        ztf = events("ztf")[:n]
        for event in ztf:
            yield sink.accept(event)
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), what=f"delivered after {script}")
    finally:
        yield stop(services)
        yield port.stopListening()
    return receiver, ztf


@pytest_twisted.inlineCallbacks
def test_a_storm_of_429s_pauses_the_route_for_the_reset_time(database):
    receiver, ztf = yield deliver_through(database, ["429"] * 6, 3, reset=0.3)
    times = [r["time"] for r in receiver.requests]
    for i, request in enumerate(receiver.requests[:-1]):
        if request["behaviour"] == "429":
            assert times[i + 1] - times[i] >= 0.28, "the next request came before x-rate-limit-reset passed"
    ok = [r["headers"]["idempotency-key"] for r in receiver.requests if r["behaviour"] == "ok"]
    assert sorted(ok) == sorted(f"hook:{e.ivorn}" for e in ztf)
    # a 429 is the endpoint's pacing, not the item's failure: attempts are given back
    assert all(r["attempts"] <= 2 for r in rows(database))


@pytest_twisted.inlineCallbacks
def test_errors_and_garbage_are_retried_and_permanent_failures_kept_for_the_operator(database):
    # garbage with a 200 is a delivery for a webhook
    receiver, _ = yield deliver_through(database, ["500", "garbage", "503"], 2)
    assert [r["behaviour"] for r in receiver.requests][:3] == ["500", "garbage", "503"]

    # a receiver that refuses (400): failed at once, listed, then retried by the operator and delivered
    receiver = Scripted(default="400")
    port, url = yield serve(receiver)
    config = make_config(webhook(url, name="refusing"))
    sink, services = yield start(config, database)
    try:
        event = events("ztf")[0]
        yield sink.accept(event)
        yield until(lambda: rows(database, status="failed"), what="a failed row")
        [listed] = outbox.list_items(database, ["failed"])
        assert listed["route"] == "refusing" and "HTTP 400" in listed["last_error"]
        receiver.default = "ok"
        assert outbox.retry_items(database, all_failed=True) == 1
        services[0].workers["refusing"].poke()
        yield until(lambda: len(rows(database, status="sent")) == 3, what="delivered after retry")
    finally:
        yield stop(services)
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_max_attempts_then_failed_and_drop(database):
    url = f"http://127.0.0.1:{free_port()}/nobody"
    sink, services = yield start(make_config(webhook(url, max_attempts=3)), database)
    try:
        yield sink.accept(events("ztf")[0])
        yield until(lambda: rows(database, status="failed"), what="gave up")
        [row] = rows(database)
        assert row["attempts"] == 3 and "gave up after 3 attempts" in row["last_error"]
        assert outbox.drop_items(database, [1]) == 1
        assert rows(database)[0]["status"] == "dropped"
        assert outbox.drop_items(database) == 0  # neither ids nor --failed: nothing
    finally:
        yield stop(services)


@pytest_twisted.inlineCallbacks
def test_rate_cap_spaces_deliveries(database):
    receiver = Scripted()
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url, rate=10.0, filter="")), database)
    try:
        batch = events()[:25]
        for event in batch:
            yield sink.accept(event)
        yield until(lambda: len(receiver.requests) == 25, what="all sent")
        times = sorted(r["time"] for r in receiver.requests)
        # bucket of 10, then 10 per second: 25 deliveries take at least ~1.5 s
        assert times[-1] - times[0] >= 1.3
        for i in range(len(times) - 12):
            assert times[i + 12] - times[i] >= 0.15  # never a burst beyond the bucket
    finally:
        yield stop(services)
        yield port.stopListening()


def test_route_config_errors_are_clear():
    cases = [
        ({"name": "x", "kind": "pigeon"}, "kind 'pigeon' is not one of"),
        ({"name": "x", "kind": "webhook"}, "missing 'url'"),
        ({"name": "x", "kind": "webhook", "url": "http://h/", "rate": "fast"}, "rate should be float"),
        ({"name": "x", "kind": "webhook", "url": "http://h/", "colour": 1}, "unknown key(s) for kind webhook: colour"),
        ({"name": "x", "kind": "webhook", "url": "http://h/", "filter": "mag <"}, "column 6"),
        ({"name": "x", "kind": "webhook", "url": "http://h/", "filter": "magg < 3"}, "unknown field 'magg'"),
        ({"name": "a b", "kind": "webhook", "url": "http://h/"}, "without spaces"),
        ({"name": "x", "kind": "command", "command": []}, "non-empty list of strings"),
        ({"name": "x", "kind": "tns", "url": "http://h/", "bot_id": 1, "bot_name": "b", "reporting_group_id": "1",
          "discovery_data_source_id": "1", "reporter": "me", "api_key_env": "VOGATEWAY_NO_SUCH_VARIABLE"},
         "environment variable VOGATEWAY_NO_SUCH_VARIABLE"),
    ]
    for table, message in cases:
        with pytest.raises(RouteError) as raised:
            parse_routes(make_config(table), reactor)
        assert message in str(raised.value), (table, str(raised.value))
        assert "forward.routes #1" in str(raised.value)
    with pytest.raises(RouteError, match="two routes are named"):
        parse_routes(make_config(webhook("http://h/"), webhook("http://h/")), reactor, build=False)


@pytest_twisted.inlineCallbacks
def test_outbox_on_postgresql(pg_url):
    database = Database(pg_url)
    receiver = Scripted()
    receiver.script.extend(["500"])
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url)), database)
    try:
        ztf = events("ztf")
        for event in ztf + ztf:  # the second round: duplicates by key
            yield sink.accept(event)
        table = database.table(outbox.TABLE)

        def sent():
            conn = database.reader()
            try:
                return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE status = 'sent'").fetchone()[0]
            finally:
                conn.close()
        yield until(lambda: sent() == len(ztf), what="all sent on PostgreSQL")
        keys = sorted(r["headers"]["idempotency-key"] for r in receiver.requests if r["behaviour"] == "ok")
        assert keys == sorted(f"hook:{e.ivorn}" for e in ztf)
        assert outbox.counts(database) == {("hook", "sent"): len(ztf)}
    finally:
        yield stop(services)
        yield port.stopListening()
        database.stop()


@pytest_twisted.inlineCallbacks
def test_payload_is_read_from_the_store_and_copied_only_for_events_not_stored(database):
    """Behind the store (as in ``serve``) the outbox keeps no second copy of each VOEvent: deliveries read the
    store's ``voevent`` row. An event the store has not written gets its VOEvent copied, and is delivered too."""
    receiver = Scripted()
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url)), database)
    router = Router([Store(database), sink])
    try:
        ztf = events("ztf")
        stored, alone = ztf[:-1], ztf[-1]
        yield defer.gatherResults([router.publish(event) for event in stored])
        yield sink.accept(alone)
        conn = database.reader()
        try:
            copied = [i for (i,) in conn.execute(f"SELECT ivorn FROM gateway.{outbox.PAYLOAD_TABLE}")]
        finally:
            conn.close()
        assert copied == [alone.ivorn]
        yield until(lambda: len(receiver.requests) == len(ztf), what="every event delivered")
        sent = sorted(json.loads(r["body"])["ivorn"] for r in receiver.requests)
        assert sent == sorted(e.ivorn for e in ztf)
    finally:
        yield stop(services)
        yield port.stopListening()


# -- the route worker's timers, on a Clock: no real time passes --------------------------------------------------


class DueRows:
    """An outbox with ``n`` rows due: claims hand them out in order, results are recorded at once."""

    max_batch = 500

    def __init__(self, n):
        self.due = [outbox.Item(i, "r", f"r:{i}", f"ivo://x/y#{i}", None, b"", {}, 0, "send", "", False)
                    for i in range(n)]
        self.recorded = []

    def claim(self, route, limit, lease):
        claimed, self.due = self.due[:limit], self.due[limit:]
        return defer.succeed((claimed, None))

    def record(self, item, outcome, max_attempts, hook):
        self.recorded.append((item.id, outcome.kind))
        return defer.succeed(None)

    @staticmethod
    def backoff(attempts):
        return 1.0


class Instant:
    kind = "test"

    def deliver(self, item):
        return defer.succeed(outbox.delivered())


class Hanging:
    kind = "test"

    def __init__(self):
        self.waiting = []

    def deliver(self, item):
        d = defer.Deferred()
        self.waiting.append(d)
        return d


def worker_on(destination, rows, clock, **options):
    route = SimpleNamespace(name="r", destination=destination)
    return outbox.RouteWorker(route, rows, clock=clock, **options)


def test_token_bucket_bursts_then_refills_at_its_rate():
    clock = Clock()
    bucket = outbox.TokenBucket(10.0, None, clock)
    assert bucket.available() == 10
    bucket.take(10)
    assert bucket.available() == 0 and bucket.wait() == pytest.approx(0.1)
    clock.advance(0.05)
    assert bucket.available() == 0
    clock.advance(0.05)
    assert bucket.available() == 1
    clock.advance(60)
    assert bucket.available() == 10  # never more than the burst
    assert outbox.TokenBucket(0.0, None, clock).available() >= 1 << 30  # rate 0: no cap


def test_a_rate_capped_route_sends_its_burst_then_one_row_per_interval():
    clock = Clock()
    rows = DueRows(20)
    worker = worker_on(Instant(), rows, clock, rate=8.0)  # 1/8 s: exact in binary, so the clock never drifts
    worker.start()
    clock.advance(0)
    assert len(rows.recorded) == 8  # the bucket's burst
    for sent in range(9, 21):
        clock.advance(0.0625)
        assert len(rows.recorded) == sent - 1  # not before the next token
        clock.advance(0.0625)
        assert len(rows.recorded) == sent
    assert [kind for _, kind in rows.recorded] == ["delivered"] * 20


def test_stop_waits_for_deliveries_in_flight_then_gives_up_after_the_grace():
    clock = Clock()
    destination = Hanging()
    worker = worker_on(destination, DueRows(2), clock, concurrency=2)
    worker.start()
    clock.advance(0)
    assert len(destination.waiting) == 2
    stopped = worker.stop(grace=5.0)
    destination.waiting[0].callback(outbox.delivered())  # one finishes and is recorded; the other hangs
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.2)
    assert stopped.called and worker.in_flight == 1  # left leased in the outbox, sent again later
    assert not clock.getDelayedCalls()  # no timer left behind


def test_stop_fires_once_the_last_delivery_is_recorded():
    clock = Clock()
    destination = Hanging()
    worker = worker_on(destination, DueRows(1), clock)
    worker.start()
    clock.advance(0)
    stopped = worker.stop(grace=5.0)
    assert not stopped.called
    destination.waiting[0].callback(outbox.delivered())
    assert stopped.called and not clock.getDelayedCalls()  # the grace timer is cancelled
