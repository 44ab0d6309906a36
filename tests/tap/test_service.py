"""The TAP service over HTTP on both backends: pyvo (sync, async, upload, cone, metadata), UWS, bad input."""

import io
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import pyvo
from astropy.io.votable import parse_single_table
from astropy.table import Table
from tap_helpers import (
    MAX_JOBS,
    MAXREC_DEFAULT,
    MAXREC_HARD,
    N_OBJECTS,
    PER_OBJECT,
    SYNC_TIMEOUT,
    assert_error,
    object_position,
    query_status,
    rows,
)

from gateway.sky import distance as sky_distance
from gateway.store.schema import DIASOURCE, PUBLIC_TABLES
from gateway.tap.vosi import EXAMPLES

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
N_SOURCES = N_OBJECTS * PER_OBJECT


def votable(content: bytes):
    return parse_single_table(io.BytesIO(content)).to_table(use_names_over_ids=True)


def expected_cone(ra, dec, radius):
    _, sources, _ = rows()
    return sorted(s[0] for s in sources if sky_distance(s[3], s[4], ra, dec) <= radius)


# -- pyvo ---------------------------------------------------------------------------------------------------------

def test_pyvo_sync_with_column_metadata(tap):
    service = pyvo.dal.TAPService(tap.url)
    result = service.run_sync("SELECT TOP 5 diasourceid, objectid, ra, dec, mjd, band FROM gateway.diasource "
                              "ORDER BY diasourceid")
    table = result.to_table()
    assert list(table["diasourceid"]) == [1001, 1002, 1003, 1004, 1005]
    _, sources, _ = rows()
    assert list(table["objectid"]) == [s[1] for s in sources[:5]]
    assert np.allclose(table["ra"], [s[3] for s in sources[:5]])
    assert str(table["ra"].unit) == "deg"
    ucds = {f.name: f.ucd for f in result.fielddescs}
    assert ucds["ra"] == "pos.eq.ra;meta.main" and ucds["diasourceid"] == "meta.id;meta.main"
    assert table["mjd"].unit == "d"
    # one time scale for every survey, said in the document: TIMESYS TAI (MJD origin), positions COOSYS ICRS
    resource = result.votable.resources[0]
    fields = {f.name: f for f in resource.tables[0].fields}
    timesys = {t.ID: t for t in resource.time_systems}[fields["mjd"].ref]
    assert (timesys.timescale, timesys.timeorigin) == ("TAI", "MJD-origin")
    assert {c.ID: c for c in resource.coordinate_systems}[fields["ra"].ref].system == "ICRS"


def test_pyvo_async(tap):
    service = pyvo.dal.TAPService(tap.url)
    result = service.run_async("SELECT COUNT(*) AS n, MIN(mjd) AS first_mjd FROM gateway.diasource")
    table = result.to_table()
    assert table["n"][0] == N_SOURCES
    assert table["first_mjd"][0] == pytest.approx(60000.0)


def test_pyvo_async_job_steps(tap):
    service = pyvo.dal.TAPService(tap.url)
    job = service.submit_job("SELECT TOP 3 alertid FROM gateway.alert ORDER BY alertid DESC", maxrec=2)
    assert job.phase == "PENDING"
    job.run()
    job.wait(timeout=30)
    assert job.phase == "COMPLETED"
    table = job.fetch_result().to_table()
    assert list(table["alertid"]) == [1000 + N_SOURCES, 1000 + N_SOURCES - 1]  # MAXREC=2 beats TOP 3
    job.delete()


@pytest.mark.parametrize("ra, dec, radius", [
    (0.0, 10.0, 0.01),  # across RA 0
    (45.0, 89.99, 0.02),  # at the pole
    (*object_position(7), 5 / 3600),
    (*object_position(8), 0.5),
    (123.4, -45.6, 20.0),
])
def test_cone_matches_brute_force(tap, ra, dec, radius):
    service = pyvo.dal.TAPService(tap.url)
    table = service.run_sync(f"SELECT diasourceid FROM gateway.diasource WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                             f"CIRCLE('ICRS', {ra}, {dec}, {radius}))").to_table()
    expected = expected_cone(ra, dec, radius)
    assert expected, "the cone should hold detections"
    assert sorted(table["diasourceid"]) == expected


