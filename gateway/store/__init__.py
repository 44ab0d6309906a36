"""The alert DB: a router sink that stores every event, the Citations history, and lookups for the other parts.

- :class:`Store` is the sink. Events are batched naturally: while one transaction is being written, the events
  that arrive wait and go into the next one, so a quiet stream commits each event at once and a burst is written
  in large transactions. An event's Deferred fires after the transaction holding it has committed (so a source
  commits its position only then).
- :class:`StoreHistory` answers the converter's "latest IVORN on this object?" from memory, loaded from the DB
  at start and persisted through ``diaobject.last_ivorn``, so Citations survive a restart.
- The schema is :mod:`gateway.store.schema`; row mapping :mod:`gateway.store.rows`; connections
  :mod:`gateway.store.db`.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.logger import Logger

from gateway.event import Event
from gateway.store import writers
from gateway.store.db import Database, StoreError
from gateway.store.rows import Rows, fits_bytes, rows_for
from gateway.store.schema import SCHEMA
from gateway.voevent.build import MemoryHistory

__all__ = ["Database", "Store", "StoreError", "StoreHistory"]

log = Logger()


class Store:
    """Router sink writing events to the alert DB in batched transactions, off the reactor.

    ``max_batch`` caps the events per transaction. A batch that fails is retried one event per transaction, so
    one bad event fails alone (its Deferred errbacks with :class:`StoreError`) and the others are stored.
    """

    def __init__(self, database: Database, max_batch: int = 2000):
        self.database = database
        self.max_batch = max_batch
        self.writer = writers.Writer(database.backend)
        self._pending: list[tuple[Event, defer.Deferred]] = []
        self._pending_ivorns: set[str] = set()
        self._writing = False
        self._closing: list[defer.Deferred] = []
        self.stored = 0
        self.failed = 0

    # -- sink -------------------------------------------------------------------------------------------------

    def accept(self, event: Event) -> defer.Deferred:
        d = defer.Deferred()
        self._pending.append((event, d))
        self._pending_ivorns.add(event.ivorn)
        if not self._writing:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        if not batch:
            self._writing = False
            if self._closing:
                self.database.stop()
                for d in self._closing:
                    d.callback(None)
                self._closing = []
            return
        self._writing = True
        events = [event for event, _ in batch]
        done = self.database.write(self._write_batch, events)
        done.addCallbacks(self._written, self._batch_failed, callbackArgs=(batch,), errbackArgs=(batch,))
        done.addErrback(lambda f: log.failure("store: unexpected error after a write", f))
        done.addBoth(lambda _: self._flush())

    def _write_batch(self, conn, events: list[Event]) -> list[Optional[Exception]]:
        """Writer thread: rows for every event (a bad one is reported, not fatal), then one write per table."""
        rows, outcome = Rows(), []
        for event in events:
            try:
                rows.extend(rows_for(event))
                outcome.append(None)
            except Exception as e:  # a malformed alert must not lose its neighbours
                outcome.append(StoreError(f"cannot store {event.ivorn}: {type(e).__name__}: {e}"))
        self.writer.write(conn, rows)
        return outcome

    def _written(self, outcome: list, batch) -> None:
        for (event, d), error in zip(batch, outcome):
            self._pending_ivorns.discard(event.ivorn)
            if error is None:
                self.stored += 1
                d.callback(event)
            else:
                self.failed += 1
                log.warn("store: {error}", error=error)
                d.errback(error)

    def _batch_failed(self, failure, batch) -> defer.Deferred:
        self.writer.forget()  # what it remembered of this batch was rolled back
        if len(batch) == 1:
            event, d = batch[0]
            self._pending_ivorns.discard(event.ivorn)
            self.failed += 1
            error = StoreError(f"cannot store {event.ivorn}: {failure.getErrorMessage()}")
            log.error("store: {error}", error=error)
            d.errback(error)
            return defer.succeed(None)
        log.warn("store: a batch of {n} failed ({why}); writing its events one by one",
                 n=len(batch), why=failure.getErrorMessage())
        singles = []
        for item in batch:
            one = self.database.write(self._write_batch, [item[0]])
            one.addCallbacks(self._written, self._batch_failed, callbackArgs=([item],), errbackArgs=([item],))
            singles.append(one)
        return defer.DeferredList(singles)

    def close(self) -> defer.Deferred:
        """Wait for the events already accepted to be committed, then close the DB connections."""
        if not self._writing and not self._pending:
            self.database.stop()
            return defer.succeed(None)
        d = defer.Deferred()
        self._closing.append(d)
        return d

    # -- lookups ----------------------------------------------------------------------------------------------

    def has_ivorn(self, ivorn: str) -> defer.Deferred:
        """Deferred[bool]: is an event with this IVORN stored (or being stored)? For the VTP receiver's dedup."""
        if ivorn in self._pending_ivorns:
            return defer.succeed(True)
        sql = f"SELECT 1 FROM {SCHEMA}.voevent WHERE ivorn = {self.database.placeholder}"
        return self.database.read(lambda conn: conn.execute(sql, (ivorn,)).fetchone() is not None)

    def cutout(self, alert_id: int, kind: str) -> defer.Deferred:
        """Deferred[bytes | None]: the FITS bytes of one cutout."""
        p = self.database.placeholder
        sql = f"SELECT content FROM {SCHEMA}.cutout WHERE alertid = {p} AND kind = {p}"

        def fetch(conn):
            row = conn.execute(sql, (alert_id, kind)).fetchone()
            return None if row is None else fits_bytes(bytes(row[0]))
        return self.database.read(fetch)


class StoreHistory(MemoryHistory):
    """The converter's History (``previous``/``remember``), from memory, persisted through the store.

    ``previous`` is called on the reactor for every alert, so it never touches the DB: the most recent
    ``max_objects`` objects are loaded at start from ``diaobject.last_ivorn``, and every alert converted since is
    remembered in memory (the store writes the same IVORN to ``diaobject.last_ivorn``).
    """

    def load(self, database: Database) -> int:
        """Blocking: fill from the DB (call before the reactor runs, or in a thread). Returns objects loaded."""
        conn = database.reader()
        try:
            rows = conn.execute(f"SELECT objectid, last_ivorn FROM {SCHEMA}.diaobject WHERE last_ivorn IS NOT NULL "
                                f"ORDER BY updated DESC LIMIT {int(self.max_objects)}").fetchall()
        finally:
            conn.close()
        for key, ivorn in reversed(rows):  # oldest first, so the newest end up most recently used
            self.remember(key, ivorn)
        return len(rows)
