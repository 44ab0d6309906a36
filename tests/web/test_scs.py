"""/scs, the Simple Cone Search, over real HTTP with the real client (pyvo.dal.SCSService, in a thread while the
reactor serves), on SQLite and PostgreSQL: the objects in the cone and no other (checked by brute force), the
required UCDs, VERB, MAXREC and its overflow, metadata queries, and the SCS error document for bad requests."""

import io

import pytest
import pytest_twisted
import pyvo
import requests
from astropy.io.votable import parse
from twisted.internet import defer, threads
from web.webkit import EVENTS, database, listen, stored

from gateway.sky import distance
from gateway.web.scs import ConeSearch


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


def objects():
    """objectid -> (ra, dec) of the stored objects, as the store's upsert leaves them (the latest alert's)."""
    out = {}
    for event in EVENTS:
        view = event.view
        summary = view.summary or {}
        ra = summary.get("ra") if summary.get("ra") is not None else view.detection.ra
        dec = summary.get("dec") if summary.get("dec") is not None else view.detection.dec
        out[view.object_key] = (ra, dec)
    return out


@pytest_twisted.inlineCallbacks
def test_pyvo_cone_search(backend, tmp_path):
    with database(backend, tmp_path) as db:
        store = yield stored(db)
        port, base = listen(ConeSearch(store, max_records=50, max_radius=30.0))
        try:
            yield threads.deferToThread(_pyvo_checks, f"{base}/scs")
        finally:
            yield port.stopListening()
            yield store.close()


def _pyvo_checks(url):
    service = pyvo.dal.SCSService(url)
    known = objects()
    ra0, dec0 = next(iter(known.values()))
    for radius in (0.001, 1.0, 25.0):
        result = service.search(pos=(ra0, dec0), radius=radius)
        expected = {key for key, (ra, dec) in known.items() if distance(ra, dec, ra0, dec0) <= radius}
        found = {record.id for record in result}
        assert found == expected and expected, radius
        for record in result:  # the position pyvo reads through the required UCDs is the object's
            ra, dec = known[record.id]
            assert record.pos.ra.deg == pytest.approx(ra) and record.pos.dec.deg == pytest.approx(dec)
    # VERB: more columns as it grows; the three required ones always
    names = {verb: set(service.search(pos=(ra0, dec0), radius=1.0, verbosity=verb).fieldnames) for verb in (1, 2, 3)}
    assert names[1] == {"objectid", "ra", "dec"} and names[1] < names[2] < names[3]
    # MAXREC caps the rows and says so (QUERY_STATUS OVERFLOW); never beyond max_records
    capped = service.search(pos=(ra0, dec0), radius=25.0, MAXREC=1)
    assert len(capped) == 1
    raw = requests.get(url, params={"RA": ra0, "DEC": dec0, "SR": 25.0, "MAXREC": 1}, timeout=30)
    table = parse(io.BytesIO(raw.content), verify="exception")
    statuses = [info.value for info in table.resources[0].infos if info.name == "QUERY_STATUS"]
    assert statuses == ["OVERFLOW"]
    everything = requests.get(url, params={"RA": 0, "DEC": 0, "SR": 30.0, "MAXREC": 10 ** 6}, timeout=30)
    assert everything.content.count(b"<TR>") <= 50
    # metadata queries: fields, no rows
    for params in ({"SR": 0}, {"SR": 1, "MAXREC": 0}):
        meta = service.search(pos=(ra0, dec0), radius=params.pop("SR"), **params)
        assert len(meta) == 0 and "objectid" in meta.fieldnames


def test_required_fields_and_strict_votable():
    """The document parses under astropy's strict checks (verify='exception'); one FIELD per required UCD."""
    from gateway.web.scs import result_document, VERB_COLUMNS

    row = ("ZTF18aaaaaaa", "ztf", 10.5, -3.25, 3, 59000.0, 59001.0, "ivo://a/b#1", None)
    table = parse(io.BytesIO(result_document(VERB_COLUMNS[3], [row], False, 10.0, -3.0, 1.0)), verify="exception")
    fields = table.get_first_table().fields
    for ucd, datatypes in (("ID_MAIN", {"char"}), ("POS_EQ_RA_MAIN", {"double", "float"}),
                           ("POS_EQ_DEC_MAIN", {"double", "float"})):
        matching = [f for f in fields if f.ucd == ucd]
        assert len(matching) == 1 and matching[0].datatype in datatypes, ucd
    assert table.resources[0].type == "results"
    assert table.get_first_table().array["objectid"][0] == "ZTF18aaaaaaa"


@pytest_twisted.inlineCallbacks
def test_bad_requests_get_the_scs_error_document(tmp_path):
    with database("sqlite", tmp_path) as db:
        store = yield stored(db, EVENTS[:3])
        port, base = listen(ConeSearch(store, max_records=50, max_radius=5.0))
        try:
            yield threads.deferToThread(_error_checks, f"{base}/scs")
        finally:
            yield port.stopListening()
            yield store.close()


def _error_checks(url):
    cases = {
        "RA=10&DEC=5": "parameter SR is missing",
        "RA=abc&DEC=5&SR=1": "parameter RA: 'abc' is not a number",
        "RA=10&DEC=91&SR=1": "parameter DEC: 91 is out of range",
        "RA=10&DEC=5&SR=6": "larger than this service's largest radius, 5 deg",
        "RA=10&DEC=5&SR=1&VERB=7": "parameter VERB: '7' is not 1, 2 or 3",
        "RA=10&DEC=5&SR=1&MAXREC=-3": "parameter MAXREC: '-3' is not a whole number",
        "RA=nan&DEC=5&SR=1": "parameter RA: nan is out of range",
        "ra=10&dec=5&sr=<b>": "parameter SR: '<b>' is not a number",
    }
    for query, sentence in cases.items():
        response = requests.get(f"{url}?{query}", timeout=30)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
        table = parse(io.BytesIO(response.content), verify="exception")
        errors = [info for info in table.infos if info.name == "Error"]
        assert len(errors) == 1 and sentence in errors[0].value, (query, errors and errors[0].value)
        assert "Traceback" not in response.text
    # pyvo turns it into DALQueryError carrying the sentence
    with pytest.raises(pyvo.dal.DALQueryError, match="larger than this service's largest radius"):
        pyvo.dal.SCSService(url).search(pos=(10.0, 5.0), radius=8.0)
    # lower-case names are the same parameters (DALI: names are case-insensitive)
    response = requests.get(f"{url}?ra=10&dec=5&sr=1", timeout=30)
    assert b'name="Error"' not in response.content


@pytest_twisted.inlineCallbacks
def test_query_runs_off_the_reactor(tmp_path):
    """While the reader thread runs the cone query, the reactor answers other requests (the query is held up on
    purpose by a read that blocks until released)."""
    import threading

    release = threading.Event()
    with database("sqlite", tmp_path) as db:
        store = yield stored(db, EVENTS[:3])
        original = store.cone

        def slow_cone(*args):
            return db.read(lambda conn: release.wait(10)).addCallback(lambda _: original(*args))

        store.cone = slow_cone
        port, base = listen(ConeSearch(store))
        try:
            slow = threads.deferToThread(requests.get, f"{base}/?RA=1&DEC=1&SR=1", timeout=30)
            quick = yield threads.deferToThread(requests.get, f"{base}/?RA=1&DEC=1", timeout=30)
            assert b"parameter SR is missing" in quick.content and not slow.called
            release.set()
            response = yield slow
            assert b"<TABLE" in response.content
        finally:
            release.set()
            yield port.stopListening()
            yield store.close()
        yield defer.succeed(None)
