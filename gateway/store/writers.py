"""Writing batches of rows, per backend, inside the transaction the caller opened (writer thread only).

Rows already stored are skipped (alerts, events, detections and cutouts are immutable once written); the
object row is an upsert that keeps the earliest first_mjd, the latest last_mjd and the IVORN of the latest alert.

What makes it fast: every Rubin alert repeats up to a year of earlier detections, almost all stored already, so
the writer remembers the ids it stored recently and sends only the new ones; object rows are merged per batch in
Python, so each object is upserted once per transaction; PostgreSQL gets COPY into temporary staging tables and
one set-based INSERT ... SELECT ... ON CONFLICT per table.
"""

from __future__ import annotations

from collections import Counter

from gateway.store.rows import Rows
from gateway.store.schema import ALERT, CUTOUT, DIASOURCE, SCHEMA, VOEVENT

#: diaobject columns given per row; ndetections is counted from diasource and tns_name left alone
_OBJECT_COLUMNS = ("objectid", "survey", "ra", "dec", "first_mjd", "last_mjd", "last_alertid", "last_ivorn",
                   "updated")
_IMMUTABLE = (("alert", ALERT), ("voevent", VOEVENT), ("diasource", DIASOURCE), ("cutout", CUTOUT))


def _object_upsert(table: str, source: str, least: str, greatest: str, ndetections: str) -> str:
    """INSERT ... ON CONFLICT for diaobject from ``source`` (a VALUES list or a SELECT); ``ndetections`` is the
    new count on conflict."""
    # strictly newer: a replayed alert (same last_mjd) leaves the row as it is
    newer = f"({table}.last_mjd IS NULL OR excluded.last_mjd > {table}.last_mjd)"
    latest = lambda column: f"CASE WHEN {newer} THEN excluded.{column} ELSE {table}.{column} END"  # noqa: E731
    return (
        f"INSERT INTO {table} ({', '.join(_OBJECT_COLUMNS)}, ndetections) {source} "
        f"ON CONFLICT (objectid) DO UPDATE SET "
        f"ra = {latest('ra')}, dec = {latest('dec')}, ndetections = {ndetections}, "
        f"first_mjd = {least}(coalesce({table}.first_mjd, excluded.first_mjd), "
        f"coalesce(excluded.first_mjd, {table}.first_mjd)), "
        f"last_mjd = {greatest}(coalesce({table}.last_mjd, excluded.last_mjd), "
        f"coalesce(excluded.last_mjd, {table}.last_mjd)), "
        f"last_alertid = {latest('last_alertid')}, last_ivorn = {latest('last_ivorn')}, "
        f"updated = excluded.updated"
    )


_SQLITE_INSERTS = {name: f"INSERT OR IGNORE INTO {name} VALUES ({', '.join('?' * len(t.columns))})"
                   for name, t in _IMMUTABLE}
# "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join in the SELECT
_SQLITE_OBJECT = _object_upsert(
    "diaobject",
    f"SELECT {', '.join('?' * len(_OBJECT_COLUMNS))}, (SELECT count(*) FROM diasource WHERE objectid = ?) WHERE true",
    "min", "max", "excluded.ndetections")
# PostgreSQL counts what its INSERT ... RETURNING says was new, instead of recounting each object's detections
_POSTGRES_OBJECT = _object_upsert(
    f"{SCHEMA}.diaobject", "SELECT * FROM stage_diaobject", "least", "greatest",
    f"{SCHEMA}.diaobject.ndetections + excluded.ndetections")


def merge_objects(rows: list[tuple]) -> list[tuple]:
    """One row per object: earliest first_mjd, latest last_mjd, and the position/alert/IVORN of the latest alert
    (the first of equals, as the upsert does)."""
    merged: dict[str, tuple] = {}
    for row in rows:
        key = row[0]
        old = merged.get(key)
        if old is None:
            merged[key] = row
            continue
        firsts = [m for m in (old[4], row[4]) if m is not None]
        newer = row if (old[5] is None or (row[5] is not None and row[5] > old[5])) else old
        merged[key] = (key, newer[1], newer[2], newer[3], min(firsts) if firsts else None,
                       newer[5], newer[6], newer[7], row[8])
    return list(merged.values())


