"""The PostgreSQL backend (psycopg 3): tables in the schema ``gateway``, a q3c index per positional table, COPY
into temporary staging tables for bulk writes, ``FOR UPDATE ... SKIP LOCKED`` so that gateway processes sharing
one DB never claim the same outbox row.

q3c rather than pgsphere: Debian's pgsphere 1.1.1 for PostgreSQL 15 fails at CREATE EXTENSION ("commutator
operator @> is already the commutator of operator <@"), and q3c's cone search is the faster of the two.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Optional

from gateway.store import writers
from gateway.store.backend import StoreError, insert_select_upsert
from gateway.store.packs import CutoutPacks, read_located
from gateway.store.schema import ALERT_TABLES, SCHEMA, Table

_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "DOUBLE": "double precision",
          "REAL": "real", "VARCHAR": "text", "TIMESTAMP": "timestamp", "BLOB": "bytea"}


#: the advisory lock key DDL is serialized on (any fixed bigint; this one spells "vogw" in ASCII)
DDL_LOCK = 0x766F6777


def _one_line(error: Exception) -> str:
    """A server's (multi-line) message as one line for a person."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _safe(conninfo: str) -> str:
    """The conninfo without a password, quoted, for messages."""
    return repr(re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", conninfo))


class PostgresBackend:
    """``conninfo``: a PostgreSQL URL or conninfo string; ``cutout_dir``: keep cutouts in pack files there (a
    directory every gateway process sharing the DB reaches) rather than in the DB."""

    name = "postgresql"
    placeholder = "%s"
    least, greatest = "least", "greatest"

    def __init__(self, conninfo: str, cutout_dir: str = ""):
        self.conninfo = conninfo
        self.packs = CutoutPacks(cutout_dir) if cutout_dir else None

    def __str__(self) -> str:
        return self.name

    # -- connections ------------------------------------------------------------------------------------------

    def connect_writer(self):
        conn = self.connect()
        try:
            with conn.transaction():
                for statement in self.ddl(ALERT_TABLES):
                    conn.execute(statement)
        except Exception as e:
            conn.close()
            if "q3c" in str(e) and ("not available" in str(e) or "control file" in str(e)):
                raise StoreError(f"PostgreSQL at {_safe(self.conninfo)} has no q3c extension, which the alert DB's "
                                 "sky index needs: install it on the server (Debian: apt-get install "
                                 "postgresql-15-q3c)") from e
            raise StoreError(f"cannot create the alert DB schema in {_safe(self.conninfo)}: {_one_line(e)}") from e
        return conn

    def connect_reader(self, timeout: Optional[float] = None):
        return self.connect(read_only=True, timeout=timeout)

    def connect(self, read_only: bool = False, timeout: Optional[float] = None):
        """A connection with ``gateway`` first on the search path; ``timeout`` becomes its statement_timeout."""
        # psycopg is imported here: it is needed only by PostgreSQL deployments, SQLite ones need not install it
        import psycopg

        options = [f"-c search_path={SCHEMA},public"]
        if read_only:
            options.append("-c default_transaction_read_only=on")
        if timeout is not None:
            options.append(f"-c statement_timeout={int(timeout * 1000)}")
        try:
            return psycopg.connect(self.conninfo, options=" ".join(options), autocommit=read_only)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL {_safe(self.conninfo)}: {_one_line(e)}") from e

    @staticmethod
    def transaction(conn):
        return conn.transaction()

    @staticmethod
    def interrupt(conn) -> None:
        conn.cancel()

    # -- SQL --------------------------------------------------------------------------------------------------

    @staticmethod
    def table(name: str) -> str:
        return f"{SCHEMA}.{name}"

    upsert = staticmethod(insert_select_upsert)

    @staticmethod
    def cone(table: Table, ra: float, dec: float, radius: float) -> tuple[str, tuple]:
        ra_column, dec_column = table.position
        return f"q3c_radial_query({ra_column}, {dec_column}, %s, %s, %s)", (ra, dec, radius)

    @staticmethod
    def row_lock(alias: str) -> str:
        return f" FOR UPDATE OF {alias} SKIP LOCKED"

    @staticmethod
    def ddl(tables: Iterable[Table], schema: str = SCHEMA) -> list[str]:
        """CREATE statements in ``schema``: tables, plain indexes, and a q3c index on ``q3c_ang2ipix(ra, dec)``
        per positional table, which ``q3c_radial_query``/``q3c_poly_query`` use."""
        tables = list(tables)
        # gateway processes sharing one DB start together (scale-out): "IF NOT EXISTS" is not safe against a
        # concurrent CREATE, so the DDL transaction first takes a lock that the others wait for
        out = [f"SELECT pg_advisory_xact_lock({DDL_LOCK})"]
        if any(t.position for t in tables):
            out.append("CREATE EXTENSION IF NOT EXISTS q3c")
        out.append(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for t in tables:
            cols = [_column(c) for c in t.columns]
            cols.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
            out.append(f"CREATE TABLE IF NOT EXISTS {schema}.{t.name} ({', '.join(cols)})")
            out += [f"ALTER TABLE {schema}.{t.name} ALTER COLUMN {c.name} SET COMPRESSION lz4"
                    for c in t.columns if c.compressed]
            # FITS stamps hardly compress (float noise; ZTF's are gzipped already): kept out of line, as they are
            out += [f"ALTER TABLE {schema}.{t.name} ALTER COLUMN {c.name} SET STORAGE EXTERNAL"
                    for c in t.columns if c.datatype == "BLOB" and not c.compressed]
            out += [f"CREATE INDEX IF NOT EXISTS {name} ON {schema}.{t.name} ({columns})"
                    for name, columns in t.index_definitions()]
            if t.position:
                ra, dec = t.position
                out.append(f"CREATE INDEX IF NOT EXISTS {t.name}_sky ON {schema}.{t.name} (q3c_ang2ipix({ra}, {dec}))")
        return out

    # -- bulk writes --------------------------------------------------------------------------------------------

    def read_cutout(self, conn, alert_id: int, kind: str) -> Optional[bytes]:
        return read_located(conn, self.packs, "%s", alert_id, kind)

    def bulk_writer(self) -> PostgresBulkWriter:
        return PostgresBulkWriter(self.packs)


def _column(c) -> str:
    sql_type = "bigserial" if c.autoincrement else _TYPES[c.datatype]
    return (f"{c.name} {sql_type}" + ("" if c.nullable else " NOT NULL") + (" UNIQUE" if c.unique else "")
            + (f" DEFAULT {c.default}" if c.default is not None else ""))


# the count grows by what each object's INSERT ... RETURNING said was new, instead of recounting its detections
_OBJECT_UPSERT = writers.object_upsert(PostgresBackend, f"{SCHEMA}.diaobject", "SELECT * FROM stage_diaobject",
                                       f"{SCHEMA}.diaobject.ndetections + excluded.ndetections")


#: column types of the tables COPY takes in binary: floats cross as they are, not as decimal text (a Rubin alert's
#: 31 diasource rows cost a quarter less); the tables with timestamps go as text, which is what the rows hold
_BINARY_COPY = {t.name: [_TYPES[c.datatype] for c in t.columns] for t in ALERT_TABLES
                if all(c.datatype != "TIMESTAMP" for c in t.columns)}


#: tables of large rows (VOEvent text, FITS bytes) are written one INSERT a row, pipelined by executemany, bytes in
#: binary: staging copied each row twice, which cost more than the rest of the alert's rows together
_DIRECT = {t.name: f"INSERT INTO {SCHEMA}.{t.name} VALUES "
                   f"({', '.join('%b' if c.datatype == 'BLOB' else '%s' for c in t.columns)}) ON CONFLICT DO NOTHING"
           for t in ALERT_TABLES if t.name in ("voevent", "cutout", "cutout_pack")}


class PostgresBulkWriter:
    """COPY into temporary staging tables (binary where no timestamps), then one set-based INSERT ... SELECT ... ON
    CONFLICT per table; VOEvents and cutouts (:data:`_DIRECT`) go straight in. The object upsert adds the detections
    each object's INSERT ... RETURNING said were new (no recount). With ``packs``, cutouts go there and their
    locations to ``cutout_pack``."""

    def __init__(self, packs: Optional[CutoutPacks] = None):
        self.packs = packs
        self._staged: set[int] = set()  # connections whose staging tables exist

    def forget(self) -> None:
        self._staged.clear()  # temporary tables created in a rolled-back transaction are gone too

    def write(self, conn, tables: dict[str, list[tuple]], objects: list[tuple]) -> None:
        if id(conn) not in self._staged:
            self._stage(conn, tables)
        with conn.cursor() as cursor:
            new_per_object: Counter = Counter()
            for name, batch in tables.items():
                if not batch:
                    continue
                if name == "cutout" and self.packs is not None:
                    name, batch = "cutout_pack", self.packs.append(batch)
                if name in _DIRECT:
                    cursor.executemany(_DIRECT[name], batch)
                    continue
                binary = _BINARY_COPY.get(name)
                with cursor.copy(f"COPY stage_{name} FROM STDIN" + (" (FORMAT BINARY)" if binary else "")) as copy:
                    if binary:
                        copy.set_types(binary)
                    for row in batch:
                        copy.write_row(row)
                insert = f"INSERT INTO {SCHEMA}.{name} SELECT * FROM stage_{name} ON CONFLICT DO NOTHING"
                if name == "diasource":
                    cursor.execute(insert + " RETURNING objectid")
                    new_per_object.update(objectid for (objectid,) in cursor.fetchall())
                else:
                    cursor.execute(insert)
                # emptied now, not at commit: other writes may share this transaction (group commit)
                cursor.execute(f"TRUNCATE stage_{name}")
            if objects:
                with cursor.copy("COPY stage_diaobject FROM STDIN") as copy:
                    for row in objects:
                        copy.write_row((*row, new_per_object[row[0]]))
                cursor.execute(_OBJECT_UPSERT)
                cursor.execute("TRUNCATE stage_diaobject")

    def _stage(self, conn, tables) -> None:
        # staging copies of 6 kB VOEvents compressed with the default pglz cost more than all the rest
        conn.execute("SET default_toast_compression = 'lz4'")
        for name in tables:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{name} (LIKE {SCHEMA}.{name}) ON COMMIT DELETE ROWS")
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_diaobject ON COMMIT DELETE ROWS AS "
                     f"SELECT {', '.join(writers.OBJECT_COLUMNS)}, ndetections FROM {SCHEMA}.diaobject WITH NO DATA")
        self._staged.add(id(conn))