def test_distance_box_polygon(tap):
    service = pyvo.dal.TAPService(tap.url)
    ra, dec = object_position(9)
    table = service.run_sync(
        f"SELECT TOP 1 objectid, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', {ra + 0.1}, {dec})) AS d "
        f"FROM gateway.diaobject WHERE objectid = 'diaObject:9'").to_table()
    assert table["d"][0] == pytest.approx(sky_distance(ra, dec, ra + 0.1, dec), rel=1e-6)
    box = service.run_sync(f"SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                           f"BOX('ICRS', {ra}, {dec}, 0.2, 0.2))").to_table()
    assert "diaObject:9" in list(box["objectid"])
    polygon = service.run_sync(
        f"SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', "
        f"{ra - 0.1}, {dec - 0.1}, {ra + 0.1}, {dec - 0.1}, {ra}, {dec + 0.1}))").to_table()
    assert list(polygon["objectid"]) == ["diaObject:9"]
    outside = service.run_sync(
        f"SELECT COUNT(*) AS n FROM gateway.diaobject WHERE 0 = CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', "
        f"{ra - 0.1}, {dec - 0.1}, {ra + 0.1}, {dec - 0.1}, {ra}, {dec + 0.1}))").to_table()
    assert outside["n"][0] == N_OBJECTS - 1


def test_upload_crossmatch(tap):
    targets = Table({"name": [f"t{i}" for i in range(10, 20)] + ["nowhere"],
                     "ra": [object_position(i)[0] for i in range(10, 20)] + [1.0],
                     "dec": [object_position(i)[1] for i in range(10, 20)] + [-89.0]})
    service = pyvo.dal.TAPService(tap.url)
    table = service.run_sync(
        "SELECT t.name, d.diasourceid, d.objectid FROM TAP_UPLOAD.targets AS t JOIN gateway.diasource AS d "
        "ON 1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', t.ra, t.dec, 1.0/3600))",
        uploads={"targets": targets}).to_table()
    assert len(table) == 10 * PER_OBJECT
    for name, objectid in zip(table["name"], table["objectid"]):
        assert objectid == f"diaObject:{name[1:]}"
    async_table = service.run_async("SELECT COUNT(*) AS n FROM TAP_UPLOAD.targets", uploads={"targets": targets})
    assert async_table.to_table()["n"][0] == 11


