"""The pipeline's contract: events reach every sink, duplicates don't, failures are not remembered as seen."""

from datetime import datetime, timezone

import pytest
from twisted.internet import defer, task

from gateway.alerts import Alert, AlertError
from gateway.event import Event
from gateway.pipeline import Pipeline, Router, SeenIvorns

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def make_event(ivorn="ivo://test.local/alerts#1", role="observation"):
    return Event(ivorn=ivorn, role=role, received=NOW, xml=b"<x/>", origin="test")


class Recorder:
    def __init__(self):
        self.events = []

    def accept(self, event):
        self.events.append(event)


class Failing:
    def accept(self, event):
        return defer.fail(RuntimeError("disk full"))


def convert(alert):
    if alert.record.get("bad"):
        raise AlertError(alert.source, alert.position, "no position: ra is null")
    if alert.record.get("bug"):
        raise KeyError("diaSource")
    return make_event(f"ivo://test.local/alerts#{alert.record['id']}")


def parse(xml, origin):
    if not xml.startswith(b"<"):
        raise ValueError("not XML")
    return make_event(xml.decode()[1:-2], "test")


def results(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_event_refuses_unknown_role_and_naive_time():
    with pytest.raises(ValueError, match="role"):
        make_event(role="alert")
    with pytest.raises(ValueError, match="timezone"):
        Event("ivo://a/b#c", "test", datetime(2026, 1, 1), b"")


def test_every_sink_gets_each_event_once_and_duplicates_are_counted():
    first, second = Recorder(), Recorder()
    pipeline = Pipeline(convert, parse, Router([first, second]), SeenIvorns(clock=task.Clock()))
    alert = Alert("rubin", "7.4", {"id": 1}, "f.avro", 0)
    assert results(pipeline.ingest_alert(alert)).ivorn.endswith("#1")
    assert results(pipeline.ingest_alert(alert)) is None
    assert len(first.events) == len(second.events) == 1
    assert pipeline.stats.converted == 1 and pipeline.stats.duplicates == 1


def test_rejections_are_counted_by_kind_and_never_raise():
    sink = Recorder()
    pipeline = Pipeline(convert, parse, Router([sink]), SeenIvorns(clock=task.Clock()))
    assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"bad": 1}, "f.avro", 3))) is None
    assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"bug": 1}, "f.avro", 4))) is None
    assert results(pipeline.ingest_voevent(b"garbage", origin="vtp://x")) is None
    pipeline.reject(AlertError("f.avro", 5, "truncated container: unexpected end"))
    assert sink.events == []
    assert pipeline.stats.rejected == {"no position": 1, "conversion failed": 1, "not XML": 1,
                                       "truncated container": 1}
    assert pipeline.stats.rejected_total == 4 and ", 4 rejected (" in pipeline.stats.summary()


def test_a_failing_sink_fails_the_deferred_and_the_event_can_come_again():
    sink = Recorder()
    pipeline = Pipeline(convert, parse, Router([sink, Failing()]), SeenIvorns(clock=task.Clock()))
    alert = Alert("rubin", "7.4", {"id": 7}, "f.avro", 0)
    outcome = results(pipeline.ingest_alert(alert))
    assert outcome.getErrorMessage() == "disk full"  # the sink's own failure, as a person should read it
    # not remembered: the source did not commit, the redelivery must be routed again
    pipeline.router.sinks.pop()
    assert results(pipeline.ingest_alert(alert)).ivorn.endswith("#7")
    assert len(sink.events) == 2


def test_seen_ivorns_expire_and_stay_bounded():
    clock = task.Clock()
    seen = SeenIvorns(capacity=3, ttl=10, clock=clock)
    assert seen.add("a") and not seen.add("a")
    clock.advance(11)
    assert "a" not in seen and seen.add("a")
    for name in "bcdef":
        seen.add(name)
    assert len(seen) <= 3


