"""Writing batches of rows inside the transaction the caller opened (writer thread only): the backend-neutral half
here, the backend's bulk writer (:mod:`gateway.store.sqlite`, :mod:`gateway.store.postgres`) for the rest.

Rows already stored are skipped (alerts, events, detections and cutouts are immutable once written); the
object row is an upsert that keeps the earliest first_mjd, the latest last_mjd and the IVORN of the latest alert.

What makes it fast: every Rubin alert repeats up to a year of earlier detections, almost all stored already, so
the writer remembers the ids it stored recently and sends only the new ones; object rows are merged per batch in
Python, so each object is upserted once per transaction; PostgreSQL gets COPY into temporary staging tables and
one set-based INSERT ... SELECT ... ON CONFLICT per table.
"""

from __future__ import annotations

from gateway.store.rows import Rows
from gateway.store.schema import ALERT, CUTOUT, DIASOURCE, VOEVENT

#: diaobject columns given per row; ndetections is counted from diasource and tns_name left alone
OBJECT_COLUMNS = ("objectid", "survey", "ra", "dec", "first_mjd", "last_mjd", "last_alertid", "last_ivorn",
                  "updated")
#: the tables whose rows never change once written: (name, table)
IMMUTABLE = (("alert", ALERT), ("voevent", VOEVENT), ("diasource", DIASOURCE), ("cutout", CUTOUT))


def object_upsert(backend, table: str, select: str, ndetections: str) -> str:
    """The diaobject upsert on ``backend`` from ``select`` (one row per object, columns OBJECT_COLUMNS then
    ndetections); ``ndetections`` is the new count on conflict."""
    # strictly newer: a replayed alert (same last_mjd) leaves the row as it is
    newer = f"({table}.last_mjd IS NULL OR excluded.last_mjd > {table}.last_mjd)"
    latest = lambda column: f"CASE WHEN {newer} THEN excluded.{column} ELSE {table}.{column} END"  # noqa: E731
    updates = (
        f"ra = {latest('ra')}, dec = {latest('dec')}, ndetections = {ndetections}, "
        f"first_mjd = {backend.least}(coalesce({table}.first_mjd, excluded.first_mjd), "
        f"coalesce(excluded.first_mjd, {table}.first_mjd)), "
        f"last_mjd = {backend.greatest}(coalesce({table}.last_mjd, excluded.last_mjd), "
        f"coalesce(excluded.last_mjd, {table}.last_mjd)), "
        f"last_alertid = {latest('last_alertid')}, last_ivorn = {latest('last_ivorn')}, "
        f"updated = excluded.updated"
    )
    return backend.upsert(table, (*OBJECT_COLUMNS, "ndetections"), select, ("objectid",), updates)


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
    How the rows reach the tables (SQLite executemany, PostgreSQL COPY) is the backend's bulk writer.
    """

    def __init__(self, backend, recent: int = 2_000_000):
        self.backend = backend
        self.recent = RecentIds(recent)
        self.bulk = backend.bulk_writer()

    def forget(self) -> None:
        self.recent.clear()
        self.bulk.forget()

    def write(self, conn, rows: Rows) -> None:
        new_detections, seen = [], set()
        for row in rows.diasource:
            source_id = row[0]
            if source_id not in seen and source_id not in self.recent:
                seen.add(source_id)
                new_detections.append(row)
        objects = merge_objects(rows.diaobject)
        tables = {"alert": rows.alert, "voevent": rows.voevent, "diasource": new_detections, "cutout": rows.cutout}
        if rows.cutout_pack:  # located by the workers that wrote them (SQLite's pack files)
            tables["cutout_pack"] = rows.cutout_pack
        self.bulk.write(conn, tables, objects)
        self.recent.add_all(seen)