def test_tap_schema(tap):
    service = pyvo.dal.TAPService(tap.url)
    tables = service.run_sync("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
    names = set(tables["table_name"])
    assert {t.qualified for t in PUBLIC_TABLES} | {"tap_schema.columns", "tap_schema.tables"} <= names
    assert "gateway.cutout" not in names  # not public
    columns = service.run_sync("SELECT column_name, unit, ucd, datatype, description FROM TAP_SCHEMA.columns "
                               "WHERE table_name = 'gateway.diasource' ORDER BY column_index").to_table()
    assert list(columns["column_name"]) == [c.name for c in DIASOURCE.columns]
    ra = [row for row in columns if row["column_name"] == "ra"][0]
    assert (ra["unit"], ra["ucd"], ra["datatype"]) == ("deg", "pos.eq.ra;meta.main", "double")
    keys = service.run_sync("SELECT k.from_table, k.target_table, c.from_column FROM TAP_SCHEMA.keys AS k "
                            "JOIN TAP_SCHEMA.key_columns AS c ON k.key_id = c.key_id").to_table()
    assert ("gateway.diasource", "gateway.diaobject", "objectid") in {tuple(r) for r in keys}


def test_tables_metadata(tap):
    service = pyvo.dal.TAPService(tap.url)
    published = {t.name for t in service.tables}
    assert "gateway.diasource" in published and "tap_schema.columns" in published
    columns = {c.name: c for c in service.tables["gateway.diasource"].columns}
    assert set(columns) == {c.name for c in DIASOURCE.columns}
    assert columns["ra"].unit == "deg" and columns["mjd"].ucd == "time.epoch;obs"
    one = tap.get("/tables/gateway.diasource")
    assert one.status_code == 200 and b"<name>psf_flux</name>" in one.content
    assert_error(tap.get("/tables/gateway.nope"), 404, "no table")


@pytest.mark.parametrize("example", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_run(tap, example):
    key, _, _, query = example
    files = {}
    data = {"LANG": "ADQL", "QUERY": query}
    if "TAP_UPLOAD.targets" in query:
        out = io.BytesIO()
        Table({"ra": [object_position(5)[0]], "dec": [object_position(5)[1]]}).write(out, format="votable")
        files = {"targets": ("targets.xml", out.getvalue(), "application/x-votable+xml")}
        data["UPLOAD"] = "targets,param:targets"
    r = tap.post("/sync", data=data, files=files or None)
    assert r.status_code == 200, r.text[:500]
    table = votable(r.content)
    if key in ("latest", "lightcurve", "crossmatch", "bands"):
        assert len(table) > 0


# -- formats and limits -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["votable", "votable/td", "csv", "tsv", "json", "application/x-votable+xml",
                                 "text/csv"])
def test_formats(tap, fmt):
    r = tap.sync("SELECT TOP 4 diasourceid, objectid, ra, trail_length FROM gateway.diasource ORDER BY diasourceid",
                 FORMAT=fmt)
    assert r.status_code == 200, r.text[:300]
    _, sources, _ = rows()
    if "csv" in fmt or fmt == "tsv":
        lines = r.text.strip().splitlines()
        sep = "," if "csv" in fmt else "\t"
        assert lines[0].split(sep) == ["diasourceid", "objectid", "ra", "trail_length"]
        first = lines[1].split(sep)
        assert first[0] == "1001" and first[1] == "diaObject:0" and float(first[2]) == sources[0][3]
        assert first[3] == ""  # NULL
        assert len(lines) == 5
    elif fmt == "json":
        doc = r.json()
        assert [m["name"] for m in doc["metadata"]] == ["diasourceid", "objectid", "ra", "trail_length"]
        assert doc["data"][0] == [1001, "diaObject:0", sources[0][3], None] and len(doc["data"]) == 4
        assert doc["overflow"] is False
    else:
        table = votable(r.content)
        assert list(table["diasourceid"]) == [1001, 1002, 1003, 1004]
        assert table["trail_length"].mask.all()
        assert query_status(r.content) == [("OK", "")]
        assert (b"<TABLEDATA>" in r.content) == (fmt == "votable/td")


@pytest.mark.parametrize("fmt", ["votable", "votable/td"])
def test_non_ascii_text_arrives_exactly(tap, fmt):
    r = tap.sync("SELECT TOP 2 'Ångström–' || objectid AS s FROM gateway.diaobject ORDER BY objectid", FORMAT=fmt)
    assert r.status_code == 200, r.text[:300]
    assert b'datatype="unicodeChar"' in r.content
    assert list(votable(r.content)["s"]) == ["Ångström–diaObject:0", "Ångström–diaObject:1"]
    declared = tap.sync("SELECT datatype FROM TAP_SCHEMA.columns WHERE table_name = 'gateway.voevent' AND "
                        "column_name = 'xml'", FORMAT="csv")
    assert declared.text.splitlines()[1] == "unicodeChar"


