"""Running one TAP query, blocking, in a worker thread: uploads -> translation -> cursor -> writer -> sink.

The caller (sync resource or async job) owns the thread and the sink. A sink receives ``start(content_type)``
once the first batch is in hand (so every error up to then can still become a clean HTTP 400 error document),
then ``write(bytes)`` per batch (a sink may block there: that is the back-pressure), then ``finish()``.
Errors after ``start`` go into the document's footer (VOTable: an ERROR INFO after the table).
"""

from __future__ import annotations

import io
import math
import random
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from gateway import sky
from gateway.tap import adql
from gateway.tap.catalog import Catalog, ColumnMeta
from gateway.tap.votable import UnknownFormat, resolve_types, writer_for

UPLOAD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class QueryError(Exception):
    """A query failed; ``status`` is the HTTP status to answer with (400: the user can fix it)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Limits:
    """Configurable limits of the TAP service (seconds, rows, bytes)."""
    sync_timeout: float = 60.0
    async_timeout: float = 600.0  # default EXECUTIONDURATION of async jobs
    max_async_timeout: float = 3600.0
    maxrec_default: int = 100_000
    maxrec_max: int = 10_000_000
    upload_max_bytes: int = 32 * 1024 * 1024
    upload_max_rows: int = 1_000_000
    #: UPLOAD=name,http://... fetches the table (TAP 1.1 requires it); False: inline uploads only
    http_uploads: bool = True
    upload_fetch_timeout: float = 30.0
    batch_rows: int = 5_000
    #: a sync client that reads nothing for this long is disconnected (its query thread is freed)
    stall_timeout: float = 300.0


@dataclass
class QuerySpec:
    adql: str
    format: Optional[str] = None
    maxrec: Optional[int] = None
    #: table name -> VOTable bytes, or the http(s) URL to fetch it from
    uploads: dict[str, "bytes | str"] = field(default_factory=dict)


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


def parse_maxrec(value, limits: Limits) -> int:
    if value is None or str(value).strip() == "":
        return limits.maxrec_default
    try:
        maxrec = int(str(value).strip())
    except ValueError:
        raise QueryError(f"MAXREC must be a whole number of rows, not {value!r}") from None
    if maxrec < 0:
        raise QueryError("MAXREC must not be negative")
    return min(maxrec, limits.maxrec_max)  # a huge MAXREC is capped at the hard limit (and says OVERFLOW)


# -- uploads -----------------------------------------------------------------------------------------------------

def parse_upload(name: str, data: bytes, limits: Limits) -> tuple[tuple[ColumnMeta, ...], list[tuple]]:
    """A VOTable upload -> (columns, rows). Raises QueryError with what is wrong."""
    from astropy.io.votable import parse_single_table

    if not UPLOAD_NAME.match(name):
        raise QueryError(f"upload table name {name!r} is not valid: use letters, digits and _ (starting with a letter)")
    if len(data) > limits.upload_max_bytes:
        raise QueryError(f"upload {name!r} is {len(data)} bytes; the limit is {limits.upload_max_bytes}")
    try:
        table = parse_single_table(io.BytesIO(data), verify="ignore")
    except Exception as e:  # noqa: BLE001 - astropy raises many kinds for bad VOTables
        raise QueryError(f"upload {name!r} is not a readable VOTable: {e}") from None
    array = table.array
    if len(array) > limits.upload_max_rows:
        raise QueryError(f"upload {name!r} has {len(array)} rows; the limit is {limits.upload_max_rows}")
    columns = []
    seen = set()
    for f in table.fields:
        col_name = (f.name or f.ID or "").lower()
        if not UPLOAD_NAME.match(col_name) or col_name in seen:
            raise QueryError(f"upload {name!r}: column name {f.name!r} is not a valid, unique ADQL name")
        seen.add(col_name)
        kind = array.dtype[f.ID or f.name].kind if (f.ID or f.name) in array.dtype.names else "O"
        if f.datatype in ("char", "unicodeChar"):
            columns.append(ColumnMeta(col_name, "char", "*", f.xtype, f.unit and str(f.unit), f.ucd))
        elif f.arraysize not in (None, "1") or kind not in "fiub":
            raise QueryError(f"upload {name!r}: column {f.name!r} ({f.datatype}[{f.arraysize}]) is an array; "
                             "only scalar numbers and strings can be uploaded")
        else:  # numbers keep their VOTable type; booleans and bytes become short
            datatype = f.datatype if f.datatype in ("short", "int", "long", "float", "double") else (
                "double" if kind == "f" else "short" if f.datatype in ("boolean", "unsignedByte") else "long")
            columns.append(ColumnMeta(col_name, datatype, None, None, f.unit and str(f.unit), f.ucd))
    rows = []
    for record in array.tolist():  # masked values come out as None
        row = []
        for c, v in zip(columns, record):
            if v is None:
                pass
            elif c.datatype == "char":
                v = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            elif c.datatype in ("double", "float"):
                v = float(v)
                v = None if math.isnan(v) else v
            else:
                v = int(v)
            row.append(v)
        rows.append(tuple(row))
    return tuple(columns), rows


_SQL_TYPES = {"sqlite": {"char": "TEXT", "double": "REAL", "float": "REAL", "long": "INTEGER", "int": "INTEGER",
                         "short": "INTEGER"},
              "postgresql": {"char": "text", "double": "double precision", "float": "real", "long": "bigint",
                             "int": "integer", "short": "smallint"}}


def fetch_upload(name: str, url: str, limits: "Limits") -> bytes:
    """An upload given by URL (TAP upload-http): fetched here with a time and size limit."""
    import urllib.request

    if not limits.http_uploads:
        raise QueryError(f"UPLOAD {name}: uploads by URL are switched off here; send the table inline")
    try:
        with urllib.request.urlopen(url, timeout=limits.upload_fetch_timeout) as response:
            data = response.read(limits.upload_max_bytes + 1)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is the user's URL
        raise QueryError(f"UPLOAD {name}: cannot fetch {url}: {e}") from None
    if len(data) > limits.upload_max_bytes:
        raise QueryError(f"UPLOAD {name}: {url} is larger than the limit of {limits.upload_max_bytes} bytes")
    return data


def _create_uploads(conn, backend: str, uploads: dict[str, tuple]) -> None:
    types = _SQL_TYPES[backend]
    if backend == "sqlite":
        conn.execute("ATTACH DATABASE ':memory:' AS tap_upload")
        conn.execute("PRAGMA query_only=0")  # only the in-memory tap_upload schema is writable; gateway is mode=ro
        try:
            for name, (columns, rows) in uploads.items():
                cols = ", ".join(f'"{c.name}" {types[c.datatype]}' for c in columns)
                conn.execute(f'CREATE TABLE tap_upload."{name}" ({cols})')
                marks = ", ".join("?" for _ in columns)
                conn.executemany(f'INSERT INTO tap_upload."{name}" VALUES ({marks})', rows)
        finally:
            conn.execute("PRAGMA query_only=1")
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION READ WRITE")  # the connection defaults to read-only; temp tables only here
        for name, (columns, rows) in uploads.items():
            cols = ", ".join(f'"{c.name}" {types[c.datatype]}' for c in columns)
            conn.execute(f'CREATE TEMP TABLE "tap_upload_{name}" ({cols})')
            with conn.cursor().copy(f'COPY "tap_upload_{name}" FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(f'ANALYZE "tap_upload_{name}"')  # row counts, so a cross-match plans an index join


# -- SQLite functions the translator emits beyond those of gateway.store.db ----------------------------------------

def _truncate(x, n=0):
    if x is None or n is None:
        return None
    factor = 10.0 ** int(n)
    return math.trunc(x * factor) / factor


def _cot(x):
    if x is None:
        return None
    t = math.tan(x)
    return None if t == 0 else 1.0 / t


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("tap_in_polygon", -1, sky.in_polygon, deterministic=True)
    conn.create_function("tap_truncate", 1, _truncate, deterministic=True)
    conn.create_function("tap_truncate", 2, _truncate, deterministic=True)
    conn.create_function("tap_rand", 0, random.random)
    conn.create_function("tap_cot", 1, _cot, deterministic=True)
    conn.create_function("ceil", 1, lambda x: None if x is None else math.ceil(x), deterministic=True)
    conn.create_function("ln", 1, lambda x: None if x is None or x <= 0 else math.log(x), deterministic=True)


# -- TAP_SCHEMA as CTEs --------------------------------------------------------------------------------------------

def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def tap_schema_cte(catalog: Catalog, names: list[str], backend: str) -> str:
    if not names:
        return ""
    rows = catalog.tap_schema_rows()
    metas = {t.name: t for t in catalog.tables.values() if t.schema == "tap_schema"}
    parts = []
    for name in names:
        meta = metas[name]
        cols = ", ".join(f'"{c.name}"' for c in meta.columns)
        values = []
        for i, row in enumerate(rows[name]):
            if i == 0 and backend == "postgresql":  # give PostgreSQL the column types (NULLs have none)
                cells = [f"CAST({_literal(v)} AS {'integer' if c.datatype == 'int' else 'text'})"
                         for v, c in zip(row, meta.columns)]
            else:
                cells = [_literal(v) for v in row]
            values.append("(" + ", ".join(cells) + ")")
        if not values:  # an empty table (e.g. no foreign keys): a VALUES row that matches nothing
            values = ["(" + ", ".join("NULL" for _ in meta.columns) + ")"]
            body = f"SELECT * FROM (VALUES {values[0]}) AS empty_values WHERE 1 = 0"
        else:
            body = "VALUES " + ", ".join(values)
        parts.append(f'"tap_schema_{name}"({cols}) AS ({body})')
    return "WITH " + ", ".join(parts) + " "


# -- the run -------------------------------------------------------------------------------------------------------

class Runner:
    """Runs queries against ``database`` (a gateway.store.db.Database) for the sync and async paths."""

    def __init__(self, database, catalog: Optional[Catalog] = None, limits: Optional[Limits] = None):
        self.database = database
        self.catalog = catalog or Catalog.default()
        self.limits = limits or Limits()

    def parse_maxrec(self, value) -> int:
        return parse_maxrec(value, self.limits)

    def run(self, spec: QuerySpec, sink, cancel: Cancel, timeout: float) -> int:
        """Run ``spec`` to ``sink``; returns the row count. Raises QueryError for anything that happens before
        ``sink.start`` (the caller answers with an error document)."""
        try:
            writer = writer_for(spec.format)
        except UnknownFormat as e:
            raise QueryError(str(e)) from None
        maxrec = spec.maxrec if spec.maxrec is not None else self.limits.maxrec_default
        uploads = {}
        for name, data in spec.uploads.items():
            if isinstance(data, str):
                data = fetch_upload(name, data, self.limits)
            uploads[name.lower()] = parse_upload(name, data, self.limits)
        catalog = self.catalog.with_uploads({n: cols for n, (cols, _) in uploads.items()}) if uploads else self.catalog
        backend = self.database.backend
        try:
            translation = adql.translate(spec.adql, backend, catalog, maxrec)
        except adql.AdqlError as e:
            raise QueryError(str(e)) from None
        sql = tap_schema_cte(catalog, translation.tap_schema, backend) + translation.sql
        deadline = time.monotonic() + timeout
        try:
            conn = self._connect(timeout)
        except Exception as e:  # noqa: BLE001 - e.g. PostgreSQL down
            raise QueryError(f"the alert DB is not available: {e}", status=503) from None
        try:
            cancel.bind(conn.interrupt if backend == "sqlite" else conn.cancel)
            if uploads:
                _create_uploads(conn, backend, uploads)
            if backend == "postgresql":
                with conn.transaction():
                    cursor = conn.cursor(name="tap_result")  # server-side: rows arrive batch by batch
                    count = self._stream(cursor, sql, translation, writer, sink, maxrec, deadline, timeout, cancel)
            else:
                cursor = conn.cursor()
                count = self._stream(cursor, sql, translation, writer, sink, maxrec, deadline, timeout, cancel)
            return count
        except QueryError:
            raise
        except Exception as e:  # noqa: BLE001 - classified into a message a person can act on
            raise QueryError(*self._explain(e, cancel, timeout)) from None
        finally:
            cancel.bind(None)
            self._release(conn)

    # -- connections: a new one per query on both backends. (A pool of PostgreSQL connections saved ~6 ms a
    # query, but q3c keeps per-backend static caches, and once in many runs a pooled backend answered a polygon
    # query wrongly; a fresh backend per query never did.)

    def _connect(self, timeout: float):
        conn = self.database.reader(timeout)
        if self.database.backend == "sqlite":
            register_sqlite_functions(conn)
        else:
            # q3c plans carry huge cost estimates, which make PostgreSQL JIT-compile small queries (~0.1 s)
            conn.execute("SET jit = off")
        return conn

    @staticmethod
    def _release(conn) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def _stream(self, cursor, sql, translation, writer, sink, maxrec, deadline, timeout, cancel) -> int:
        batch_rows = self.limits.batch_rows
        cursor.execute(sql)
        first = cursor.fetchmany(min(batch_rows, maxrec + 1))
        columns = translation.columns
        if cursor.description is not None and len(cursor.description) != len(columns):
            raise QueryError(f"internal error: {len(cursor.description)} result columns, expected {len(columns)}",
                             status=500)
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
                batch = cursor.fetchmany(batch_rows)
            if cancel.cancelled:
                sink.write(writer.footer(False, "the query was aborted"))
            else:
                sink.write(writer.footer(overflow))
        except Exception as e:  # noqa: BLE001 - the header is out: report in the document
            message, _ = self._explain(e, cancel, timeout)
            sink.write(writer.footer(False, message))
        sink.finish()
        return count

    def _explain(self, e: Exception, cancel: Cancel, timeout: float) -> tuple[str, int]:
        text = str(e).strip()
        kind = type(e).__name__
        if cancel.cancelled:
            return "the query was aborted", 400
        if isinstance(e, TimeoutError) or kind == "QueryCanceled" or text == "interrupted":
            return (f"the query ran longer than its time limit of {timeout:g} s and was stopped; narrow it "
                    "(a cone, TOP, an indexed column such as mjd) or run it as an async job with a longer "
                    "EXECUTIONDURATION"), 400
        if isinstance(e, sqlite3.Error) or type(e).__module__.startswith("psycopg"):
            return f"the database could not run this query: {text.splitlines()[0] if text else kind}", 400
        return f"internal error while running the query: {kind}: {text}", 500
