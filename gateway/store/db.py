"""Connections to the alert DB, kept off the reactor thread.

One writer thread owns the only write connection (SQLite allows one writer; on PostgreSQL one ordered writer
keeps batches simple), and a small pool of reader threads serves queries on read-only connections. Callers get
Deferreds; nothing here runs SQL on the reactor thread.

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://:memory:`` (tests), or a
PostgreSQL URL/conninfo ``postgresql://user@host:port/dbname``. On PostgreSQL the tables live in the schema
``gateway`` (:data:`gateway.store.schema.SCHEMA`); on SQLite the read connections attach the file under that
name, so the same qualified names (``gateway.diasource``) work on both.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Optional

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from gateway.store.backend import Backend, DatabaseClosed, StoreError, parse_url
from gateway.store.packs import PackError
from gateway.store.postgres import PostgresBackend
from gateway.store.schema import Table
from gateway.store.sqlite import SQLiteBackend

__all__ = ["Database", "DatabaseClosed", "StoreError", "backend_for", "parse_url"]

log = Logger()

_BACKENDS = {"sqlite": SQLiteBackend, "postgresql": PostgresBackend}


def backend_for(url: str, cutout_dir: str = "") -> Backend:
    """The backend object for a store URL (see :func:`parse_url`); ``cutout_dir``: where its cutout packs are
    ("": the backend's default, see :mod:`gateway.store.packs`)."""
    kind, target = parse_url(url)
    return _BACKENDS[kind](target, cutout_dir)


class Database:
    """The alert DB: ``write(fn)`` and ``read(fn)`` run ``fn(connection, *args)`` off the reactor.

    ``write`` runs in the single writer thread inside a transaction, committed before its Deferred fires (so
    a source may commit its position then). ``read`` runs on a read-only connection of a reader thread.
    ``reader(timeout)`` opens a new read-only connection for a caller that manages its own thread (TAP
    streaming). ``backend`` is the :class:`~gateway.store.backend.Backend` chosen from the URL, which holds all
    that differs between SQLite and PostgreSQL; ``placeholder`` its DB-API parameter marker (``?`` or ``%s``).
    """

    def __init__(self, url: str, reactor=None, readers: int = 4, cutout_dir: str = ""):
        # imported only when none is given: importing it installs the default reactor, which a caller (twistd,
        # tests) may want to choose first
        from twisted.internet import reactor as default_reactor

        self.url = url
        self.backend = backend_for(url, cutout_dir)
        #: "sqlite" or "postgresql": the name other packages key their per-backend code on (TAP dialects)
        self.kind = self.backend.name
        self.placeholder = self.backend.placeholder
        self.reactor = reactor or default_reactor
        self._writer_pool = ThreadPool(1, 1, name="store-writer")
        self._reader_pool = ThreadPool(1, readers, name="store-readers")
        self._local = threading.local()
        self._queued: list = []
        self._coalescing: dict = {}  # fn -> (items, their Deferreds) of the job not yet started
        self._rollback_listeners: list[Callable[[], None]] = []
        self._committing = False
        if self.backend.packs is not None:  # an unwritable cutout directory is said now, not at the first cutout
            try:
                self.backend.packs.check()
            except PackError as error:
                raise StoreError(str(error)) from None
        self._writer = self.backend.connect_writer()  # synchronously, so a bad URL fails at start, clearly
        self._running = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._running:
            self._writer_pool.start()
            self._reader_pool.start()
            self._running = True

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._writer_pool.stop()
            self._reader_pool.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- work -------------------------------------------------------------------------------------------------

    def write(self, fn: Callable[..., Any], *args) -> defer.Deferred:
        """Run ``fn(conn, *args)`` in the writer thread; the Deferred fires with its result once committed.

        Group commit: the writes of one reactor turn, and those queued while a transaction is being written
        (the store's batch, the outbox's inserts and status updates), share the next transaction; one failing
        ``fn`` errbacks alone and the others are still committed (see ``_run_group``).
        """
        if self._writer is None:
            return defer.fail(DatabaseClosed("the alert DB is closed"))
        d = defer.Deferred()
        self._queued.append((fn, args, d))
        self._schedule()
        return d

    def write_item(self, fn: Callable[..., list], item, limit: int = 0) -> defer.Deferred:
        """Queue ``item`` for ``fn(conn, items)``, called once per transaction with every item queued for it
        meanwhile (at most ``limit``; 0: no cap), so the many small writes of a burst go as one job. ``fn``
        returns one result per item; each item's Deferred fires with its own once committed."""
        if self._writer is None:
            return defer.fail(DatabaseClosed("the alert DB is closed"))
        job = self._coalescing.get(fn)
        if job is None or (limit and len(job[0]) >= limit):
            job = self._coalescing[fn] = ([], [])
            items, waiting = job

            def fire(results):
                for d, result in zip(waiting, results):
                    d.callback(result)

            def fail(failure):
                for d in waiting:
                    d.errback(failure)

            shared = defer.Deferred().addCallbacks(fire, fail)
            self._queued.append((fn, (items,), shared))
            self._schedule()
        d = defer.Deferred()
        job[0].append(item)
        job[1].append(d)
        return d

    def _schedule(self) -> None:
        # at the end of this reactor turn, so that every write made in it joins one transaction
        self.start()
        if not self._committing:
            self._committing = True
            self.reactor.callLater(0, self._commit_next)

    def _commit_next(self) -> None:
        jobs, self._queued = self._queued, []
        self._coalescing = {}
        if not jobs:
            self._committing = False
            return
        if self._writer is None:  # stopped with writes still queued
            self._committing = False
            for _, _, d in jobs:
                d.errback(DatabaseClosed("the alert DB is closed"))
            return
        done = threads.deferToThreadPool(self.reactor, self._writer_pool, self._run_group, jobs)

        def fire(outcomes):
            for (_, _, d), (ok, value) in zip(jobs, outcomes):
                if ok:
                    d.callback(value)
                else:
                    d.errback(value)

        def commit_failed(failure):
            for _, _, d in jobs:
                d.errback(failure)

        done.addCallbacks(fire, commit_failed)
        done.addErrback(lambda f: log.failure("store: a write callback failed", f))
        done.addBoth(lambda _: self._commit_next())

    def _run_group(self, jobs) -> list[tuple[bool, Any]]:
        """Writer thread: every job in one transaction; [(True, result) | (False, Failure)].

        No savepoints: in SQLite each one makes every page the jobs touch be copied to a sub-journal first, which
        costs a batch of inserts about 40%. Failures are rare, so when one happens the whole transaction is
        rolled back (rollback listeners told) and each job runs again in a transaction of its own: the failing
        one fails alone and the others commit.
        """
        try:
            return self.run_write(lambda conn: [(True, fn(conn, *args)) for fn, args, _ in jobs])
        except Exception:
            if len(jobs) == 1:
                return [(False, Failure())]
        outcomes = []
        for fn, args, _ in jobs:
            try:
                outcomes.append((True, self.run_write(fn, *args)))
            except Exception:
                outcomes.append((False, Failure()))
        return outcomes

    def on_rollback(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (in the writer thread) whenever a write transaction is rolled back: for caches of
        what was written, which must then forget what the transaction did."""
        self._rollback_listeners.append(listener)

    def _rolled_back(self) -> None:
        for listener in self._rollback_listeners:
            listener()

    def run_write(self, fn: Callable[..., Any], *args) -> Any:
        """One transaction in the calling thread, for callers already in the writer thread (and for tests and
        benchmarks)."""
        conn = self._writer
        try:
            with self.backend.transaction(conn):
                return fn(conn, *args)
        except BaseException:
            self._rolled_back()
            raise

    def read(self, fn: Callable[..., Any], *args) -> defer.Deferred:
        self.start()
        return threads.deferToThreadPool(self.reactor, self._reader_pool, self._run_read, fn, *args)

    def _run_read(self, fn, *args):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.reader()
        return fn(conn, *args)

    def reader(self, timeout: Optional[float] = None):
        """A new read-only connection (the caller closes it); statements over ``timeout`` s are cancelled."""
        return self.backend.connect_reader(timeout)

    def table(self, name: str) -> str:
        """The name to use for table ``name`` in SQL on the writer connection."""
        return self.backend.table(name)

    def create(self, tables: Iterable[Table]) -> None:
        """Create ``tables`` (from :mod:`gateway.store.schema`) if missing, in one transaction, synchronously: for
        parts that own tables besides the alert tables (the forward outbox), once at start."""
        statements = self.backend.ddl(tables)

        def run(conn):
            for statement in statements:
                conn.execute(statement)
        self.run_write(run)
