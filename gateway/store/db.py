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

import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from gateway import sky
from gateway.store.schema import SCHEMA, postgres_ddl, sqlite_ddl

log = Logger()


class StoreError(Exception):
    """The alert DB could not be opened or written; the message says which and why."""


class DatabaseClosed(StoreError):
    """A write after :meth:`Database.stop`."""


def parse_url(url: str) -> tuple[str, str]:
    """(backend, target): ("sqlite", path or ":memory:") or ("postgresql", conninfo)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if rest in (":memory:", "/:memory:"):
            return "sqlite", ":memory:"
        if not rest.startswith("/"):
            raise StoreError(f"store URL {url!r}: expected sqlite:///relative/path.db or sqlite:////absolute.db")
        return "sqlite", rest[1:]
    if url.startswith(("postgresql://", "postgres://")) or "dbname=" in url:
        return "postgresql", url
    raise StoreError(f"store URL {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


# -- SQLite helpers ----------------------------------------------------------------------------------------------

def _register_functions(conn: sqlite3.Connection) -> None:
    # the SQL the TAP translator emits for DISTANCE and exact cone checks on SQLite
    conn.create_function("sky_distance", 4, sky.distance, deterministic=True)
    for name, fn in (("radians", math.radians), ("degrees", math.degrees), ("sin", math.sin), ("cos", math.cos),
                     ("tan", math.tan), ("asin", math.asin), ("acos", math.acos), ("atan", math.atan),
                     ("sqrt", math.sqrt), ("log10", math.log10), ("log", math.log), ("exp", math.exp),
                     ("floor", math.floor), ("ceiling", math.ceil)):
        conn.create_function(name, 1, _null_safe(fn), deterministic=True)
    conn.create_function("atan2", 2, _null_safe(math.atan2), deterministic=True)
    conn.create_function("power", 2, _null_safe(math.pow), deterministic=True)
    conn.create_function("mod", 2, _null_safe(math.fmod), deterministic=True)
    conn.create_function("pi", 0, lambda: math.pi, deterministic=True)


def _null_safe(fn):
    def wrapped(*args):
        if any(a is None for a in args):
            return None
        try:
            return fn(*args)
        except (ValueError, OverflowError):  # domain errors become NULL, as in SQL
            return None
    return wrapped


def sqlite_writer(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes, fast commits
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MB (default 2 MB): a batch of 6 kB VOEvents and indexes fits
    for statement in sqlite_ddl():
        conn.execute(statement)
    return conn


def sqlite_reader(path: str, timeout: Optional[float] = None) -> sqlite3.Connection:
    """A read-only connection with the alert DB attached as ``gateway`` and the sky functions registered.

    ``timeout`` (seconds) interrupts any statement that runs longer; the query then raises
    ``sqlite3.OperationalError: interrupted``.
    """
    conn = sqlite3.connect(":memory:", uri=True, check_same_thread=False, isolation_level=None)
    target = Path(path).resolve().as_uri() if path != ":memory:" else "file::memory:"
    conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (f"{target}?mode=ro",))
    conn.execute("PRAGMA query_only=1")
    _register_functions(conn)
    if timeout is not None:
        set_deadline(conn, timeout)
    return conn


def set_deadline(conn: sqlite3.Connection, timeout: Optional[float]) -> None:
    """Interrupt statements on ``conn`` once ``timeout`` seconds from now have passed (None: no limit)."""
    if timeout is None:
        conn.set_progress_handler(None, 0)
        return
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


# -- PostgreSQL helpers ------------------------------------------------------------------------------------------

def postgres_connect(conninfo: str, read_only: bool = False, timeout: Optional[float] = None):
    import psycopg

    options = [f"-c search_path={SCHEMA},public"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    if timeout is not None:
        options.append(f"-c statement_timeout={int(timeout * 1000)}")
    try:
        return psycopg.connect(conninfo, options=" ".join(options), autocommit=read_only)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL {conninfo!r}: {e}".strip()) from e


def postgres_create(conn) -> None:
    with conn.transaction():
        for statement in postgres_ddl():
            conn.execute(statement)


class Database:
    """The alert DB: ``write(fn)`` and ``read(fn)`` run ``fn(connection, *args)`` off the reactor.

    ``write`` runs in the single writer thread inside a transaction, committed before its Deferred fires (so
    a source may commit its position then). ``read`` runs on a read-only connection of a reader thread.
    ``reader(timeout)`` opens a new read-only connection for a caller that manages its own thread (TAP
    streaming). ``placeholder`` is the DB-API parameter marker: ``?`` (SQLite) or ``%s`` (PostgreSQL).
    """

    def __init__(self, url: str, reactor=None, readers: int = 4):
        from twisted.internet import reactor as default_reactor

        self.url = url
        self.backend, self.target = parse_url(url)
        #: "sqlite" or "postgresql": the name other packages key their per-backend code on (TAP dialects)
        self.kind = self.backend
        self.placeholder = "?" if self.backend == "sqlite" else "%s"
        self.reactor = reactor or default_reactor
        self._writer_pool = ThreadPool(1, 1, name="store-writer")
        self._reader_pool = ThreadPool(1, readers, name="store-readers")
        self._local = threading.local()
        self._writer = None
        self._queued: list = []
        self._coalescing: dict = {}  # fn -> (items, their Deferreds) of the job not yet started
        self._rollback_listeners: list[Callable[[], None]] = []
        self._committing = False
        if self.backend == "sqlite" and self.target == ":memory:":
            # a shared in-memory DB for tests: readers and the writer see the same tables
            self.target = f"file:gateway-{id(self)}?mode=memory&cache=shared"
        self._open_writer()  # synchronously, so a bad URL fails at start with a clear message
        self._running = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _open_writer(self):
        if self.backend == "sqlite":
            if self.target.startswith("file:"):
                self._writer = sqlite3.connect(self.target, uri=True, check_same_thread=False, isolation_level=None)
                for statement in sqlite_ddl():
                    self._writer.execute(statement)
            else:
                try:
                    self._writer = sqlite_writer(self.target)
                except sqlite3.Error as e:
                    raise StoreError(f"cannot open SQLite alert DB {self.target!r}: {e}") from e
        else:
            self._writer = postgres_connect(self.target)
            try:
                postgres_create(self._writer)
            except Exception as e:
                raise StoreError(f"cannot create the alert DB schema in {self.target!r}: {e}") from e

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
        if self.backend == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._rolled_back()
                raise
            return result
        try:
            with conn.transaction():
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
        if self.backend == "sqlite":
            if self.target.startswith("file:"):
                conn = sqlite3.connect(":memory:", uri=True, check_same_thread=False, isolation_level=None)
                conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (self.target,))
                conn.execute("PRAGMA query_only=1")
                _register_functions(conn)
                if timeout is not None:
                    set_deadline(conn, timeout)
                return conn
            return sqlite_reader(self.target, timeout)
        return postgres_connect(self.target, read_only=True, timeout=timeout)

    def table(self, name: str) -> str:
        """The name to use for table ``name`` in SQL on the writer connection."""
        return name if self.backend == "sqlite" else f"{SCHEMA}.{name}"
