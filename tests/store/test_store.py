"""The alert DB on both backends: every sample stored once, objects upserted, bad events fail alone, Citations
survive a restart, cone searches use the sky index and agree with brute force."""

import dataclasses
import gzip
import math
import random

import pytest
import pytest_twisted
from support import query
from twisted.internet import defer, reactor

from gateway.alerts import fields
from gateway.alerts.files import iter_inputs
from gateway.config import load
from gateway.convert import make_converter
from gateway.resources import SAMPLES
from gateway.sky import distance as sky_distance
from gateway.store import Database, Store, StoreError, StoreHistory
from gateway.store.db import DatabaseClosed, parse_url
from gateway.store.rows import MAX_CUTOUT_BYTES, fits_bytes
from gateway.store.schema import DIASOURCE
from gateway.voevent.parse import parse_event


def sample_events(history=None):
    convert = make_converter(load(), history=history)
    return [convert(alert) for alert in iter_inputs([str(SAMPLES)]) if not isinstance(alert, Exception)]


EVENTS = sample_events()


def count(db, table, where="1=1", params=()):
    conn = db.reader()
    try:
        return conn.execute(f"SELECT count(*) FROM gateway.{table} WHERE {where}", params).fetchone()[0]
    finally:
        conn.close()


@pytest_twisted.inlineCallbacks
def test_samples_are_stored_once_with_objects_and_detections(database):
    store = Store(database, max_batch=25)
    yield defer.gatherResults([store.accept(e) for e in EVENTS])
    yield defer.gatherResults([store.accept(e) for e in EVENTS[:10]])  # a replay changes nothing
    assert store.stored == len(EVENTS) + 10 and store.failed == 0
    assert count(database, "alert") == len(EVENTS)
    assert count(database, "voevent") == len(EVENTS)
    alerts = [e.alert for e in EVENTS]
    detections = {d.source_id for a in alerts for d in [fields.detection(a), *fields.previous_detections(a)]
                  if d.source_id is not None}
    assert count(database, "diasource") == len(detections)
    assert count(database, "diaobject") == len({fields.object_key(a) for a in alerts})
    # SQLite keeps the bytes in pack files beside the DB (cutout_pack says where), PostgreSQL in the cutout table
    packed, inside = count(database, "cutout_pack"), count(database, "cutout")
    n_cutouts = sum(len(fields.cutouts(a)) for a in alerts)
    assert (packed, inside) == ((n_cutouts, 0) if database.kind == "sqlite" else (0, n_cutouts))
    # every object row counts its stored detections and points at its latest alert
    for objectid, ndet, first, last, last_ivorn in query(
            database, "SELECT objectid, ndetections, first_mjd, last_mjd, last_ivorn FROM gateway.diaobject"):
        assert ndet == count(database, "diasource", f"objectid = {database.placeholder}", (objectid,))
        mjds = [m for (m,) in query(database, f"SELECT mjd FROM gateway.diasource WHERE objectid = "
                                              f"{database.placeholder}", (objectid,))]
        assert math.isclose(first, min(mjds)) and math.isclose(last, max(mjds))
        # the latest alert: the one with the latest detection; on a tie, the one stored first (a replay changes nothing)
        on_object = [e for e in EVENTS if fields.object_key(e.alert) == objectid]
        newest = max(map(_latest_mjd, on_object))
        assert last_ivorn == [e for e in on_object if _latest_mjd(e) == newest][0].ivorn
    # ZTF cutouts are stored unpacked, as FITS
    ztf = next(e.alert for e in EVENTS if e.alert.survey == "ztf" and fields.cutouts(e.alert))
    content = yield Store(database).cutout(fields.alert_id(ztf), "science")
    assert content[:6] == b"SIMPLE"


def _latest_mjd(event):
    return max(d.mjd for d in [fields.detection(event.alert), *fields.previous_detections(event.alert)])


@pytest_twisted.inlineCallbacks
def test_an_event_from_vtp_is_stored_with_its_wherewhen(database):
    xml = EVENTS[0].xml.replace(EVENTS[0].ivorn.encode(), b"ivo://elsewhere.test/gcn#1")
    event = parse_event(xml, origin="vtp://127.0.0.1:1")
    yield Store(database).accept(event)
    ((author, ra, dec, error, event_time),) = query(
        database, "SELECT author, ra, dec, error_radius, event_time FROM gateway.voevent")
    det = fields.detection(EVENTS[0].alert)
    assert author.startswith("ivo://") and math.isclose(ra, det.ra) and math.isclose(dec, det.dec)
    assert error > 0 and str(event_time).startswith(("19", "20"))
    assert count(database, "alert") == 0  # no alert behind it


