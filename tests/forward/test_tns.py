"""TNS-style AT reports against a local server that behaves like the TNS bot API: each object reported once,
ever; the reply polled until processed; the name stored; 429, 500, hangs, accept-then-timeout and garbage."""

import json
import math

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from forward.kit import FakeTNS, events, rubin_event, serve, until
from forward.test_outbox import make_config, rows, start, stop
from gateway.alerts import fields
from gateway.forward import outbox
from gateway.forward.common import validation_errors
from gateway.forward.tns import RUBIN_FILTERS as TNS_RUBIN_FILTERS
from gateway.forward.tns import RUBIN_INSTRUMENT, TNS, ReportError, internal_name, tns_time
from gateway.pool.work import slim

API_KEY = "tns-api-key-0123456789abcdef-never-logged"
RUBIN_FILTERS = {"u": "20", "g": "21", "r": "22", "i": "23", "z": "24", "y": "25"}


def tns_route(url, **extra):
    return {"name": "tns", "kind": "tns", "url": url + "/api", "api_key": API_KEY, "bot_id": 12345,
            "bot_name": "vogateway_test_bot", "reporting_group_id": "42", "discovery_data_source_id": "48",
            "reporter": "Gateway Test <gw@example.org>", "timeout": 0.6, "poll_interval": 0.1, "filter": "",
            **extra}


def reportable(evs, filters=None):
    """Object key -> internal name of the objects an AT report can be made for (computed like the route does)."""
    tns = TNS("http://unused", "k", 1, "b", "1", "1", "r", filters=filters, instrument="9" if filters else "")
    out = {}
    for event in evs:
        try:
            tns.report(event.view)
        except ReportError:
            continue
        out[fields.object_key(event.alert)] = internal_name(event.view)
    tns.http.pool.closeCachedConnections()
    return out


def tns_rows(database):
    conn = database.reader()
    try:
        return {r[0]: {"status": r[1], "tns_name": r[2], "report_id": r[3]} for r in conn.execute(
            f"SELECT objectid, status, tns_name, report_id FROM gateway.{outbox.TNS_TABLE}")}
    finally:
        conn.close()


