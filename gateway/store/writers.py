"""Writing one batch of rows, per backend, inside the transaction the caller opened (writer thread only).

Rows already stored are skipped (alerts, events, detections and cutouts are immutable once written); the
object row is an upsert that keeps the earliest first_mjd, the latest last_mjd and the IVORN of the latest alert.
PostgreSQL gets COPY into temporary staging tables, then one INSERT ... SELECT ... ON CONFLICT per table.
"""

from __future__ import annotations

from gateway.store.rows import Rows
from gateway.store.schema import ALERT, CUTOUT, DIAOBJECT, DIASOURCE, SCHEMA, VOEVENT

#: diaobject columns given per row; ndetections is counted from diasource and tns_name left alone
_OBJECT_COLUMNS = ("objectid", "survey", "ra", "dec", "first_mjd", "last_mjd", "last_alertid", "last_ivorn",
                   "updated")
_IMMUTABLE = (("alert", ALERT), ("voevent", VOEVENT), ("diasource", DIASOURCE), ("cutout", CUTOUT))


def _object_upsert(table: str, detections: str, p: str, least: str, greatest: str) -> str:
    # strictly newer: a replayed alert (same last_mjd) leaves the row as it is
    newer = f"({table}.last_mjd IS NULL OR excluded.last_mjd > {table}.last_mjd)"
    latest = lambda column: f"CASE WHEN {newer} THEN excluded.{column} ELSE {table}.{column} END"  # noqa: E731
    values = ", ".join([p] * len(_OBJECT_COLUMNS))
    return (
        f"INSERT INTO {table} ({', '.join(_OBJECT_COLUMNS)}, ndetections) "
        f"VALUES ({values}, (SELECT count(*) FROM {detections} WHERE objectid = {p})) "
        f"ON CONFLICT (objectid) DO UPDATE SET "
        f"ra = {latest('ra')}, dec = {latest('dec')}, ndetections = excluded.ndetections, "
        f"first_mjd = {least}(coalesce({table}.first_mjd, excluded.first_mjd), "
        f"coalesce(excluded.first_mjd, {table}.first_mjd)), "
        f"last_mjd = {greatest}(coalesce({table}.last_mjd, excluded.last_mjd), "
        f"coalesce(excluded.last_mjd, {table}.last_mjd)), "
        f"last_alertid = {latest('last_alertid')}, last_ivorn = {latest('last_ivorn')}, "
        f"updated = excluded.updated"
    )


_SQLITE_INSERTS = {name: f"INSERT OR IGNORE INTO {name} VALUES ({', '.join('?' * len(t.columns))})"
                   for name, t in _IMMUTABLE}
_SQLITE_OBJECT = _object_upsert("diaobject", "diasource", "?", "min", "max")
_POSTGRES_OBJECT = _object_upsert(f"{SCHEMA}.diaobject", f"{SCHEMA}.diasource", "%s", "least", "greatest")


def write_rows(database, conn, rows: Rows) -> None:
    if database.backend == "sqlite":
        write_sqlite(conn, rows)
    else:
        write_postgres(conn, rows)


def _object_params(rows: Rows):
    return [(*row, row[0]) for row in rows.diaobject]


def write_sqlite(conn, rows: Rows) -> None:
    for name, _ in _IMMUTABLE:
        batch = getattr(rows, name)
        if batch:
            conn.executemany(_SQLITE_INSERTS[name], batch)
    if rows.diaobject:
        conn.executemany(_SQLITE_OBJECT, _object_params(rows))


_staged: set[int] = set()  # ids of PostgreSQL connections whose staging tables exist


def write_postgres(conn, rows: Rows) -> None:
    if id(conn) not in _staged:
        for name, _ in _IMMUTABLE:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{name} (LIKE {SCHEMA}.{name}) ON COMMIT DELETE ROWS")
        _staged.add(id(conn))
    with conn.cursor() as cursor:
        for name, table in _IMMUTABLE:
            batch = getattr(rows, name)
            if not batch:
                continue
            with cursor.copy(f"COPY stage_{name} FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO {SCHEMA}.{name} SELECT * FROM stage_{name} ON CONFLICT DO NOTHING")
        if rows.diaobject:
            cursor.executemany(_POSTGRES_OBJECT, _object_params(rows))