@pytest_twisted.inlineCallbacks
def test_a_bad_event_fails_alone_and_its_batch_neighbours_are_stored(database):
    store = Store(database, max_batch=50)
    good = EVENTS[:20]
    # an object row without its key: the DB refuses it (objectid is NOT NULL), so the batch fails and is written
    # again one event per transaction
    broken = dataclasses.replace(EVENTS[20], view=dataclasses.replace(EVENTS[20].view, object_key=None))
    results = yield defer.DeferredList([store.accept(e) for e in [*good[:10], broken, *good[10:]]],
                                       consumeErrors=True)
    failures = [r for ok, r in results if not ok]
    assert len(failures) == 1 and failures[0].check(StoreError)
    assert EVENTS[20].ivorn in str(failures[0].value)
    assert count(database, "alert") == 20 and store.failed == 1


@pytest_twisted.inlineCallbacks
def test_has_ivorn_sees_stored_and_in_flight_events(database):
    store = Store(database)
    first = store.accept(EVENTS[0])
    in_flight = store.accept(EVENTS[1])  # queued behind the first write
    assert (yield store.has_ivorn(EVENTS[1].ivorn)) is True
    yield defer.gatherResults([first, in_flight])
    assert (yield store.has_ivorn(EVENTS[0].ivorn)) is True
    assert (yield store.has_ivorn("ivo://vogateway.local/alerts#0")) is False


@pytest_twisted.inlineCallbacks
def test_citations_survive_a_restart_through_the_store(database):
    history = StoreHistory()
    events = sample_events(history)
    yield defer.gatherResults([Store(database).accept(e) for e in events])
    reloaded = StoreHistory()
    assert reloaded.load(database) == count(database, "diaobject")
    key = fields.object_key(events[-1].alert)
    assert reloaded.previous(key) == history.previous(key)
    # an alert converted after the restart cites the one before it
    convert = make_converter(load(), history=reloaded)
    again = convert(dataclasses.replace(events[-1].alert))
    assert history.previous(key).encode() in again.xml


@pytest_twisted.inlineCallbacks
def test_close_waits_for_accepted_events(database):
    store = Store(database)
    pending = [store.accept(e) for e in EVENTS[:30]]
    yield store.close()
    assert all(d.called for d in pending)
    reopened = Database(database.url, reactor)
    try:
        assert count(reopened, "alert") == 30
    finally:
        reopened.stop()


def _random_sky(n, seed=7):
    rng = random.Random(seed)
    return [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))) for _ in range(n)]


def test_cone_search_uses_the_sky_index_and_matches_brute_force(database):
    points = _random_sky(20_000)
    points += [(359.999, 10.0), (0.001, 10.0), (45.0, 89.99), (225.0, 89.99)]  # wrap-around and pole
    rows = [(i + 1, "obj", "rubin", ra, dec) for i, (ra, dec) in enumerate(points)]
    p = database.placeholder
    database.run_write(lambda conn: conn.cursor().executemany(
        f"INSERT INTO {database.table('diasource')} (diasourceid, objectid, survey, ra, dec) "
        f"VALUES ({p}, {p}, {p}, {p}, {p})", rows))
    explain = "EXPLAIN QUERY PLAN " if database.kind == "sqlite" else "EXPLAIN "
    for ra0, dec0, radius in [(10.0, -20.0, 1.5), (0.0, 10.0, 0.01), (90.0, 89.9, 0.2), (200.0, 45.0, 3.0)]:
        expected = sorted(i + 1 for i, (ra, dec) in enumerate(points) if sky_distance(ra, dec, ra0, dec0) <= radius)
        condition, params = database.backend.cone(DIASOURCE, ra0, dec0, radius)
        sql = f"SELECT diasourceid FROM gateway.diasource WHERE {condition} ORDER BY diasourceid"
        found = [r[0] for r in query(database, sql, params)]
        plan = " ".join(str(r) for r in query(database, explain + sql, params))
        if database.kind == "sqlite":  # the zone index, never a scan of the table; away from the pole, a seek
            assert "USING INDEX diasource_zones" in plan and "SCAN" not in plan, plan  # per zone of the RA interval
            assert dec0 > 89 or radius > 1 or "diasource_zones (<expr>=? AND ra>? AND ra<?)" in plan, plan
        else:  # q3c: an index or bitmap scan of diasource_sky
            assert "diasource_sky" in plan and ("Bitmap" in plan or "Index" in plan), plan
        assert found == expected and found, (ra0, dec0, radius)