def test_maxrec_overflow_and_metadata_only(tap):
    r = tap.sync("SELECT diasourceid, ra FROM gateway.diasource", MAXREC="10")
    assert len(votable(r.content)) == 10
    assert [s for s, _ in query_status(r.content)] == ["OK", "OVERFLOW"]
    r = tap.sync("SELECT diasourceid, ra FROM gateway.diasource", MAXREC="0")
    assert r.status_code == 200
    table = votable(r.content)
    assert len(table) == 0 and table.colnames == ["diasourceid", "ra"] and str(table["ra"].unit) == "deg"
    r = tap.sync("SELECT diasourceid FROM gateway.diasource")  # fewer rows than the default MAXREC: no overflow
    assert len(votable(r.content)) == N_SOURCES and [s for s, _ in query_status(r.content)] == ["OK"]
    r = tap.sync("SELECT a.alertid, b.objectid FROM gateway.alert AS a, gateway.diaobject AS b")
    assert len(votable(r.content)) == MAXREC_DEFAULT and query_status(r.content)[-1][0] == "OVERFLOW"


def test_huge_maxrec_is_capped(tap):
    r = tap.sync("SELECT a.alertid, b.objectid FROM gateway.alert AS a, gateway.diaobject AS b",
                 MAXREC=str(10 ** 15), FORMAT="csv")
    assert r.status_code == 200
    assert len(r.text.strip().splitlines()) == MAXREC_HARD + 1  # header + the hard limit


# -- bad input ----------------------------------------------------------------------------------------------------------

WRITES = [
    "SELECT * FROM gateway.alert; DROP TABLE gateway.alert",
    "DROP TABLE gateway.diasource",
    "DELETE FROM gateway.alert",
    "INSERT INTO gateway.alert (alertid) VALUES (1)",
    "UPDATE gateway.diaobject SET ra = 0",
    "CREATE TABLE gateway.x (a INTEGER)",
    "PRAGMA query_only = 0",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "SELECT 1 FROM gateway.alert; UPDATE gateway.alert SET ivorn = NULL",
]


@pytest.mark.parametrize("query", WRITES)
def test_writes_are_refused(tap, query):
    before = {t: tap.count(t) for t in ("alert", "diasource", "diaobject")}
    message = assert_error(tap.sync(query), 400)
    assert "select" in message.lower() or "nothing" in message.lower(), message
    assert {t: tap.count(t) for t in before} == before
    assert tap.alive()


@pytest.mark.parametrize("query, words", [
    ("SELECT ra FROM gateway.diasource WHERE", ["syntax error", "line 1"]),
    ("SELEC ra FROM gateway.diasource", ["only SELECT", "SELEC"]),
    ("+ra FROM gateway.diasource", ["syntax error", "starts with SELECT"]),
    ("SELECT ra FROM gateway.nothere", ["unknown table", "gateway.nothere"]),
    ("SELECT nothere FROM gateway.diasource", ["nothere", "could not be resolved"]),
    ("SELECT ra FROM gateway.diasource AS a, gateway.alert AS b", ["'ra'", "qualify"]),
    ("SELECT load_extension('/tmp/evil') FROM gateway.alert", ["unknown function", "LOAD_EXTENSION"]),
    ("SELECT ra FROM gateway.diasource WHERE 1 = CONTAINS(POINT('GALACTIC', ra, dec), CIRCLE('ICRS', 1, 2, 3))",
     ["coordinate system", "GALACTIC"]),
    ("SELECT ra FROM gateway.diasource WHERE POINT('ICRS', ra, dec) = 1", ["POINT", "outer select list"]),
    ("", ["QUERY is missing"]),
    ("   ", ["QUERY is missing"]),
])
def test_bad_queries(tap, query, words):
    assert_error(tap.sync(query), 400, *words)


@pytest.mark.parametrize("params, words", [
    ({"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM gateway.alert", "FORMAT": "fits"}, ["unknown format", "csv"]),
    ({"LANG": "SQL", "QUERY": "SELECT 1"}, ["LANG"]),
    ({"QUERY": "SELECT TOP 1 ra FROM gateway.alert"}, ["LANG is missing"]),
    ({"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM gateway.alert", "MAXREC": "lots"}, ["MAXREC"]),
    ({"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM gateway.alert", "MAXREC": "-3"}, ["MAXREC"]),
    ({"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM gateway.alert", "REQUEST": "getCapabilities"}, ["REQUEST"]),
    ({"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:missing"}, ["no multipart part"]),
    ({"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,file:///etc/passwd"}, ["http"]),
])
def test_bad_parameters(tap, params, words):
    assert_error(tap.post("/sync", data=params), 400, *words)
    assert_error(tap.get("/sync", params=params), 400, *words)


