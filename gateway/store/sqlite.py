"""The SQLite backend: a file (WAL) or a shared in-memory DB, an R*Tree per positional table, the sky and maths
functions the TAP translator emits registered on every read connection.

The writer connection holds the tables in its main schema; read connections are opened on ``:memory:`` with the
DB attached read-only as ``gateway``, so the same qualified names (``gateway.diasource``) work as on PostgreSQL.
"""

from __future__ import annotations

import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from gateway import sky
from gateway.store import writers
from gateway.store.backend import StoreError, insert_select_upsert
from gateway.store.packs import CutoutPacks, read_located
from gateway.store.schema import ALERT_TABLES, CUTOUT_PACK, SCHEMA, Table

_TYPES = {"BIGINT": "INTEGER", "INTEGER": "INTEGER", "SMALLINT": "INTEGER", "DOUBLE": "REAL", "REAL": "REAL",
          "VARCHAR": "TEXT", "TIMESTAMP": "TEXT", "BLOB": "BLOB"}


class SQLiteBackend:
    """``path``: the DB file, or ":memory:" (tests: one DB shared by the writer and the readers of this object);
    ``cutout_dir``: the cutout packs' directory ("": ``PATH.cutouts`` beside a file, in the DB when in memory)."""

    name = "sqlite"
    placeholder = "?"
    least, greatest = "min", "max"  # SQLite's scalar min()/max() of two arguments

    def __init__(self, path: str, cutout_dir: str = ""):
        self.path = path
        # a shared in-memory DB for tests: readers and the writer see the same tables
        self.memory_uri = f"file:gateway-{id(self)}?mode=memory&cache=shared" if path == ":memory:" else None
        #: cutouts in pack files beside a DB file (in the DB when it is in memory)
        directory = cutout_dir or ("" if self.memory_uri else f"{path}.cutouts")
        self.packs = CutoutPacks(directory) if directory else None

    def __str__(self) -> str:
        return self.name

    # -- connections ------------------------------------------------------------------------------------------

    def connect_writer(self) -> sqlite3.Connection:
        try:
            if self.memory_uri:
                conn = sqlite3.connect(self.memory_uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                conn = _file_writer(self.path)
            for statement in self.ddl(ALERT_TABLES):
                conn.execute(statement)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite alert DB {self.path!r}: {e}") from e
        return conn

    def connect_reader(self, timeout: Optional[float] = None) -> sqlite3.Connection:
        """Statements running longer than ``timeout`` raise ``sqlite3.OperationalError: interrupted``."""
        target = self.memory_uri or f"{Path(self.path).resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(":memory:", uri=True, check_same_thread=False, isolation_level=None)
        conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (target,))
        conn.execute("PRAGMA query_only=1")
        register_functions(conn)
        if timeout is not None:
            set_deadline(conn, timeout)
        return conn

    @contextmanager
    def transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE: take the write lock at BEGIN, not at the first write, so a busy DB fails before any work
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def interrupt(conn: sqlite3.Connection) -> None:
        conn.interrupt()

    # -- SQL --------------------------------------------------------------------------------------------------

    @staticmethod
    def table(name: str) -> str:
        return name  # the writer has the tables in its main schema

    @staticmethod
    def upsert(table: str, columns: Sequence[str], select: str, key: Sequence[str], updates: str) -> str:
        # "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join in the SELECT
        return insert_select_upsert(table, columns, f"{select} WHERE true", key, updates)

    @staticmethod
    def cone(table: Table, ra: float, dec: float, radius: float) -> tuple[str, tuple]:
        """The zone index seeks each declination zone's RA interval (two across RA 0), then ``sky_distance``
        checks exactly."""
        ra_column, dec_column = table.position
        lo, hi = dec - radius - sky.BOX_MARGIN, dec + radius + sky.BOX_MARGIN
        band = sky.zones(lo, hi)
        in_zones = (f"{zone_sql(dec_column)} IN ({', '.join(map(str, band))})" if len(band) <= MAX_ZONE_LIST
                    else f"{zone_sql(dec_column)} BETWEEN {band[0]} AND {band[-1]}")
        boxes, params = [], []
        for ra_lo, ra_hi in sky.ra_ranges(ra, dec, radius):
            boxes.append(f"{in_zones} AND {ra_column} BETWEEN ? AND ?")
            params += [ra_lo, ra_hi]
        condition = (f"(({') OR ('.join(boxes)})) AND {dec_column} BETWEEN ? AND ? "
                     f"AND sky_distance({ra_column}, {dec_column}, ?, ?) <= ?")
        return condition, (*params, lo, hi, ra, dec, radius)

    @staticmethod
    def row_lock(alias: str) -> str:
        return ""  # one writer connection: claims are serialised already

    @staticmethod
    def ddl(tables: Iterable[Table]) -> list[str]:
        """CREATE statements: tables, plain indexes, and a zone index ``<table>_zones`` per positional table.

        The zone index is on (declination zone, ra): a cone is a seek per zone of its RA interval. It replaced an
        R*Tree kept by triggers, which cost half of each alert's write (31 positions per Rubin alert); databases
        made with the R*Tree lose it here.
        """
        out = []
        for t in tables:
            # a single INTEGER primary key becomes the rowid: joins key on it for free
            rowid = len(t.primary_key) == 1 and _TYPES[t.column(t.primary_key[0]).datatype] == "INTEGER"
            cols = [_column(c, rowid and c.name == t.primary_key[0]) for c in t.columns]
            if not rowid:
                cols.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
            out.append(f"CREATE TABLE IF NOT EXISTS {t.name} ({', '.join(cols)})")
            out += [f"CREATE INDEX IF NOT EXISTS {name} ON {t.name} ({columns})"
                    for name, columns in t.index_definitions()]
            if t.position:
                out.extend(_sky_index(t))
        return out

    # -- bulk writes --------------------------------------------------------------------------------------------

    def bulk_writer(self) -> SQLiteBulkWriter:
        return SQLiteBulkWriter(self.packs)

    def read_cutout(self, conn, alert_id: int, kind: str) -> Optional[bytes]:
        return read_located(conn, self.packs, "?", alert_id, kind)