@pytest.fixture
def captured_logs():
    lines = []

    def observer(event):
        lines.append(formatEvent(event) + " " + repr(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


@pytest_twisted.inlineCallbacks
def test_every_new_object_reported_once_named_and_stored(database, captured_logs):
    fake = FakeTNS(API_KEY, polls_before_processed=2)
    port, url = yield serve(fake)
    ztf = events("ztf")
    rubin = events("rubin", "11.1")
    expected = {**reportable(ztf), **reportable(rubin, RUBIN_FILTERS)}
    assert len(expected) >= 4
    # one object already in the store: its row gets the TNS name
    known = next(iter(expected))
    database.run_write(lambda conn: conn.execute("INSERT INTO diaobject (objectid, survey) VALUES (?, ?)",
                                                 (known, "ztf")))
    config = make_config(tns_route(url, name="tns-ztf", filter="survey == 'ztf'"),
                         tns_route(url, name="tns-rubin", filter="survey == 'rubin'", filters=RUBIN_FILTERS,
                                   instrument="9"),
                         # a second route selecting the same ZTF objects: still one report each
                         tns_route(url, name="tns-again", filter="survey == 'ztf' and mag < 30"))
    sink, services = yield start(config, database)
    try:
        for event in ztf + rubin + ztf:
            d = sink.accept(event)
            if d is not None:
                yield d
        yield until(lambda: all(r["status"] == "named" for r in tns_rows(database).values())
                    and set(tns_rows(database)) >= set(expected), timeout=30, what="every object named")
    finally:
        yield stop(services)
        yield port.stopListening()
    assert sorted(r["internal_name"] for r in fake.reports) == sorted(expected.values())  # once each, ever
    stored = tns_rows(database)
    for objectid, internal in expected.items():
        assert stored[objectid]["tns_name"] == fake.objects[internal]
    conn = database.reader()
    [(name,)] = conn.execute("SELECT tns_name FROM gateway.diaobject WHERE objectid = ?", (known,)).fetchall()
    conn.close()
    assert name == fake.objects[expected[known]]
    # the reply was polled until processed (404 twice per report, then 200)
    replies = [r for r in fake.requests if r["path"].endswith("bulk-report-reply")]
    assert len(replies) == 3 * len(fake.report_objects)
    # every request carried the bot's marker and the key in the form body, never in the URL
    for request in fake.requests:
        assert request["headers"]["user-agent"] == 'tns_marker{"tns_id":12345,"type":"bot","name":"vogateway_test_bot"}'
        assert API_KEY not in request["path"]
    # each report followed the schema, as TNS received it
    for request in fake.requests:
        if request["path"].endswith("/set/bulk-report"):
            assert validation_errors(json.loads(request["args"]["data"]), "tns", "at-report.schema.json") == []
    # the key is in no log line and not in the outbox
    assert captured_logs and not any(API_KEY in line for line in captured_logs)
    conn = database.reader()
    dump = [str(row) for row in conn.execute(f"SELECT * FROM gateway.{outbox.TABLE}")]
    conn.close()
    assert not any(API_KEY in row for row in dump)


def test_photometry_is_converted_from_rubin_nJy_and_taken_from_ztf_magpsf():
    tns = TNS("http://unused", "k", 1, "b", "1", "1", "r", filters=RUBIN_FILTERS, instrument="9")
    try:
        rubin = next(e for e in events("rubin", "11.1") if fields.detection(e.alert).psf_flux
                     and fields.detection(e.alert).psf_flux > 0 and fields.n_previous(e.alert) >= 2)
        report = tns.report(rubin.view)["at_report"]["0"]
        sources = [*rubin.alert.record["prvDiaSources"], rubin.alert.record["diaSource"]]
        points = sorted(report["photometry"]["photometry_group"].values(), key=lambda p: p["obsdate"])
        assert len(points) == len([s for s in sources if s["psfFlux"] > 0])
        for source, point in zip(sorted(sources, key=lambda s: s["midpointMjdTai"]), points):
            assert point["flux"] == pytest.approx(31.4 - 2.5 * math.log10(source["psfFlux"]), abs=1e-3)
            assert point["flux_error"] == pytest.approx(2.5 / math.log(10) * source["psfFluxErr"] / source["psfFlux"],
                                                        abs=1e-3)
            assert point["filter_value"] == RUBIN_FILTERS[source["band"]]
            assert point["flux_units"] == "1"
        assert report["discovery_datetime"] == points[0]["obsdate"]
        assert validation_errors({"at_report": {"0": report}}, "tns", "at-report.schema.json") == []

        ztf_event = next(e for e in events("ztf") if e.alert.record["candidate"]["isdiffpos"] in ("t", "1"))
        report = TNS("http://unused", "k", 1, "b", "1", "1", "r").report(ztf_event.view)["at_report"]["0"]
        candidate = ztf_event.alert.record["candidate"]
        last = max(report["photometry"]["photometry_group"].values(), key=lambda p: p["obsdate"])
        assert last["flux"] == pytest.approx(candidate["magpsf"], abs=1e-3)
        assert last["filter_value"] == {1: "110", 2: "111", 3: "112"}[candidate["fid"]]
        assert last["instrument_value"] == "196"
        assert report["internal_name"] == ztf_event.alert.record["objectId"]
        assert report["ra"]["value"] == pytest.approx(candidate["ra"], abs=1e-6)
    finally:
        tns.http.pool.closeCachedConnections()


def test_an_alert_without_a_filter_id_is_a_clear_report_error():
    tns = TNS("http://unused", "k", 1, "b", "1", "1", "r", filters={"g": "21"})  # the route's table replaces ours
    event = next(e for e in events("rubin", "11.1") if e.view.band != "g" and e.view.mag is not None)
    try:
        with pytest.raises(ReportError, match=f"no TNS filter id for band '{event.view.band}' of rubin"):
            tns.report(event.view)
    finally:
        tns.http.pool.closeCachedConnections()


def report_of(event, **settings):
    tns = TNS("http://unused", "k", 1, "b", "1", "1", "r", **settings)
    try:
        report = tns.report(event.view)
    finally:
        tns.http.pool.closeCachedConnections()
    assert validation_errors(report, "tns", "at-report.schema.json") == []
    return report["at_report"]["0"]


def test_rubin_filter_and_instrument_ids_by_default():
    event = next(e for e in events("rubin", "11.1") if e.view.mag is not None)
    report = report_of(event)
    for point in report["photometry"]["photometry_group"].values():
        assert point["instrument_value"] == RUBIN_INSTRUMENT == "287"
    assert {p["filter_value"] for p in report["photometry"]["photometry_group"].values()} <= set(TNS_RUBIN_FILTERS.values())
    assert report["photometry"]["photometry_group"]["0"]["filter_value"] == TNS_RUBIN_FILTERS[event.view.previous[0].band
                                                                                          if event.view.previous
                                                                                          else event.view.band]
    configured = report_of(event, filters={b: "9" + v for b, v in TNS_RUBIN_FILTERS.items()}, instrument="42")
    assert {p["instrument_value"] for p in configured["photometry"]["photometry_group"].values()} == {"42"}
    assert all(p["filter_value"].startswith("9") for p in configured["photometry"]["photometry_group"].values())


def test_discovery_is_the_objects_first_detection_not_the_packets_earliest_point():
    base = next(e for e in events("rubin", "11.1") if e.view.n_previous >= 2)
    first = min(s["midpointMjdTai"] for s in base.alert.record["prvDiaSources"]) - 12.5
    rubin = rubin_event(diaObject={"firstDiaSourceMjdTai": first}, diaSource={"diaSourceId": 77})
    report = report_of(rubin)
    earliest = min(p["obsdate"] for p in report["photometry"]["photometry_group"].values())
    assert report["discovery_datetime"] == tns_time(first, "tai") < earliest
    ztf = next(e for e in events("ztf") if e.view.detection.is_negative is False and e.alert.record["candidate"][
        "jdstarthist"] < min([d.mjd for d in (*e.view.previous, e.view.detection)]) + 2400000.5 - 1)
    report = report_of(ztf)
    assert report["discovery_datetime"] == tns_time(ztf.alert.record["candidate"]["jdstarthist"] - 2400000.5, "utc")
    # a schema without the object's first detection (Rubin 7.x): the earliest point shipped
    old = next(e for e in events("rubin", "7.4") if e.view.mag is not None and e.view.n_previous)
    report = report_of(old)
    assert report["discovery_datetime"] == min(p["obsdate"] for p in report["photometry"]["photometry_group"].values())


def test_photometry_limits_exposure_and_forced_photometry_non_detection():
    base = next(e for e in events("rubin", "11.1") if e.view.n_previous >= 2)
    first = base.alert.record["diaObject"]["firstDiaSourceMjdTai"]
    prv = [{**s, "exposureTime": 30.0} for s in base.alert.record["prvDiaSources"]]
    forced = [forced_source(first - 9.0, 10.0, 20.0, "g"),    # below 5 sigma: a non-detection
              forced_source(first - 3.0, -5.0, 15.0, "r"),    # the last one before discovery
              forced_source(first - 1.0, 500.0, 10.0, "i"),   # 50 sigma: not a non-detection
              forced_source(first + 0.5, 1.0, 30.0, "z")]     # after discovery
    rubin = rubin_event(diaSource={"exposureTime": 30.0}, prvDiaSources=prv, prvDiaForcedSources=forced)
    report = report_of(rubin)
    sources = sorted([*prv, rubin.alert.record["diaSource"]], key=lambda s: s["midpointMjdTai"])
    points = sorted(report["photometry"]["photometry_group"].values(), key=lambda p: p["obsdate"])
    for source, point in zip(sources, points):
        assert point["limiting_flux"] == pytest.approx(31.4 - 2.5 * math.log10(5 * source["psfFluxErr"]), abs=1e-3)
        assert point["exptime"] == 30.0
    assert report["non_detection"] == {"obsdate": tns_time(first - 3.0, "tai"),
                                       "limiting_flux": pytest.approx(31.4 - 2.5 * math.log10(5 * 15.0), abs=1e-3),
                                       "flux_units": "1", "filter_value": TNS_RUBIN_FILTERS["r"],
                                       "instrument_value": RUBIN_INSTRUMENT}
    # the same report from the event as the worker pool hands it over (slim, with light curves)
    assert report_of(slim(rubin, frozenset(), light_curves=True)) == report
    # ZTF: every point with its image's diffmaglim and exptime; the last upper limit before discovery
    ztf = next(e for e in events("ztf", "3.2"))
    report = report_of(ztf)
    candidates = {tns_time(p["jd"] - 2400000.5, "utc"): p for p in
                  [*ztf.alert.record["prv_candidates"], ztf.alert.record["candidate"]] if p.get("candid")}
    for point in report["photometry"]["photometry_group"].values():
        candidate = candidates[point["obsdate"]]
        assert point["limiting_flux"] == pytest.approx(candidate["diffmaglim"], abs=1e-3)
        assert point.get("exptime") == candidate.get("exptime")  # prv_candidates carry none: not made up
    positive = next(e for e in events("ztf") if e.view.detection.is_negative is False)
    last = max(report_of(positive)["photometry"]["photometry_group"].values(), key=lambda p: p["obsdate"])
    assert last["exptime"] == positive.alert.record["candidate"]["exptime"] == 30.0
    assert report_of(slim(ztf, frozenset(), light_curves=True)) == report


def forced_source(mjd, flux, error, band):
    return {"diaForcedSourceId": int(mjd * 1000), "diaObjectId": 1, "ra": 0.0, "dec": 0.0, "visit": 1,
            "detector": 1, "psfFlux": flux, "psfFluxErr": error, "midpointMjdTai": mjd, "scienceFlux": None,
            "scienceFluxErr": None, "band": band, "timeProcessedMjdTai": mjd, "timeWithdrawnMjdTai": None}


@pytest_twisted.inlineCallbacks
def test_429_storm_500_hang_and_garbage_still_one_report_each(database):
    fake = FakeTNS(API_KEY, polls_before_processed=0, reset=0.25)
    # bulk-report answers: a storm of 429s, a 500, a hang (never answered, not taken), garbage, then fine
    fake.script.extend(["429", "429", "429", "500", "hang", "garbage", "429"])
    port, url = yield serve(fake)
    ztf = events("ztf")
    expected = reportable(ztf)
    sink, services = yield start(make_config(tns_route(url, filter="survey == 'ztf'", concurrency=1)), database)
    try:
        for event in ztf:
            d = sink.accept(event)
            if d is not None:
                yield d
        yield until(lambda: len(tns_rows(database)) == len(expected)
                    and all(r["status"] == "named" for r in tns_rows(database).values()), timeout=40,
                    what="every object named despite the faults")
    finally:
        fake.release()
        yield stop(services)
        yield port.stopListening()
    assert sorted(r["internal_name"] for r in fake.reports) == sorted(expected.values())
    sends = [r for r in fake.requests if r["path"].endswith("/set/bulk-report")]
    for i, request in enumerate(sends[:-1]):
        if request["behaviour"] == "429":
            assert sends[i + 1]["time"] - request["time"] >= 0.23, "x-rate-limit-reset not obeyed"
    # after the hang and the garbage (either may have been taken), TNS was searched before sending again
    searches = [r for r in fake.requests if r["path"].endswith("/get/search")]
    assert len(searches) >= 3  # after the 500, the hang, and the garbage


@pytest_twisted.inlineCallbacks
def test_accept_then_timeout_is_not_reported_twice(database):
    fake = FakeTNS(API_KEY, polls_before_processed=0)
    fake.script.append("accept-hang")  # the report is taken, the reply never comes
    port, url = yield serve(fake)
    event = next(e for e in events("ztf") if reportable([e]))
    internal = internal_name(event.view)
    sink, services = yield start(make_config(tns_route(url, filter="survey == 'ztf'")), database)
    try:
        yield sink.accept(event)
        yield until(lambda: tns_rows(database).get(fields.object_key(event.alert), {}).get("status") == "named",
                    timeout=20, what="the object named")
    finally:
        fake.release()
        yield stop(services)
        yield port.stopListening()
    assert fake.reports_of(internal) == 1
    [row] = rows(database)
    assert row["status"] == "sent" and row["result"] == fake.objects[internal]
