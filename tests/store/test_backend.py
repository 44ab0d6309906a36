"""The backend interface on both backends (SQLite always, PostgreSQL where it answers): the same tables from the
one schema, the same cone answered through each backend's sky index, compatible with DBs made by earlier
versions, and internal tables kept out of TAP."""

import math
import random
import sqlite3

from twisted.internet import reactor

from gateway.sky import distance as sky_distance
from gateway.store.db import Database
from gateway.store.schema import ALERT_TABLES, DIASOURCE, OUTBOX_TABLES, PUBLIC_TABLES, TABLES


def columns_of_every_table(database) -> dict[str, list[str]]:
    """{table: column names in order} for every table the DB has in the ``gateway`` schema, as a reader sees it."""
    conn = database.reader()
    try:
        if database.kind == "sqlite":
            names = [n for (n,) in conn.execute("SELECT name FROM gateway.sqlite_master WHERE type = 'table'")]
            # SQLite's AUTOINCREMENT counter is the backend's machinery
            names = [n for n in names if not n.startswith("sqlite_")]
            return {n: [row[1] for row in conn.execute(f"PRAGMA gateway.table_info({n})")] for n in names}
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
                            "'gateway' ORDER BY table_name, ordinal_position").fetchall()
        found: dict[str, list[str]] = {}
        for table, column in rows:
            found.setdefault(table, []).append(column)
        return found
    finally:
        conn.close()


def test_both_backends_create_the_tables_of_the_one_schema(database):
    assert columns_of_every_table(database) == {t.name: [c.name for c in t.columns] for t in ALERT_TABLES}
    database.create(OUTBOX_TABLES)
    database.create(OUTBOX_TABLES)  # idempotent: every start creates what is missing
    assert columns_of_every_table(database) == {t.name: [c.name for c in t.columns] for t in TABLES}


def test_both_backends_answer_the_same_cone_through_the_sky_index(database):
    rng = random.Random(11)
    points = [(rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))) for _ in range(5000)]
    points += [(359.9995, 10.0), (0.0005, 10.0), (45.0, 89.99), (225.0, 89.99)]  # across RA 0, at the pole
    p = database.placeholder
    database.run_write(lambda conn: conn.cursor().executemany(
        f"INSERT INTO {database.table('diasource')} (diasourceid, objectid, ra, dec) VALUES ({p}, {p}, {p}, {p})",
        [(i + 1, "obj", ra, dec) for i, (ra, dec) in enumerate(points)]))
    conn = database.reader()
    try:
        for ra0, dec0, radius in [(0.0, 10.0, 0.01), (200.0, 45.0, 3.0), (90.0, 89.9, 0.2), (10.0, -20.0, 0.0)]:
            condition, params = database.backend.cone(DIASOURCE, ra0, dec0, radius)
            found = [i for (i,) in conn.execute(f"SELECT diasourceid FROM gateway.diasource WHERE {condition} "
                                                "ORDER BY diasourceid", params)]
            expected = [i + 1 for i, (ra, dec) in enumerate(points) if sky_distance(ra, dec, ra0, dec0) <= radius]
            assert found == expected and (found or radius == 0), (ra0, dec0, radius)
    finally:
        conn.close()


def test_a_claim_locks_rows_only_where_several_writers_may_claim(database):
    lock = database.backend.row_lock("o")
    assert lock == ("" if database.kind == "sqlite" else " FOR UPDATE OF o SKIP LOCKED")


def test_internal_tables_are_not_public():
    assert {t.name for t in PUBLIC_TABLES} == {"diaobject", "diasource", "alert", "voevent"}
    assert not any(t.public for t in OUTBOX_TABLES)


# the outbox tables as earlier versions created them by hand: a DB made then keeps working
_EARLIER_SQLITE_OUTBOX = [
    """CREATE TABLE forward_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, route TEXT NOT NULL, kind TEXT NOT NULL,
        ivorn TEXT, objectid TEXT, payload BLOB, meta TEXT, status TEXT NOT NULL, stage TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, lease_until REAL,
        uncertain INTEGER NOT NULL DEFAULT 0, result TEXT, last_error TEXT, created REAL NOT NULL,
        updated REAL NOT NULL)""",
    "CREATE INDEX forward_outbox_due ON forward_outbox (route, status, next_attempt)",
    """CREATE TABLE tns_report (
        objectid TEXT PRIMARY KEY, route TEXT, ivorn TEXT, report_id TEXT, tns_name TEXT, status TEXT NOT NULL,
        created REAL NOT NULL, updated REAL NOT NULL)""",
    "CREATE TABLE forward_payload (ivorn TEXT PRIMARY KEY, xml BLOB NOT NULL, created REAL NOT NULL)",
]


def _table_info(path, table):
    conn = sqlite3.connect(path)
    try:
        return [row[1:] for row in conn.execute(f"PRAGMA table_info({table})")]  # name, type, notnull, default, pk
    finally:
        conn.close()


def test_generated_sqlite_outbox_tables_match_those_of_earlier_versions(tmp_path):
    earlier, generated = tmp_path / "earlier.db", tmp_path / "generated.db"
    conn = sqlite3.connect(earlier)
    for statement in _EARLIER_SQLITE_OUTBOX:
        conn.execute(statement)
    conn.close()
    database = Database(f"sqlite:///{generated}", reactor)
    try:
        database.create(OUTBOX_TABLES)
    finally:
        database.stop()
    for table in OUTBOX_TABLES:
        assert _table_info(generated, table.name) == _table_info(earlier, table.name), table.name
    # and an earlier DB opens, its tables left as they are
    database = Database(f"sqlite:///{earlier}", reactor)
    try:
        database.create(OUTBOX_TABLES)
    finally:
        database.stop()
    assert _table_info(earlier, "forward_outbox") == _table_info(generated, "forward_outbox")