_INSERTS = {name: f"INSERT OR IGNORE INTO {name} VALUES ({', '.join('?' * len(t.columns))})"
            for name, t in writers.IMMUTABLE}
_PACKED_INSERT = f"INSERT OR IGNORE INTO cutout_pack VALUES ({', '.join('?' * len(CUTOUT_PACK.columns))})"
# each object's detections are counted in SQL (an indexed count per object, cheap in-process)
_OBJECT_UPSERT = writers.object_upsert(
    SQLiteBackend, "diaobject",
    f"SELECT {', '.join('?' * len(writers.OBJECT_COLUMNS))}, (SELECT count(*) FROM diasource WHERE objectid = ?)",
    "excluded.ndetections")


class SQLiteBulkWriter:
    """``INSERT OR IGNORE`` per immutable table, then the object upsert counting each object's detections;
    cutouts go to ``packs`` (when given) and their locations to ``cutout_pack``."""

    def __init__(self, packs: Optional[CutoutPacks] = None):
        self.packs = packs

    def write(self, conn, tables: dict[str, list[tuple]], objects: list[tuple]) -> None:
        for name, batch in tables.items():
            if batch and name == "cutout" and self.packs is not None:
                conn.executemany(_PACKED_INSERT, self.packs.append(batch))
            elif batch and name == "cutout_pack":
                conn.executemany(_PACKED_INSERT, batch)
            elif batch:
                conn.executemany(_INSERTS[name], batch)
        if objects:
            conn.executemany(_OBJECT_UPSERT, [(*row, row[0]) for row in objects])

    def forget(self) -> None:
        pass  # nothing kept on the connection


def _column(c, rowid: bool) -> str:
    if rowid:
        return f"{c.name} INTEGER PRIMARY KEY" + (" AUTOINCREMENT" if c.autoincrement else "")
    return (f"{c.name} {_TYPES[c.datatype]}" + ("" if c.nullable else " NOT NULL")
            + (" UNIQUE" if c.unique else "") + (f" DEFAULT {c.default}" if c.default is not None else ""))


def _sky_index(t: Table) -> list[str]:
    ra, dec = t.position
    legacy = [f"DROP TRIGGER IF EXISTS {t.name}_sky_{event}" for event in ("insert", "update", "delete")]
    return [*legacy, f"DROP TABLE IF EXISTS {t.name}_sky",
            f"CREATE INDEX IF NOT EXISTS {t.name}_zones ON {t.name} ({zone_sql(dec)}, {ra})"]


#: zones listed one by one up to this many (a seek each); a wider band is one range of zones
MAX_ZONE_LIST = 64


def zone_sql(dec_column: str) -> str:
    """SQL for the declination zone of ``dec_column``, exactly as the zone index has it (SQLite uses an index on an
    expression only for the same expression); :func:`gateway.sky.zone` in Python."""
    return f"CAST(({dec_column} + 90) * {sky.ZONES_PER_DEGREE} AS INTEGER)"


def _file_writer(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes, fast commits
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MB (default 2 MB): a batch of 6 kB VOEvents and indexes fits
    return conn


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL the TAP translator emits for DISTANCE, exact cone checks and ADQL maths, on SQLite."""
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


def set_deadline(conn: sqlite3.Connection, timeout: Optional[float]) -> None:
    """Interrupt statements on ``conn`` once ``timeout`` seconds from now have passed (None: no limit)."""
    if timeout is None:
        conn.set_progress_handler(None, 0)
        return
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
