"""Running one TAP query, blocking, in a worker thread: uploads -> translation -> cursor -> writer -> sink.

The caller (sync resource or async job) owns the thread and the sink. A sink receives ``start(content_type)``
once the first batch is in hand (so every error up to then can still become a clean HTTP 400 error document),
then ``write(bytes)`` per batch (a sink may block there: that is the back-pressure), then ``finish()``.
Errors after ``start`` go into the document's footer (VOTable: an ERROR INFO after the table).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from gateway.tap.adql import AdqlError, dialect_for, translate
from gateway.tap.catalog import Catalog, ColumnMeta
from gateway.tap.errors import QueryError
from gateway.tap.settings import TapSettings
from gateway.tap.uploads import fetch_upload, parse_upload
from gateway.tap.votable import UnknownFormat, resolve_types, writer_for

#: rows fetched from the cursor and written at a time
BATCH_ROWS = 5_000


@dataclass
class QuerySpec:
    adql: str
    format: Optional[str] = None
    maxrec: Optional[int] = None
    #: table name -> VOTable bytes, or the http(s) URL to fetch it from
    uploads: dict[str, "bytes | str"] = field(default_factory=dict)
    #: the public URL of /tap/links, for the DataLink service descriptor of results with alert ids
    links_url: Optional[str] = None


class Cancel:
    """Set from any thread to stop a running query (client gone, job aborted or destroyed)."""

    def __init__(self):
        self.cancelled = False
        self._interrupt: Optional[Callable[[], None]] = None
        self._lock = threading.Lock()

    def bind(self, interrupt: Optional[Callable[[], None]]) -> None:
        with self._lock:
            self._interrupt = interrupt
            cancelled = self.cancelled
        if cancelled and interrupt is not None:
            interrupt()

    def cancel(self) -> None:
        # under the lock: once bind(None) has returned, this can no longer reach the (closing) connection
        with self._lock:
            self.cancelled = True
            if self._interrupt is not None:
                try:
                    self._interrupt()
                except Exception:  # noqa: BLE001 - the connection may be closing already
                    pass


def parse_maxrec(value, settings: TapSettings) -> int:
    """MAXREC as given (rows), the default when absent, capped at the hard limit."""
    if value is None or str(value).strip() == "":
        return settings.maxrec_default
    try:
        maxrec = int(str(value).strip())
    except ValueError:
        raise QueryError(f"MAXREC must be a whole number of rows, not {value!r}") from None
    if maxrec < 0:
        raise QueryError("MAXREC must not be negative")
    return min(maxrec, settings.maxrec_max)  # a huge MAXREC is capped at the hard limit (and says OVERFLOW)


# -- the run -------------------------------------------------------------------------------------------------------

def width_of(column: ColumnMeta) -> int:
    """How many SQL columns one result column is read from: 2 for a DALI point, 3 for a circle, else 1."""
    return int(column.arraysize) if column.xtype in ("point", "circle") else 1


def grouper(widths: list[int]) -> Callable[[list[tuple]], list[tuple]]:
    """A function putting the SQL columns of each row back together as result columns: a point's or circle's
    numbers into one tuple (None when any is NULL); the identity when every width is 1."""
    if all(w == 1 for w in widths):
        return lambda rows: rows
    slices, start = [], 0
    for w in widths:
        slices.append((start, w))
        start += w

    def group(rows):
        out = []
        for row in rows:
            cells = []
            for first, w in slices:
                if w == 1:
                    cells.append(row[first])
                else:
                    part = tuple(row[first:first + w])
                    cells.append(None if None in part else tuple(float(v) for v in part))
            out.append(tuple(cells))
        return out
    return group


class Runner:
    """Runs queries against ``database`` (a gateway.store.db.Database) for the sync and async paths."""

    def __init__(self, database, settings: TapSettings, catalog: Optional[Catalog] = None):
        self.database = database
        self.dialect = dialect_for(database.kind)
        self.settings = settings
        self.catalog = catalog or Catalog.default()
        #: called with (outcome "ok" | "error", seconds) after each query, in the query's thread: for metrics
        self.observers: list[Callable[[str, float], None]] = []

    def parse_maxrec(self, value) -> int:
        return parse_maxrec(value, self.settings)

    def run(self, spec: QuerySpec, sink, cancel: Cancel, timeout: float, waited: float = 0.0) -> int:
        """Run ``spec`` to ``sink`` within ``timeout`` s; returns the row count. Raises QueryError for anything that
        happens before ``sink.start`` (the caller answers with an error document). ``waited``: seconds the query
        already waited for a slot, taken off its time limit (messages name the whole limit)."""
        started, outcome = time.monotonic(), "error"
        try:
            count = self._run(spec, sink, cancel, timeout, waited)
            outcome = "ok"
            return count
        finally:
            for observe in self.observers:
                observe(outcome, time.monotonic() - started)

    def _run(self, spec: QuerySpec, sink, cancel: Cancel, timeout: float, waited: float = 0.0) -> int:
        try:
            writer = writer_for(spec.format)
        except UnknownFormat as e:
            raise QueryError(str(e)) from None
        if hasattr(writer, "links_url"):
            writer.links_url = spec.links_url
        maxrec = spec.maxrec if spec.maxrec is not None else self.settings.maxrec_default
        uploads = {}
        for name, data in spec.uploads.items():
            if isinstance(data, str):
                data = fetch_upload(name, data, self.settings)
            uploads[name.lower()] = parse_upload(name, data, self.settings)
        catalog = self.catalog.with_uploads({n: cols for n, (cols, _) in uploads.items()}) if uploads else self.catalog
        try:
            translation = translate(spec.adql, self.dialect, catalog, maxrec)
        except AdqlError as e:
            raise QueryError(str(e)) from None
        deadline = time.monotonic() + timeout
        try:
            conn = self._connect(timeout)
        except Exception as e:  # noqa: BLE001 - e.g. PostgreSQL down
            raise QueryError(f"the alert DB is not available: {e}", status=503) from None
        try:
            cancel.bind(self.dialect.interrupter(conn))
            if uploads:
                self.dialect.create_uploads(conn, uploads)
            with self.dialect.result_cursor(conn) as cursor:
                return self._stream(cursor, translation, writer, sink, maxrec, deadline, (timeout, waited), cancel)
        except QueryError:
            raise
        except Exception as e:  # noqa: BLE001 - classified into a message a person can act on
            raise QueryError(*self._explain(e, cancel, (timeout, waited))) from None
        finally:
            cancel.bind(None)
            self._release(conn)

    # -- connections: a new one per query on both backends. (A pool of PostgreSQL connections saved ~6 ms a
    # query, but q3c keeps per-backend static caches, and once in many runs a pooled backend answered a polygon
    # query wrongly; a fresh backend per query never did.)

    def _connect(self, timeout: float):
        conn = self.database.reader(timeout)
        self.dialect.prepare(conn)
        return conn

    @staticmethod
    def _release(conn) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def _stream(self, cursor, translation, writer, sink, maxrec, deadline, limit, cancel) -> int:
        cursor.execute(translation.sql)
        first = cursor.fetchmany(min(BATCH_ROWS, maxrec + 1))
        columns = translation.columns
        widths = [width_of(c) for c in columns]
        if cursor.description is not None and len(cursor.description) != sum(widths):
            raise QueryError(f"internal error: {len(cursor.description)} result columns, expected {sum(widths)}",
                             status=500)
        group = grouper(widths)
        first = group(first)
        columns = resolve_types(columns, first)
        sink.start(writer.content_type)
        count, overflow = 0, False
        try:
            sink.write(writer.header(columns))
            batch = first
            while batch:
                if count + len(batch) > maxrec:
                    batch = batch[:maxrec - count]
                    overflow = True
                if batch:
                    sink.write(writer.rows(batch))
                    count += len(batch)
                if overflow or cancel.cancelled:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError()
                batch = group(cursor.fetchmany(BATCH_ROWS))
            if cancel.cancelled:
                sink.write(writer.footer(False, "the query was aborted"))
            else:
                sink.write(writer.footer(overflow))
        except Exception as e:  # noqa: BLE001 - the header is out: report in the document
            message, _ = self._explain(e, cancel, limit)
            sink.write(writer.footer(False, message))
        sink.finish()
        return count

    def _explain(self, e: Exception, cancel: Cancel, limit: tuple[float, float]) -> tuple[str, int]:
        """(message, HTTP status) for ``e``; ``limit``: (seconds the query had to run, seconds it waited before)."""
        text = str(e).strip()
        timeout, waited = limit
        kind = type(e).__name__
        if cancel.cancelled:
            return "the query was aborted", 400
        if isinstance(e, TimeoutError) or self.dialect.is_time_limit(e):
            wait = f", {waited:.1f} s of it waiting for a free slot," if waited >= 0.05 else ""
            return (f"the query ran longer than its time limit of {timeout + waited:g} s{wait} and was stopped; narrow it "
                    "(a cone, TOP, an indexed column such as mjd) or run it as an async job with a longer "
                    "EXECUTIONDURATION"), 400
        if self.dialect.is_database_error(e):
            return f"the database could not run this query: {text.splitlines()[0] if text else kind}", 400
        return f"internal error while running the query: {kind}: {text}", 500