def test_bad_upload(tap):
    r = tap.post("/sync", data={"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:t"},
                 files={"t": ("t.xml", b"this is not a VOTable", "application/x-votable+xml")})
    assert_error(r, 400, "not a readable VOTable")


def test_stilts_style_chunked_multipart_upload(tap):
    """STILTS sends uploads chunked with a boundary like <<<---...--->>> that Twisted's own parser rejects."""
    out = io.BytesIO()
    Table({"ra": [object_position(3)[0]], "dec": [object_position(3)[1]]}).write(out, format="votable")
    boundary = "<<<---gateway-test-boundary--->>>"
    parts = []
    for name, value in (("LANG", b"ADQL"), ("UPLOAD", b"t,param:t"),
                        ("QUERY", b"SELECT d.objectid FROM TAP_UPLOAD.t AS t JOIN gateway.diasource AS d ON "
                                  b"1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', t.ra, t.dec, 0.001))")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="t"; filename="t.vot"\r\n'
                 "Content-Type: application/x-votable+xml\r\n\r\n".encode() + out.getvalue() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    r = tap.post("/sync", data=iter(parts),  # a generator body: requests sends it chunked
                 headers={"Content-Type": f'multipart/form-data; boundary="{boundary}"'})
    assert r.status_code == 200, r.text[:500]
    assert list(votable(r.content)["objectid"]) == ["diaObject:3"] * PER_OBJECT


def test_long_query_times_out_and_service_stays(tap):
    started = time.monotonic()
    r = tap.sync("SELECT COUNT(*) AS n FROM gateway.diasource AS a, gateway.diasource AS b, gateway.diasource AS c "
                 "WHERE a.mag + b.mag > c.mag")
    elapsed = time.monotonic() - started
    assert_error(r, 400, "time limit", f"{SYNC_TIMEOUT:g} s")
    assert elapsed < SYNC_TIMEOUT + 10
    assert tap.alive()
    assert len(votable(tap.sync("SELECT TOP 2 ra FROM gateway.alert").content)) == 2


# -- UWS -----------------------------------------------------------------------------------------------------------

def job_xml(tap, job_url, **params):
    r = tap.get(job_url[len(tap.url):], params=params)
    assert r.status_code == 200, r.text[:300]
    return ET.fromstring(r.content)


def create_job(tap, query, **params):
    r = tap.post("/async", data={"LANG": "ADQL", "QUERY": query, **params})
    assert r.status_code == 303, r.text[:300]
    return r.headers["location"]


def phase_of(tap, job_url, wait=None):
    params = {"WAIT": str(wait)} if wait is not None else {}
    return job_xml(tap, job_url, **params).find(f"{UWS}phase").text


def final_phase(tap, job_url, timeout=60.0) -> str:
    """The job's phase once it has left PENDING, QUEUED and EXECUTING, waiting with UWS's blocking WAIT."""
    deadline = time.monotonic() + timeout
    phase = phase_of(tap, job_url)
    while phase in ("PENDING", "QUEUED", "EXECUTING"):
        assert time.monotonic() < deadline, f"{job_url} still {phase} after {timeout} s"
        phase = phase_of(tap, job_url, wait=5)
    return phase


def test_uws_lifecycle(tap):
    job = create_job(tap, "SELECT TOP 7 diasourceid FROM gateway.diasource ORDER BY diasourceid", RUNID="mine")
    path = job[len(tap.url):]
    doc = job_xml(tap, job)
    assert doc.find(f"{UWS}phase").text == "PENDING" and doc.find(f"{UWS}runId").text == "mine"
    assert doc.find(f"{UWS}creationTime").text.endswith("Z") and doc.find(f"{UWS}destruction").text.endswith("Z")
    assert tap.get(path + "/phase").text == "PENDING"
    assert tap.get(path + "/quote").status_code == 200
    assert tap.get(path + "/owner").status_code == 200
    # parameters can change while PENDING
    r = tap.post(path + "/parameters", data={"MAXREC": "5"})
    assert r.status_code == 303
    params = {p.get("id"): p.text for p in ET.fromstring(tap.get(path + "/parameters").content)}
    assert params["maxrec"] == "5" and params["lang"] == "ADQL"
    assert tap.post(path + "/executionduration", data={"EXECUTIONDURATION": "30"}).status_code == 303
    assert tap.get(path + "/executionduration").text == "30"
    assert_error(tap.get(path + "/results/result"), 404, "PENDING")
    assert tap.post(path + "/phase", data={"PHASE": "RUN"}).status_code == 303
    assert phase_of(tap, job, wait=20) in ("QUEUED", "EXECUTING", "COMPLETED")
    assert final_phase(tap, job) == "COMPLETED"
    doc = job_xml(tap, job)
    assert doc.find(f"{UWS}startTime").text.endswith("Z") and doc.find(f"{UWS}endTime").text.endswith("Z")
    result = doc.find(f"{UWS}results/{UWS}result")
    href = result.get("{http://www.w3.org/1999/xlink}href")
    table = votable(tap.get(href[len(tap.url):]).content)
    assert list(table["diasourceid"]) == [1001, 1002, 1003, 1004, 1005]
    assert_error(tap.get(path + "/error"), 404, "no error")
    assert_error(tap.post(path + "/parameters", data={"MAXREC": "9"}), 400, "PENDING")
    # the job list and its filters
    listing = ET.fromstring(tap.get("/async").content)
    ids = [j.get("id") for j in listing.findall(f"{UWS}jobref")]
    job_id = path.rsplit("/", 1)[1]
    assert job_id in ids
    completed = ET.fromstring(tap.get("/async", params={"PHASE": "COMPLETED"}).content).findall(f"{UWS}jobref")
    assert job_id in [j.get("id") for j in completed]
    assert {j.find(f"{UWS}phase").text for j in completed} == {"COMPLETED"}
    assert len(ET.fromstring(tap.get("/async", params={"LAST": "1"}).content).findall(f"{UWS}jobref")) == 1
    assert ET.fromstring(tap.get("/async", params={"AFTER": "2999-01-01T00:00:00Z"}).content).find(
        f"{UWS}jobref") is None
    assert_error(tap.get("/async", params={"PHASE": "SLEEPING"}), 400, "PHASE")
    assert_error(tap.get("/async", params={"LAST": "-1"}), 400, "LAST")
    assert_error(tap.get("/async", params={"AFTER": "yesterday"}), 400, "AFTER")
    # delete with HTTP DELETE
    r = __import__("requests").delete(job, allow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert_error(tap.get(path), 404, job_id)


def test_uws_error_abort_delete_and_destruction(tap):
    bad = create_job(tap, "SELECT nothere FROM gateway.alert", PHASE="RUN")
    assert final_phase(tap, bad) == "ERROR"
    bad_path = bad[len(tap.url):]
    assert_error(tap.get(bad_path + "/error"), 200, "nothere")
    assert "nothere" in job_xml(tap, bad).find(f"{UWS}errorSummary/{UWS}message").text
    assert tap.post(bad_path, data={"ACTION": "DELETE"}).status_code == 303
    assert_error(tap.get(bad_path), 404, "no async job")

    slow = create_job(tap, "SELECT COUNT(*) FROM gateway.diasource AS a, gateway.diasource AS b, "
                           "gateway.diasource AS c WHERE a.mag + b.mag > c.mag", PHASE="RUN", EXECUTIONDURATION="120")
    slow_path = slow[len(tap.url):]
    wait_phase = time.monotonic() + 20
    while phase_of(tap, slow, wait=2) == "QUEUED" and time.monotonic() < wait_phase:
        pass
    assert tap.post(slow_path + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    deadline = time.monotonic() + 20
    while phase_of(tap, slow, wait=2) != "ABORTED":
        assert time.monotonic() < deadline, "the aborted job did not stop"
    assert_error(tap.post(slow_path + "/phase", data={"PHASE": "PAUSE"}), 400, "RUN or ABORT")
    assert_error(tap.post(slow_path, data={"ACTION": "EXPLODE"}), 400, "ACTION")

    doomed = create_job(tap, "SELECT TOP 1 ra FROM gateway.alert")
    doomed_path = doomed[len(tap.url):]
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))  # 2 to 3 s from now
    assert tap.post(doomed_path + "/destruction", data={"DESTRUCTION": soon}).status_code == 303
    assert job_xml(tap, doomed).find(f"{UWS}destruction").text == soon.replace("Z", ".000Z")
    assert_error(tap.post(doomed_path + "/destruction", data={"DESTRUCTION": "soon"}), 400, "ISO-8601")
    # deleting the job at its destruction time ends its PENDING phase, which answers a blocking WAIT
    assert phase_of(tap, doomed, wait=30) == "ABORTED"
    assert_error(tap.get(doomed_path), 404, "no async job")
    assert tap.alive()


@pytest.mark.parametrize("path, method", [
    ("/async/doesnotexist", "get"), ("/async/doesnotexist/phase", "get"), ("/async/doesnotexist/results/result",
                                                                          "get"),
    ("/async/doesnotexist", "post"), ("/async/doesnotexist/phase", "post"), ("/nothing", "get"),
])
def test_unknown_jobs_and_paths(tap, path, method):
    r = getattr(tap, method)(path, **({"data": {"PHASE": "RUN"}} if method == "post" else {}))
    assert_error(r, 404, "doesnotexist" if "doesnotexist" in path else "no such resource")
    r = __import__("requests").delete(tap.url + "/async/doesnotexist", timeout=30)
    assert_error(r, 404, "doesnotexist")


def test_many_concurrent_async_jobs(tap):
    n = 30
    queries = [f"SELECT COUNT(*) AS n FROM gateway.diasource WHERE diasourceid > {1000 + i * 10}" for i in range(n)]
    jobs, errors = [None] * n, []

    def submit(i):
        try:
            jobs[i] = create_job(tap, queries[i], PHASE="RUN")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, job in enumerate(jobs):
        assert final_phase(tap, job) == "COMPLETED", f"job {i}"
        href = job_xml(tap, job).find(f"{UWS}results/{UWS}result").get("{http://www.w3.org/1999/xlink}href")
        assert votable(tap.get(href[len(tap.url):]).content)["n"][0] == N_SOURCES - i * 10
    # the job limit: creating past it is refused with a message, and deleting makes room again
    extra = []
    while True:
        r = tap.post("/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM gateway.alert"})
        if r.status_code != 303:
            assert_error(r, 503, "at most", str(MAX_JOBS))
            break
        extra.append(r.headers["location"])
        assert len(extra) <= MAX_JOBS
    for job in jobs + extra:
        assert tap.post(job[len(tap.url):], data={"ACTION": "DELETE"}).status_code == 303
    assert create_job(tap, "SELECT TOP 1 ra FROM gateway.alert")
    assert tap.alive()


def test_vosi_documents(tap):
    caps = tap.get("/capabilities")
    assert caps.status_code == 200 and b"ivo://ivoa.net/std/TAP" in caps.content
    assert f"<hard unit=\"row\">{MAXREC_HARD}</hard>".encode() in caps.content
    ET.fromstring(caps.content)
    ET.fromstring(tap.get("/tables").content)
    ET.fromstring(tap.get("/examples").content)
    assert tap.get("").status_code == 200
    assert_error(__import__("requests").put(tap.url + "/sync", timeout=30), 405, "PUT")
