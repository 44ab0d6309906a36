"""Helpers of the TAP tests (tests/tap): an alert DB with known rows on each backend, and the TAP server over it
in a subprocess.

A subprocess (``python -m gateway.tap.server``: the Site of ``vogateway serve``, :func:`gateway.web.http_site`)
keeps the blocking clients (pyvo, stilts, requests) and the server's reactor apart, and is what a deployment runs.
Positions are deterministic, so tests compute the expected answers from the same rows.
"""

import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from contextlib import contextmanager

import requests
from postgres import fresh_database
from support import free_port, stop_process, wait_for

from gateway.store.db import Database

N_OBJECTS = 300
PER_OBJECT = 4
SYNC_TIMEOUT = 3.0  # seconds; the long-query test relies on it
MAXREC_DEFAULT, MAXREC_HARD = 2000, 3000
MAX_JOBS = 60


def object_position(i: int) -> tuple[float, float]:
    if i == 0:
        return 359.9995, 10.0  # these two straddle RA 0, for the wrap-around cone
    if i == 1:
        return 0.0004, 10.0
    if i == 2:
        return 45.0, 89.99  # near the pole
    rng = random.Random(i)
    return rng.uniform(0, 360), rng.uniform(-80, 80)


def rows():
    """(diaobject, diasource, alert) rows: N_OBJECTS objects with PER_OBJECT detections ~0.05" apart each."""
    objects, sources, alerts = [], [], []
    sid = 1000
    for i in range(N_OBJECTS):
        ra, dec = object_position(i)
        oid = f"diaObject:{i}"
        objects.append((oid, "rubin", ra, dec, PER_OBJECT, 60000.0 + i, 60000.0 + i + PER_OBJECT, sid + PER_OBJECT,
                        f"ivo://test/rubin#{sid + PER_OBJECT}", None, "2026-11-30T00:00:00"))
        for k in range(PER_OBJECT):
            sid += 1
            sources.append((sid, oid, "rubin", (ra + (k - 1.5) * 1e-5) % 360, dec + (k - 1.5) * 1e-5, 1e-5, 1e-5,
                            60000.0 + i + k / 10, "gri"[k % 3], 1000.0 + k, 10.0, 23.9 - k * 0.1, 0.01, 50.0, 0.9,
                            0, 0, None, sid))
            alerts.append((sid, f"ivo://test/rubin#{sid}", "rubin", "7.4", oid, sid, ra, dec, 60000.0 + i + k / 10,
                           "2026-11-30T00:00:00.000", "test", 1))
    return objects, sources, alerts


def fill(url: str) -> None:
    database = Database(url)
    objects, sources, alerts = rows()

    def write(conn):
        for table, batch in (("diaobject", objects), ("diasource", sources), ("alert", alerts)):
            marks = ", ".join([database.placeholder] * len(batch[0]))
            conn.cursor().executemany(f"INSERT INTO {database.table(table)} VALUES ({marks})", batch)
    try:
        database.run_write(write)
    finally:
        database.stop()


class TapServer:
    def __init__(self, backend: str, db_url: str, url: str, process, log_path):
        self.backend, self.db_url, self.url, self.process = backend, db_url, url, process
        self.log_path = log_path  # the server's stdout and stderr

    def get(self, path: str, **kw):
        return requests.get(self.url + path, timeout=60, **kw)

    def post(self, path: str, **kw):
        return requests.post(self.url + path, timeout=60, allow_redirects=False, **kw)

    def sync(self, query: str, **params):
        return self.post("/sync", data={"LANG": "ADQL", "QUERY": query, **params})

    def alive(self) -> bool:
        assert self.process.poll() is None, "the TAP server process died"
        r = self.get("/availability")
        return r.status_code == 200 and b"<vosi:available>true" in r.content

    def count(self, table: str) -> int:
        """Rows of ``table`` read directly from the DB (not through TAP)."""
        database = Database(self.db_url)
        try:
            return database.run_write(lambda conn: conn.execute(f"SELECT COUNT(*) FROM {database.table(table)}")
                                      .fetchone()[0])
        finally:
            database.stop()


@contextmanager
def serve(backend: str, db_url: str, tmp_path, *extra):
    port = free_port()
    log_path = tmp_path / f"tap-{backend}-{port}.log"
    log = open(log_path, "wb")
    public_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.tap.server", "--db", db_url, "--listen", f"tcp:{port}:interface=127.0.0.1",
         "--public-url", public_url, "--sync-timeout", str(SYNC_TIMEOUT), "--maxrec", str(MAXREC_DEFAULT),
         "--maxrec-hard", str(MAXREC_HARD), "--max-jobs", str(MAX_JOBS), "--max-running", "2", *extra],
        stdout=log, stderr=subprocess.STDOUT)
    server = TapServer(backend, db_url, f"{public_url}/tap", process, log_path)
    try:
        def up():
            assert process.poll() is None, log_path.read_text()
            try:
                return server.get("/availability").status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, timeout=30, what="the TAP server to answer")
        yield server
    finally:
        stop_process(process)
        log.close()


@contextmanager
def database_url(backend: str, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/alerts.db"
    else:
        with fresh_database("gw_tap") as url:
            yield url


def query_status(content: bytes) -> list[tuple[str, str]]:
    root = ET.fromstring(content)
    return [(i.get("value"), (i.text or "")) for i in root.iter("{http://www.ivoa.net/xml/VOTable/v1.3}INFO")
            if i.get("name") == "QUERY_STATUS"]


def assert_error(response, status: int, *words: str) -> str:
    """The response is a VOTable error document with HTTP ``status`` whose message has every one of ``words``."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/x-votable+xml"), response.text[:300]
    statuses = query_status(response.content)
    assert [s for s, _ in statuses] == ["ERROR"], statuses
    message = statuses[0][1]
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def votable(content: bytes):
    """A VOTable result as an astropy Table (names, not IDs)."""
    import io

    from astropy.io.votable import parse_single_table
    return parse_single_table(io.BytesIO(content)).to_table(use_names_over_ids=True)