def test_gzip_bomb_cutout_is_refused():
    bomb = gzip.compress(b"\0" * (MAX_CUTOUT_BYTES + 1))
    with pytest.raises(ValueError, match="unpacks to more than"):
        fits_bytes(bomb)
    assert fits_bytes(gzip.compress(b"SIMPLE  =")) == b"SIMPLE  ="


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://relative.db", "file.db"])
def test_bad_store_urls_say_what_is_expected(url):
    with pytest.raises(StoreError, match="expected sqlite:///"):
        parse_url(url)


def test_unreachable_postgresql_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        Database("postgresql://nobody@127.0.0.1:1/none", reactor)


@pytest_twisted.inlineCallbacks
def test_group_commit_rolls_back_only_the_failing_write(database):
    """Writes queued together share one transaction; the one that fails is rolled back alone."""
    table, p = database.table("diaobject"), database.placeholder

    def insert(key):
        return lambda conn: conn.execute(f"INSERT INTO {table} (objectid) VALUES ({p})", (key,))

    def insert_then_fail(conn):
        insert("half-written")(conn)
        raise RuntimeError("disk full")

    results = yield defer.DeferredList([database.write(insert("a")), database.write(insert_then_fail),
                                        database.write(insert("b"))], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, False, True]
    assert results[1][1].check(RuntimeError)
    assert sorted(r[0] for r in query(database, "SELECT objectid FROM gateway.diaobject")) == ["a", "b"]


@pytest_twisted.inlineCallbacks
def test_write_item_batches_one_turn_and_answers_each_item(database):
    """Items queued in one reactor turn reach ``fn`` as one list (capped by ``limit``); each caller gets its own
    result; a failing job fails its items only (the group is rolled back and each job runs again alone)."""
    table, p = database.table("diaobject"), database.placeholder
    calls = []

    def insert(conn, keys):
        calls.append(list(keys))
        for key in keys:
            conn.execute(f"INSERT INTO {table} (objectid) VALUES ({p})", (key,))
        return [f"stored {key}" for key in keys]

    def explode(conn, keys):
        raise RuntimeError("disk full")

    items = [database.write_item(insert, f"k{i}", limit=3) for i in range(5)]
    doomed = database.write_item(explode, "x")
    results = yield defer.DeferredList(items + [doomed], consumeErrors=True)
    assert calls == [["k0", "k1", "k2"], ["k3", "k4"]] * 2
    assert [value for _, value in results[:5]] == [f"stored k{i}" for i in range(5)]
    assert not results[5][0] and results[5][1].check(RuntimeError)
    assert count(database, "diaobject") == 5


@pytest_twisted.inlineCallbacks
def test_writes_after_stop_fail_clearly(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'alerts.db'}", reactor)
    yield db.write(lambda conn: None)
    db.stop()
    for d in (db.write(lambda conn: None), db.write_item(lambda conn, items: items, 1)):
        with pytest.raises(DatabaseClosed, match="closed"):
            yield d


@pytest_twisted.inlineCallbacks
def test_a_failing_neighbour_write_loses_no_detection(database, tmp_path):
    """The store's batch shares a transaction with a write that fails: everything is rolled back, the store's
    memory of stored detections forgets that batch, and the batch is written again, complete."""
    store = Store(database)

    def fail(conn):
        raise RuntimeError("disk full")

    stored = defer.gatherResults([store.accept(event) for event in EVENTS])
    neighbour = database.write(fail)  # after the store's batch in the same transaction
    yield stored
    with pytest.raises(RuntimeError):
        yield neighbour
    reference = Database(f"sqlite:///{tmp_path / 'reference.db'}", reactor)
    try:
        yield defer.gatherResults([Store(reference).accept(event) for event in EVENTS])
        for table in ("alert", "diasource", "diaobject", "voevent"):
            assert count(database, table) == count(reference, table), table
        cutouts = lambda db: count(db, "cutout") + count(db, "cutout_pack")  # noqa: E731  (in the DB or in packs)
        assert cutouts(database) == cutouts(reference) > 0
    finally:
        reference.stop()


