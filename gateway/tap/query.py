"""Running one TAP query, blocking, in a worker thread: uploads -> translation -> cursor -> writer -> sink.

The caller (sync resource or async job) owns the thread and the sink. A sink receives ``start(content_type)``
once the first batch is in hand (so every error up to then can still become a clean HTTP 400 error document),
then ``write(bytes)`` per batch (a sink may block there: that is the back-pressure), then ``finish()``.
Errors after ``start`` go into the document's footer (VOTable: an ERROR INFO after the table).
"""

from __future__ import annotations

import io
import math
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Optional

from gateway.tap.adql import AdqlError, dialect_for, translate
from gateway.tap.catalog import Catalog, ColumnMeta
from gateway.tap.settings import TapSettings
from gateway.tap.votable import UnknownFormat, resolve_types, writer_for

UPLOAD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: seconds an UPLOAD given by URL may take to fetch
UPLOAD_FETCH_TIMEOUT = 30.0
#: rows fetched from the cursor and written at a time
BATCH_ROWS = 5_000


class QueryError(Exception):
    """A query failed; ``status`` is the HTTP status to answer with (400: the user can fix it)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


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


# -- uploads -----------------------------------------------------------------------------------------------------

def _declares_a_dtd(data: bytes) -> bool:
    """Whether an uploaded document declares a DTD (internal entities expand: billion laughs), in UTF-8 or UTF-16."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data.decode("utf-16", "replace").encode("utf-8")
    return b"<!DOCTYPE" in data or b"<!ENTITY" in data


def parse_upload(name: str, data: bytes, settings: TapSettings) -> tuple[tuple[ColumnMeta, ...], list[tuple]]:
    """A VOTable upload -> (columns, rows). Raises QueryError with what is wrong."""
    from astropy.io.votable import parse_single_table  # astropy is slow to import; only uploads need it

    if not UPLOAD_NAME.match(name):
        raise QueryError(f"upload table name {name!r} is not valid: use letters, digits and _ (starting with a letter)")
    if len(data) > settings.upload_max_bytes:
        raise QueryError(f"upload {name!r} is {len(data)} bytes; the limit is {settings.upload_max_bytes}")
    if _declares_a_dtd(data):
        raise QueryError(f"upload {name!r} has a DOCTYPE: refused (no DTDs or entity declarations are accepted, as on "
                         "the VTP side)")
    try:
        table = parse_single_table(io.BytesIO(data), verify="ignore")
    except Exception as e:  # noqa: BLE001 - astropy raises many kinds for bad VOTables
        raise QueryError(f"upload {name!r} is not a readable VOTable: {e}") from None
    array = table.array
    if len(array) > settings.upload_max_rows:
        raise QueryError(f"upload {name!r} has {len(array)} rows; the limit is {settings.upload_max_rows}")
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


def fetch_upload(name: str, url: str, settings: TapSettings) -> bytes:
    """An upload given by URL (TAP upload-http): fetched here with a time and size limit."""
    if not settings.http_uploads:
        raise QueryError(f"UPLOAD {name}: uploads by URL are switched off here; send the table inline")
    try:
        with urllib.request.urlopen(url, timeout=UPLOAD_FETCH_TIMEOUT) as response:
            data = response.read(settings.upload_max_bytes + 1)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is the user's URL
        raise QueryError(f"UPLOAD {name}: cannot fetch {url}: {e}") from None
    if len(data) > settings.upload_max_bytes:
        raise QueryError(f"UPLOAD {name}: {url} is larger than the limit of {settings.upload_max_bytes} bytes")
    return data


# -- the run -------------------------------------------------------------------------------------------------------

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

    def run(self, spec: QuerySpec, sink, cancel: Cancel, timeout: float) -> int:
        """Run ``spec`` to ``sink`` within ``timeout`` s; returns the row count. Raises QueryError for anything that
        happens before ``sink.start`` (the caller answers with an error document)."""
        started, outcome = time.monotonic(), "error"
        try:
            count = self._run(spec, sink, cancel, timeout)
            outcome = "ok"
            return count
        finally:
            for observe in self.observers:
                observe(outcome, time.monotonic() - started)

    def _run(self, spec: QuerySpec, sink, cancel: Cancel, timeout: float) -> int:
        try:
            writer = writer_for(spec.format)
        except UnknownFormat as e:
            raise QueryError(str(e)) from None
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
                return self._stream(cursor, translation, writer, sink, maxrec, deadline, timeout, cancel)
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
        self.dialect.prepare(conn)
        return conn

    @staticmethod
    def _release(conn) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def _stream(self, cursor, translation, writer, sink, maxrec, deadline, timeout, cancel) -> int:
        cursor.execute(translation.sql)
        first = cursor.fetchmany(min(BATCH_ROWS, maxrec + 1))
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
                batch = cursor.fetchmany(BATCH_ROWS)
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
        if isinstance(e, TimeoutError) or self.dialect.is_time_limit(e):
            return (f"the query ran longer than its time limit of {timeout:g} s and was stopped; narrow it "
                    "(a cone, TOP, an indexed column such as mjd) or run it as an async job with a longer "
                    "EXECUTIONDURATION"), 400
        if self.dialect.is_database_error(e):
            return f"the database could not run this query: {text.splitlines()[0] if text else kind}", 400
        return f"internal error while running the query: {kind}: {text}", 500
