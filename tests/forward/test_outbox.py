"""The outbox end to end with a webhook route on a local HTTP server: durable before the sink fires, delivered
once, retries with backoff while the endpoint is down, 429s obeyed, failures kept for the operator."""

import copy
import hashlib
import hmac
import json
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from forward.kit import Scripted, events, serve, until
from gateway import config as configuration
from gateway.forward import outbox
from gateway.forward.routes import forward_services
from support import free_port


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
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.web import server

        port = yield TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(server.Site(receiver))
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), what="all delivered after recovery")
        keys = [r["headers"]["idempotency-key"] for r in receiver.requests]
        assert sorted(keys) == sorted(f"hook:{e.ivorn}" for e in ztf)  # each exactly once
    finally:
        yield stop(services)
        if port is not None:
            yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_storm_of_429s_pauses_the_route_for_the_reset_time(database):
    receiver = Scripted(reset=0.3)
    receiver.script.extend(["429"] * 6)
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url, concurrency=1)), database)
    try:
        ztf = events("ztf")[:3]
        for event in ztf:
            yield sink.accept(event)
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), what="delivered after the storm")
        times = [r["time"] for r in receiver.requests]
        for i, request in enumerate(receiver.requests[:-1]):
            if request["behaviour"] == "429":
                assert times[i + 1] - times[i] >= 0.28, "the next request came before x-rate-limit-reset passed"
        ok = [r["headers"]["idempotency-key"] for r in receiver.requests if r["behaviour"] == "ok"]
        assert sorted(ok) == sorted(f"hook:{e.ivorn}" for e in ztf)
        # a 429 is the endpoint's pacing, not the item's failure: attempts are given back
        assert all(r["attempts"] <= 2 for r in rows(database))
    finally:
        yield stop(services)
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_errors_and_garbage_are_retried_and_permanent_failures_kept_for_the_operator(database):
    receiver = Scripted()
    receiver.script.extend(["500", "garbage", "503"])  # garbage with a 200 is a delivery for a webhook
    port, url = yield serve(receiver)
    sink, services = yield start(make_config(webhook(url, concurrency=1)), database)
    try:
        ztf = events("ztf")[:2]
        for event in ztf:
            yield sink.accept(event)
        yield until(lambda: len(rows(database, status="sent")) == 2, what="delivered")
        assert [r["behaviour"] for r in receiver.requests][:3] == ["500", "garbage", "503"]
    finally:
        yield stop(services)
        yield port.stopListening()

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
    from gateway.config import ConfigError
    from gateway.forward.routes import parse_routes

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
        with pytest.raises(ConfigError) as raised:
            parse_routes(make_config(table), reactor)
        assert message in str(raised.value), (table, str(raised.value))
        assert "forward.routes #1" in str(raised.value)
    with pytest.raises(ConfigError, match="two routes are named"):
        parse_routes(make_config(webhook("http://h/"), webhook("http://h/")), reactor, build=False)


@pytest_twisted.inlineCallbacks
def test_outbox_on_postgresql(pg_url):
    from gateway.store.db import Database

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
    from gateway.pipeline import Router
    from gateway.store import Store

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