def test_an_alert_db_made_with_the_rtree_loses_it_and_keeps_its_rows(tmp_path):
    """DBs of earlier versions kept an R*Tree ``diasource_sky`` by triggers; opening one drops it (its upkeep was
    half of each write) and the zone index answers cones over the old rows and the new alike."""
    import sqlite3

    path = tmp_path / "old.db"
    Database(f"sqlite:///{path}", reactor).stop()
    old = sqlite3.connect(path)  # as earlier versions left it: an R*Tree kept by a trigger, no zone index
    old.execute("DROP INDEX diasource_zones")
    old.execute("CREATE VIRTUAL TABLE diasource_sky USING rtree(id, ra_min, ra_max, dec_min, dec_max)")
    old.execute("CREATE TRIGGER diasource_sky_insert AFTER INSERT ON diasource BEGIN "
                "INSERT INTO diasource_sky VALUES (new.rowid, new.ra, new.ra, new.dec, new.dec); END")
    old.execute("INSERT INTO diasource (diasourceid, objectid, survey, ra, dec) VALUES (1, 'a', 'rubin', 10.0, -20.0)")
    old.commit()
    old.close()

    database = Database(f"sqlite:///{path}", reactor)
    try:
        database.run_write(lambda conn: conn.execute(
            "INSERT INTO diasource (diasourceid, objectid, survey, ra, dec) VALUES (2, 'b', 'rubin', 10.001, -20.0)"))
        condition, params = database.backend.cone(DIASOURCE, 10.0, -20.0, 0.01)
        found = query(database, f"SELECT diasourceid FROM gateway.diasource WHERE {condition} ORDER BY 1", params)
        assert [r[0] for r in found] == [1, 2]
        names = {n for (n,) in query(database, "SELECT name FROM gateway.sqlite_master", ())}
        assert "diasource_sky" not in names and "diasource_sky_insert" not in names and "diasource_zones" in names
    finally:
        database.stop()


def test_every_mjd_column_is_tai_whatever_the_survey():
    """ZTF publishes UTC, Rubin TAI: the rows hold TAI for both (ZTF + 37 s since 2017, Rubin as shipped)."""
    from gateway.store.rows import alert_rows
    from gateway.times import utc_to_tai

    by_survey = {}
    for event in EVENTS:
        by_survey.setdefault(event.alert.survey, event)
    assert set(by_survey) == {"rubin", "ztf"}
    for survey, event in by_survey.items():
        det = fields.detection(event.alert)
        rows = alert_rows(event)
        expected = utc_to_tai(det.mjd) if survey == "ztf" else det.mjd
        if survey == "ztf":
            assert det.time_scale == "utc" and expected - det.mjd == pytest.approx(37 / 86400, abs=1e-9)
        else:
            assert det.time_scale == "tai"
        assert rows.alert[0][8] == pytest.approx(expected, abs=1e-9)
        assert rows.diasource[0][7] == pytest.approx(expected, abs=1e-9)
        first, last = rows.diaobject[0][4], rows.diaobject[0][5]
        assert first <= expected <= last


def test_event_time_is_the_packets_isotime_for_every_survey():
    """``voevent.event_time`` is what the packet's WhereWhen says: for ZTF alerts the middle of the exposure the
    builder writes, not the start the alert's jd gives."""
    import re

    from gateway.store.rows import rows_for

    by_survey = {}
    for event in EVENTS:
        by_survey.setdefault(event.view.survey, event)
    assert set(by_survey) == {"rubin", "ztf"}
    for survey, event in by_survey.items():
        iso = re.search(rb"<ISOTime>([^<]+)</ISOTime>", event.xml).group(1).decode()
        stored = rows_for(event).voevent[0][3]
        assert stored.replace(" ", "T").rstrip("Z")[:23] == iso.rstrip("Z")[:23], (survey, stored, iso)
    assert by_survey["ztf"].view.iso_utc[:19] != re.search(rb"<ISOTime>([^<]+)</ISOTime>",
                                                            by_survey["ztf"].xml).group(1).decode()[:19]