@pytest.mark.parametrize("error, reason", [
    (KeyError("diaSource"), "conversion failed: missing key 'diaSource' (a gateway bug; please report it)"),
    (ZeroDivisionError("division by zero"), "conversion failed: division by zero (a gateway bug; please report it)"),
    (ValueError(), "conversion failed: value error (a gateway bug; please report it)"),
])
def test_a_converter_bug_is_rejected_with_a_sentence_not_an_exception_repr(error, reason):
    from twisted.logger import formatEvent, globalLogPublisher

    def broken(alert):
        raise error

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        pipeline = Pipeline(broken, parse, Router([Recorder()]), SeenIvorns(clock=task.Clock()))
        assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 1}, "f.avro", 2))) is None
        # the next alert still goes through
        pipeline.convert = convert
        assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 3}, "f.avro", 3))).ivorn.endswith("#3")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [formatEvent(e) for e in logged if "rejected" in formatEvent(e)] == [f"rejected f.avro @ 2: {reason}"]
    assert pipeline.stats.rejected == {"conversion failed": 1} and pipeline.stats.converted == 1


def test_a_recheck_asks_the_store_routes_in_arrival_order_and_counts_what_it_has_as_duplicates():
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    asked, answers = [], {}

    def stored(ivorn):
        asked.append(ivorn)
        answers[ivorn] = defer.Deferred()
        return answers[ivorn]

    sink = Recorder()
    pipeline = Pipeline(convert, parse, Router([sink]), SeenIvorns(clock=task.Clock()), stored=stored)
    assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 0}, "f.avro", 0))).ivorn.endswith("#0")
    assert asked == []  # not a recheck: the store is not asked
    outcomes = [pipeline.ingest_alert(Alert("rubin", "7.4", {"id": n}, "f.avro", n), recheck=True)
                for n in (1, 2, 3, 4)]
    assert asked == [f"ivo://test.local/alerts#{n}" for n in (1, 2, 3, 4)]
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        answers[asked[3]].callback(False)  # answers out of order: #4 waits for the ones before it
        answers[asked[1]].callback(True)
        assert [e.ivorn[-2:] for e in sink.events] == ["#0"]
        answers[asked[0]].errback(RuntimeError("database is locked"))  # cannot tell: routed, not lost
        assert [e.ivorn[-2:] for e in sink.events] == ["#0", "#1"]
        answers[asked[2]].callback(False)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [e.ivorn[-2:] for e in sink.events] == ["#0", "#1", "#3", "#4"]
    assert [results(d) is None for d in outcomes] == [False, True, False, False]
    assert (pipeline.stats.converted, pipeline.stats.duplicates) == (4, 1)
    assert [formatEvent(e) for e in logged if e["log_level"] == LogLevel.warn] == [
        "cannot ask the alert DB about ivo://test.local/alerts#1 (database is locked); routing it"]
    # a recheck of what was routed in this run is a duplicate at once, the store is not asked
    assert results(pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 3}, "f.avro", 3), recheck=True)) is None
    assert len(asked) == 4 and pipeline.stats.duplicates == 2


def test_an_event_that_needs_no_recheck_waits_behind_the_rechecked_ones_before_it():
    """A Kafka partition rechecks only its first messages after an assignment: the next ones must not overtake them
    while the store has not answered (subscribers get each object's events in order)."""
    answers = {}

    def stored(ivorn):
        answers[ivorn] = defer.Deferred()
        return answers[ivorn]

    sink = Recorder()
    pipeline = Pipeline(convert, parse, Router([sink]), SeenIvorns(clock=task.Clock()), stored=stored)
    first = pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 1}, "k", 1), recheck=True)
    second = pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 2}, "k", 2))
    assert sink.events == [] and not second.called
    answers["ivo://test.local/alerts#1"].callback(False)
    assert [e.ivorn[-2:] for e in sink.events] == ["#1", "#2"]
    assert results(first).ivorn.endswith("#1") and results(second).ivorn.endswith("#2")
    third = pipeline.ingest_alert(Alert("rubin", "7.4", {"id": 3}, "k", 3))  # nothing waits: routed at once
    assert results(third).ivorn.endswith("#3") and len(answers) == 1
