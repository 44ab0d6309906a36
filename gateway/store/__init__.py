"""The alert DB: a router sink that stores every event, the Citations history, and lookups for the other parts.

- :class:`Store` is the sink. Events are batched naturally: while one transaction is being written, the events
  that arrive wait and go into the next one, so a quiet stream commits each event at once and a burst is written
  in large transactions. An event's Deferred fires after the transaction holding it has committed (so a source
  commits its position only then).
- :class:`StoreHistory` answers the converter's "latest IVORN on this object?" from memory, loaded from the DB
  at start and persisted through ``diaobject.last_ivorn``, so Citations survive a restart
  (:mod:`gateway.store.history`).
- The schema is :mod:`gateway.store.schema`; row mapping :mod:`gateway.store.rows`; connections
  :mod:`gateway.store.db`, over a backend (:mod:`gateway.store.sqlite`, :mod:`gateway.store.postgres`, both
  implementing :class:`gateway.store.backend.Backend`); batch writes :mod:`gateway.store.writers`.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.event import Event
from gateway.store import queries, writers
from gateway.store.db import Database, DatabaseClosed, StoreError
from gateway.store.history import StoreHistory
from gateway.store.rows import Rows, fits_bytes, rows_for
from gateway.store.schema import SCHEMA

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
        database.on_rollback(self.writer.forget)  # what it remembered of a rolled-back batch was not stored
        self._pending_ivorns: set[str] = set()
        self._unfinished = 0
        self._closing: list[defer.Deferred] = []
        self._last_batch_failure = None
        self.stored = 0
        self.failed = 0

    # -- sink -------------------------------------------------------------------------------------------------

    def accept(self, event: Event) -> defer.Deferred:
        self._pending_ivorns.add(event.ivorn)
        self._unfinished += 1
        d = self.database.write_item(self._write_batch, event, self.max_batch)
        d.addCallbacks(self._written, self._batch_failed, callbackArgs=(event,), errbackArgs=(event,))
        d.addBoth(self._finished, event)
        return d

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

    def _written(self, error: Optional[Exception], event: Event) -> Event:
        if error is not None:
            raise error
        self.stored += 1
        return event

    def _batch_failed(self, failure, event: Event) -> defer.Deferred:
        """The transaction holding ``event`` failed: write it again alone, so only a bad event fails."""
        if failure.check(DatabaseClosed):
            return failure
        if failure is not self._last_batch_failure:  # every event of the batch gets the same Failure: log it once
            self._last_batch_failure = failure
            log.warn("store: a batch failed ({why}); writing its events one by one", why=failure.getErrorMessage())
        alone = self.database.write(self._write_batch, [event])

        def outcome(errors):
            if errors[0] is not None:
                raise errors[0]
            self.stored += 1
            return event

        def failed_alone(failure):
            raise StoreError(f"cannot store {event.ivorn}: {failure.getErrorMessage()}")

        return alone.addCallbacks(outcome, failed_alone)

    def _finished(self, result, event: Event):
        self._pending_ivorns.discard(event.ivorn)
        self._unfinished -= 1
        if isinstance(result, Failure):
            self.failed += 1
            log.warn("store: {error}", error=result.getErrorMessage())
        if not self._unfinished and self._closing:
            self.database.stop()
            closing, self._closing = self._closing, []
            for d in closing:
                d.callback(None)
        return result

    def close(self) -> defer.Deferred:
        """Wait for the events already accepted to be committed, then close the DB connections."""
        if not self._unfinished:
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
        def fetch(conn):
            content = self.database.backend.read_cutout(conn, alert_id, kind)
            return None if content is None else fits_bytes(content)
        return self.database.read(fetch)

    # -- reads for the HTTP pages and replay (gateway.store.queries), in reader threads --------------------------

    def object_record(self, objectid: str, limit: int = 1000) -> defer.Deferred:
        """Deferred[queries.ObjectRecord | None]: one object, its light curve, alerts and VOEvents."""
        return self.database.read(queries.object_record, self.database.placeholder, objectid, limit)

    def cone(self, ra: float, dec: float, radius: float, limit: int) -> defer.Deferred:
        """Deferred[(rows of queries.CONE_COLUMNS, overflowed)]: objects within ``radius`` deg of (ra, dec)."""
        return self.database.read(queries.cone, self.database.backend, ra, dec, radius, limit)

    def events_received(self, since: Optional[str], until: Optional[str], after: Optional[tuple] = None,
                        limit: int = 500) -> defer.Deferred:
        """Deferred[list[queries.StoredEvent]]: one page of the events received in [since, until) (naive-UTC ISO
        text or None), oldest first, after the (received, ivorn) cursor ``after``."""
        return self.database.read(queries.events_received, self.database.placeholder, since, until, after, limit)

    def count_received(self, since: Optional[str], until: Optional[str]) -> defer.Deferred:
        """Deferred[int]: how many stored events were received in [since, until)."""
        return self.database.read(queries.count_received, self.database.placeholder, since, until)
