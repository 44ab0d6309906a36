"""The outbox tables and the SQL on them: enqueue (group commit), claim with leases, record outcomes, purge; and
the operator's tools behind ``vogateway outbox`` (list, counts, retry, drop).

The tables are described in :mod:`gateway.store.schema` (``OUTBOX_TABLES``) and created here, on whichever
backend the alert DB has; they are internal, so TAP neither lists nor serves them.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Iterable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from gateway.event import Event
from gateway.forward.outbox.items import Item, Outcome, Prepared
from gateway.store.db import DatabaseClosed
from gateway.store.schema import FORWARD_OUTBOX, FORWARD_PAYLOAD, OUTBOX_TABLES, SCHEMA, TNS_REPORT, VOEVENT

log = Logger()

TABLE = FORWARD_OUTBOX.name
TNS_TABLE = TNS_REPORT.name
#: rows with a NULL payload send the event's VOEvent: the store's ``voevent`` row, or, for an event the store has
#: not written (yet) when its rows are queued, a copy kept here (once however many routes queued it)
PAYLOAD_TABLE = FORWARD_PAYLOAD.name
STATUSES = ("pending", "sending", "sent", "failed", "dropped")


def create_tables(database) -> None:
    """Create the outbox tables if missing (synchronously: called once at start)."""
    database.create(OUTBOX_TABLES)


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Outbox:
    """The outbox table and the SQL on it; every method returns a Deferred (runs in the DB writer thread)."""

    def __init__(self, database, clock=None, lease: float = 60.0, retry_base: float = 2.0, retry_max: float = 300.0,
                 max_batch: int = 500):
        if clock is None:  # the reactor only when none is given: importing it installs the default one
            from twisted.internet import reactor as clock
        self.db, self.clock = database, clock
        self.lease, self.retry_base, self.retry_max, self.max_batch = lease, retry_base, retry_max, max_batch
        self.table = database.table(TABLE)
        self.tns_table = database.table(TNS_TABLE)
        self.payload_table = database.table(PAYLOAD_TABLE)
        self.voevent_table = database.table(VOEVENT.name)
        self.p = database.placeholder
        self.listeners: list[Callable[[set[str]], None]] = []
        self._last_failure = None
        create_tables(database)

    # -- enqueue (group commit) -----------------------------------------------------------------------------

    def enqueue(self, rows: list[tuple[str, str, Prepared, Event]]) -> defer.Deferred:
        """Queue ``(route, kind, prepared, event)`` rows; fires once they are committed (in the transaction of
        this reactor turn's other writes: the store's batch among them)."""
        queued = self.db.write_item(self._insert, (rows, self.clock.seconds()))
        return queued.addCallbacks(self._notify, self._enqueue_failed)

    def _enqueue_failed(self, failure):
        # every event of a failed transaction gets the same Failure: log it once
        if failure is not self._last_failure:
            self._last_failure = failure
            log.failure("outbox write failed; the sources will not commit past its events", failure)
        return failure

    def _notify(self, routes: set[str]) -> None:
        for listener in self.listeners:
            listener(routes)

    def _insert(self, conn, queued: list[tuple[list, float]]) -> list[set[str]]:
        """Writer thread: the rows of each ``enqueue``; returns, per call, the routes that got new rows."""
        p = self.p
        insert = (f"INSERT INTO {self.table} (key, route, kind, ivorn, objectid, payload, meta, status, stage, "
                  f"attempts, next_attempt, uncertain, last_error, created, updated) "
                  f"VALUES ({', '.join([p] * 15)}) ON CONFLICT (key) DO NOTHING")
        claim_object = (f"INSERT INTO {self.tns_table} (objectid, route, ivorn, status, created, updated) "
                        f"VALUES ({p}, {p}, {p}, 'queued', {p}, {p}) ON CONFLICT (objectid) DO NOTHING")
        values, shared, queued_routes = [], {}, []
        for rows, now in queued:
            routes = set()
            for route, kind, prepared, event in rows:
                if prepared.once_per_object and not prepared.failed:
                    cursor = conn.execute(claim_object, (prepared.objectid, route, event.ivorn, now, now))
                    if cursor.rowcount == 0:
                        continue  # already queued or reported, by this route or another: once, ever
                status = "failed" if prepared.failed else "pending"
                if prepared.payload is None:
                    shared[event.ivorn] = (event.xml, now)
                values.append((prepared.key, route, kind, event.ivorn, prepared.objectid, prepared.payload,
                               _json(prepared.meta) if prepared.meta else None, status, "send", 0, now, 0,
                               prepared.failed or None, now, now))
                routes.add(route)
            queued_routes.append(routes)
        if shared:
            # the store's job usually ran just before in this transaction (the router hands it the event first)
            conn.cursor().executemany(
                f"INSERT INTO {self.payload_table} (ivorn, xml, created) SELECT {p}, {p}, {p} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.voevent_table} WHERE ivorn = {p}) ON CONFLICT (ivorn) DO NOTHING",
                [(i, x, t, i) for i, (x, t) in shared.items()])
        if values:
            conn.cursor().executemany(insert, values)
        return queued_routes

    # -- claim and record ---------------------------------------------------------------------------------------

    def claim(self, route: str, limit: int, lease: Optional[float] = None) -> defer.Deferred:
        """Fires with (items, next due time or None): up to ``limit`` due rows of ``route``, leased to us for
        ``lease`` seconds (longer than any attempt may take: an expired lease means "that process died")."""
        return self.db.write(self._claim, route, limit, self.clock.seconds(), lease or self.lease)

    def _claim(self, conn, route, limit, now, lease):
        p, t = self.p, self.table
        lock = self.db.backend.row_lock("o")
        # two index range scans on (route, status, next_attempt), not one OR over every row of the route:
        # leases that ran out first (their process died), then pending rows that are due, oldest first
        select = (f"SELECT o.id, o.route, o.key, o.ivorn, o.objectid, o.payload, v.xml, x.xml, o.meta, "
                  f"o.attempts, o.stage, o.result, o.uncertain, o.status FROM {t} o "
                  f"LEFT JOIN {self.voevent_table} v ON o.payload IS NULL AND v.ivorn = o.ivorn "
                  f"LEFT JOIN {self.payload_table} x ON o.payload IS NULL AND v.ivorn IS NULL AND x.ivorn = o.ivorn "
                  f"WHERE o.route = {p} AND ")
        rows = conn.execute(select + f"o.status = 'sending' AND o.lease_until <= {p} ORDER BY o.lease_until, "
                                     f"o.id LIMIT {p}{lock}", (route, now, limit)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(select + f"o.status = 'pending' AND o.next_attempt <= {p} ORDER BY o.next_attempt, "
                                          f"o.id LIMIT {p}{lock}", (route, now, limit - len(rows))).fetchall()
        items = []
        for (id_, route_, key, ivorn, objectid, payload, stored, copied, meta, attempts, stage, result, uncertain,
             status) in rows:
            # a row still "sending" after its lease: its process died mid-delivery; the endpoint may have it
            uncertain = bool(uncertain) or (status == "sending" and stage == "send")
            attempts = attempts + 1 if stage == "send" else attempts
            conn.execute(f"UPDATE {t} SET status = 'sending', lease_until = {p}, attempts = {p}, uncertain = {p}, "
                         f"updated = {p} WHERE id = {p}", (now + lease, attempts, int(uncertain), now, id_))
            payload = next((value for value in (payload, stored, copied) if value is not None), None)
            if isinstance(payload, str):  # the store keeps the VOEvent as text
                payload = payload.encode("utf-8")
            items.append(Item(id_, route_, key, ivorn, objectid, bytes(payload) if payload is not None else b"",
                              json.loads(meta) if meta else {}, attempts, stage, result or "", uncertain))
        next_due = None
        if len(items) < limit:
            # two index lookups (route, status, next_attempt), not a scan of every pending row
            pending = conn.execute(f"SELECT MIN(next_attempt) FROM {t} WHERE route = {p} AND status = 'pending'",
                                   (route,)).fetchone()[0]
            leased = conn.execute(f"SELECT MIN(lease_until) FROM {t} WHERE route = {p} AND status = 'sending'",
                                  (route,)).fetchone()[0]
            due = [when for when in (pending, leased) if when is not None]
            next_due = min(due) if due else None
        return items, next_due

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter (half fixed, half random)."""
        delay = min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def record(self, item: Item, outcome: Outcome, max_attempts: int,
               hook: Optional[Callable] = None) -> defer.Deferred:
        """Store what became of ``item``; results from one reactor turn share a transaction.

        ``hook(conn, database, item, outcome)`` runs inside that transaction (TNS stores the name it got)."""
        return self.db.write_item(self._store_results, (item, outcome, max_attempts, hook, self.clock.seconds())
                                  ).addErrback(self._record_failed, item)

    @staticmethod
    def _record_failed(failure, item: Item) -> None:
        # the row stays leased: it is claimed again (uncertain) once the lease expires
        if failure.check(DatabaseClosed):
            log.info("outbox: {key} finished after the alert DB closed; it stays leased", key=item.key)
        else:
            log.failure("outbox: recording the result of {key} failed", failure, key=item.key)

    def _store_results(self, conn, results) -> list[None]:
        p, t = self.p, self.table
        for item, outcome, max_attempts, hook, now in results:
            kind = outcome.kind
            if kind == "retry" and item.attempts >= max_attempts:
                kind, detail = "failed", f"gave up after {item.attempts} attempts: {outcome.detail}"
            else:
                detail = outcome.detail
            if kind == "delivered":
                conn.execute(f"UPDATE {t} SET status = 'sent', result = {p}, last_error = NULL, lease_until = NULL, "
                             f"uncertain = 0, updated = {p} WHERE id = {p}",
                             (outcome.result or item.result, now, item.id))
            elif kind == "failed":
                conn.execute(f"UPDATE {t} SET status = 'failed', last_error = {p}, lease_until = NULL, updated = {p} "
                             f"WHERE id = {p}", (detail, now, item.id))
            elif kind == "submitted":
                conn.execute(f"UPDATE {t} SET status = 'pending', stage = 'poll', result = {p}, uncertain = 0, "
                             f"last_error = NULL, next_attempt = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (outcome.result, now + (outcome.after or 0.0), now, item.id))
            elif kind in ("poll", "throttled"):
                # not the item's fault: the attempt is given back
                attempts = item.attempts - 1 if (kind == "throttled" and item.stage == "send") else item.attempts
                conn.execute(f"UPDATE {t} SET status = 'pending', attempts = {p}, next_attempt = {p}, "
                             f"last_error = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (max(0, attempts), now + (outcome.after or 0.0), detail or None, now, item.id))
            else:  # retry
                wait = outcome.after if outcome.after is not None else self.backoff(item.attempts)
                conn.execute(f"UPDATE {t} SET status = 'pending', next_attempt = {p}, last_error = {p}, "
                             f"uncertain = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (now + wait, detail, int(item.uncertain or outcome.uncertain), now, item.id))
            if hook is not None:
                hook(conn, self.db, item, Outcome(kind, detail, outcome.result, outcome.after, outcome.uncertain))
        return [None] * len(results)

    # -- maintenance ------------------------------------------------------------------------------------------

    def purge(self, older_than: float) -> defer.Deferred:
        """Delete rows sent or dropped more than ``older_than`` seconds ago (tns_report keeps the record)."""
        cutoff = self.clock.seconds() - older_than
        p, t, x = self.p, self.table, self.payload_table

        def purge(conn):
            count = conn.execute(f"DELETE FROM {t} WHERE status IN ('sent', 'dropped') AND updated < {p}",
                                 (cutoff,)).rowcount
            conn.execute(f"DELETE FROM {x} WHERE created < {p} AND NOT EXISTS (SELECT 1 FROM {t} o WHERE "
                         f"o.ivorn = {x}.ivorn AND o.status IN ('pending', 'sending', 'failed'))", (cutoff,))
            return count
        return self.db.write(purge)


# ------------------------------------------------------------------------------------------------ operator tools


COLUMNS = ("id", "route", "kind", "status", "stage", "attempts", "next_attempt", "uncertain", "key", "ivorn",
           "objectid", "result", "last_error", "created", "updated")


def list_items(database, statuses: Iterable[str] = ("pending", "sending", "failed"), route: Optional[str] = None,
               limit: int = 100) -> list[dict[str, Any]]:
    """Rows of the outbox (synchronously: for the CLI), oldest first."""
    create_tables(database)
    statuses = list(statuses)
    p, t = database.placeholder, database.table(TABLE)
    where = [f"status IN ({', '.join([p] * len(statuses))})"]
    args: list = list(statuses)
    if route:
        where.append(f"route = {p}")
        args.append(route)
    sql = f"SELECT {', '.join(COLUMNS)} FROM {t} WHERE {' AND '.join(where)} ORDER BY id LIMIT {p}"
    return database.run_write(lambda conn: [dict(zip(COLUMNS, row)) for row in conn.execute(sql, (*args, limit))])


def counts(database) -> dict[tuple[str, str], int]:
    """(route, status) -> number of rows."""
    create_tables(database)
    t = database.table(TABLE)
    return database.run_write(lambda conn: {(r, s): n for r, s, n in conn.execute(
        f"SELECT route, status, COUNT(*) FROM {t} GROUP BY route, status ORDER BY route, status")})


def retry_items(database, ids: Iterable[int] = (), all_failed: bool = False, route: Optional[str] = None) -> int:
    """Make failed (or dropped) rows pending again, attempts reset; returns how many."""
    return _set_status(database, ids, all_failed, route, "pending", ("failed", "dropped"))


def drop_items(database, ids: Iterable[int] = (), all_failed: bool = False, route: Optional[str] = None) -> int:
    """Mark pending or failed rows dropped: never sent; returns how many."""
    return _set_status(database, ids, all_failed, route, "dropped", ("pending", "failed"))


def _set_status(database, ids, all_failed, route, status, allowed) -> int:
    create_tables(database)
    p, t = database.placeholder, database.table(TABLE)
    ids = [int(i) for i in ids]
    where = [f"status IN ({', '.join([p] * len(allowed))})"]
    args: list = list(allowed)
    if ids:
        where.append(f"id IN ({', '.join([p] * len(ids))})")
        args.extend(ids)
    elif all_failed:
        where.append("status = 'failed'")
    else:
        return 0
    if route:
        where.append(f"route = {p}")
        args.append(route)
    now = time.time()
    extra = ", attempts = 0, uncertain = uncertain, last_error = NULL" if status == "pending" else ""

    def run(conn):
        count = conn.execute(f"UPDATE {t} SET status = {p}, next_attempt = {p}, updated = {p}{extra} "
                             f"WHERE {' AND '.join(where)}", (status, now, now, *args)).rowcount
        if status == "pending":  # a TNS report the operator retries is queued again
            conn.execute(f"UPDATE {database.table(TNS_TABLE)} SET status = 'queued', updated = {p} WHERE objectid IN "
                         f"(SELECT objectid FROM {t} WHERE kind = 'tns' AND status = 'pending' "
                         f"AND objectid IS NOT NULL) AND status = 'failed'", (now,))
        return count
    return database.run_write(run)


def backlog(database) -> defer.Deferred:
    """Deferred[{route: (rows waiting, created time of the oldest waiting (s) or None, rows failed)}] on a reader
    connection (for metrics and the status page: never the writer, which the pipeline needs)."""
    sql = (f"SELECT route, SUM(CASE WHEN status IN ('pending', 'sending') THEN 1 ELSE 0 END), "
           f"MIN(CASE WHEN status IN ('pending', 'sending') THEN created END), "
           f"SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) FROM {SCHEMA}.{TABLE} "
           f"WHERE status IN ('pending', 'sending', 'failed') GROUP BY route")
    return database.read(lambda conn: {route: (int(waiting or 0), oldest, int(failed or 0))
                                       for route, waiting, oldest, failed in conn.execute(sql).fetchall()})