class RecentIds:
    """A bounded memory of recently stored ids: two generations, the older dropped when the newer fills."""

    def __init__(self, capacity: int = 2_000_000):
        self.half = max(1, capacity // 2)
        self.current: set = set()
        self.previous: set = set()

    def __contains__(self, key) -> bool:
        return key in self.current or key in self.previous

    def add_all(self, keys) -> None:
        self.current.update(keys)
        if len(self.current) >= self.half:
            self.previous, self.current = self.current, set()

    def clear(self) -> None:
        self.current, self.previous = set(), set()


class Writer:
    """Writes :class:`Rows` on the writer connection of one backend; keeps its memory of stored detections.

    ``write`` runs inside the caller's transaction. If that transaction is rolled back, :meth:`forget` must be
    called (the Store registers it with ``Database.on_rollback``): the ids it remembered were not committed.
    """

    def __init__(self, backend: str, recent: int = 2_000_000):
        self.backend = backend
        self.recent = RecentIds(recent)
        self._staged: set[int] = set()  # PostgreSQL connections whose staging tables exist

    def forget(self) -> None:
        self.recent.clear()
        self._staged.clear()  # temporary tables created in a rolled-back transaction are gone too

    def write(self, conn, rows: Rows) -> None:
        new_detections, seen = [], set()
        for row in rows.diasource:
            source_id = row[0]
            if source_id not in seen and source_id not in self.recent:
                seen.add(source_id)
                new_detections.append(row)
        objects = merge_objects(rows.diaobject)
        tables = {"alert": rows.alert, "voevent": rows.voevent, "diasource": new_detections, "cutout": rows.cutout}
        if self.backend == "sqlite":
            self._write_sqlite(conn, tables, objects)
        else:
            self._write_postgres(conn, tables, objects)
        self.recent.add_all(seen)

    @staticmethod
    def _write_sqlite(conn, tables: dict, objects: list[tuple]) -> None:
        for name, batch in tables.items():
            if batch:
                conn.executemany(_SQLITE_INSERTS[name], batch)
        if objects:
            conn.executemany(_SQLITE_OBJECT, [(*row, row[0]) for row in objects])

    def _write_postgres(self, conn, tables: dict, objects: list[tuple]) -> None:
        if id(conn) not in self._staged:
            # staging copies of 6 kB VOEvents compressed with the default pglz cost more than all the rest
            conn.execute("SET default_toast_compression = 'lz4'")
            for name in tables:
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{name} (LIKE {SCHEMA}.{name}) "
                             "ON COMMIT DELETE ROWS")
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_diaobject ON COMMIT DELETE ROWS AS "
                         f"SELECT {', '.join(_OBJECT_COLUMNS)}, ndetections FROM {SCHEMA}.diaobject WITH NO DATA")
            self._staged.add(id(conn))
        with conn.cursor() as cursor:
            new_per_object: Counter = Counter()
            for name, batch in tables.items():
                if not batch:
                    continue
                with cursor.copy(f"COPY stage_{name} FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                insert = f"INSERT INTO {SCHEMA}.{name} SELECT * FROM stage_{name} ON CONFLICT DO NOTHING"
                if name == "diasource":
                    cursor.execute(insert + " RETURNING objectid")
                    new_per_object.update(objectid for (objectid,) in cursor.fetchall())
                else:
                    cursor.execute(insert)
                # emptied now, not at commit: other writes may share this transaction (group commit)
                cursor.execute(f"TRUNCATE stage_{name}")
            if objects:
                with cursor.copy("COPY stage_diaobject FROM STDIN") as copy:
                    for row in objects:
                        copy.write_row((*row, new_per_object[row[0]]))
                cursor.execute(_POSTGRES_OBJECT)
                cursor.execute("TRUNCATE stage_diaobject")
