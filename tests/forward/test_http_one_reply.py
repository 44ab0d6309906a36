"""Endpoints that close each connection after one reply without ``Connection: close`` (HTTP/1.0 style): a request
that meets a pooled connection the server has closed is sent again on a new one, so deliveries still go through
on their first attempt (before, the TNS search and the resend after an uncertain attempt met the closed
connection every time: ResponseNeverReceived until max_attempts, then "failed", with the endpoint healthy)."""

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from forward.kit import FakeTNS, Scripted, events, serve_one_reply, until
from forward.test_outbox import make_config, rows, start, stop, webhook
from forward.test_tns import API_KEY, reportable, tns_route, tns_rows
from gateway.forward.routes import KINDS

#: the destination kinds that speak HTTP (each one is tested here); the others speak Kafka, VTP, or run a program
HTTP_KINDS = ("tns", "webhook")
OTHER_KINDS = ("gcn-kafka", "voevent-kafka", "vtp", "command")


def test_every_http_kind_is_tested_here():
    assert sorted(KINDS) == sorted(HTTP_KINDS + OTHER_KINDS), "a new kind: add it to HTTP_KINDS or OTHER_KINDS"


@pytest.fixture
def log_lines():
    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


@pytest_twisted.inlineCallbacks
def test_webhook_to_a_server_closing_after_each_reply(database, log_lines):
    receiver = Scripted()
    port, url, site = yield serve_one_reply(receiver, close="on-next-request")
    ztf = events("ztf")
    # one at a time, so that every delivery after the first finds the previous one's connection in the pool
    sink, services = yield start(make_config(webhook(url + "/hook", concurrency=1, max_attempts=3)), database)
    try:
        for event in ztf:
            yield sink.accept(event)
        yield until(lambda: len(rows(database, status="sent")) + len(rows(database, status="failed")) == len(ztf),
                    timeout=20, what="every webhook sent or failed")
    finally:
        yield stop(services)
        yield port.stopListening()
    assert site.hangups >= len(ztf) - 1  # the closed pooled connections were met...
    assert [(r["status"], r["attempts"]) for r in rows(database)] == [("sent", 1)] * len(ztf)  # ...at no cost
    assert sorted(r["body"] for r in receiver.requests) == sorted(set(r["body"] for r in receiver.requests))
    assert len(receiver.requests) == len(ztf)
    assert not [line for line in log_lines if "ResponseNeverReceived" in line]


@pytest.mark.parametrize("close", ["after-reply", "on-next-request"])
@pytest_twisted.inlineCallbacks
def test_tns_search_and_resend_after_an_uncertain_attempt(database, log_lines, close):
    fake = FakeTNS(API_KEY, polls_before_processed=1)
    fake.script.append("500")  # the first report: uncertain, so the next attempt searches TNS, then sends
    port, url, site = yield serve_one_reply(fake, close=close)
    ztf = events("ztf")
    expected = reportable(ztf)
    sink, services = yield start(make_config(tns_route(url, filter="survey == 'ztf'", concurrency=1,
                                                       max_attempts=4)), database)
    try:
        for event in ztf:
            d = sink.accept(event)
            if d is not None:
                yield d
        yield until(lambda: len(tns_rows(database)) == len(expected)
                    and all(r["status"] in ("named", "failed") for r in tns_rows(database).values()), timeout=30,
                    what="every object named or failed")
    finally:
        yield stop(services)
        yield port.stopListening()
    assert {objectid: r["status"] for objectid, r in tns_rows(database).items()} == dict.fromkeys(expected, "named")
    assert sorted(r["internal_name"] for r in fake.reports) == sorted(expected.values())  # once each
    searches = [r for r in fake.requests if r["path"].endswith("/get/search")]
    assert len(searches) == 1  # after the 500, and only then
    assert not [line for line in log_lines if "ResponseNeverReceived" in line]
    if close == "on-next-request":
        assert site.hangups > 0
