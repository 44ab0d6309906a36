"""What the gateway needs of a DB backend, as one small interface, and the store's errors.

:class:`gateway.store.db.Database` picks one backend object from the URL (:func:`backend_for`) and leaves
everything that differs between SQLite and PostgreSQL to it: how to connect, the SQL dialect (placeholder, upsert,
cone search, row locks on claims), the DDL generated from :mod:`gateway.store.schema`, how to cancel a statement,
and the bulk write of a batch of alert rows. Code outside the two backend modules never asks which backend it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager, Iterable, Optional, Protocol, Sequence

from gateway.store.schema import Table

if TYPE_CHECKING:
    from gateway.store.packs import CutoutPacks


class StoreError(Exception):
    """The alert DB could not be opened or written; the message says which and why."""


class DatabaseClosed(StoreError):
    """A write after :meth:`Database.stop`."""


class BulkWriter(Protocol):
    """Writes one batch of alert rows inside the caller's transaction (writer thread only)."""

    def write(self, conn, tables: dict[str, list[tuple]], objects: list[tuple]) -> None:
        """``tables``: new rows of the immutable tables (alert, voevent, diasource, cutout; rows already stored are
        skipped); ``objects``: one merged diaobject row per object (columns ``writers.OBJECT_COLUMNS``), upserted."""

    def forget(self) -> None:
        """The transaction was rolled back: drop whatever state it created on the connection."""


class Backend(Protocol):
    #: "sqlite" or "postgresql": the name other packages key their per-backend code on (``Database.kind``)
    name: str
    #: the DB-API parameter marker: ``?`` or ``%s``
    placeholder: str
    #: SQL names of the two-argument minimum and maximum (for upserts keeping the earliest/latest value)
    least: str
    greatest: str
    #: where cutouts are kept beside the DB (None: in its ``cutout`` table), see :mod:`gateway.store.packs`
    packs: Optional[CutoutPacks]

    def connect_writer(self) -> Any:
        """The one write connection, the alert tables created (raises StoreError with the reason)."""

    def connect_reader(self, timeout: Optional[float] = None) -> Any:
        """A new read-only connection seeing the tables as ``gateway.<table>``; statements running longer than
        ``timeout`` seconds are cancelled."""

    def transaction(self, conn) -> ContextManager[None]:
        """One write transaction on the writer connection: committed on exit, rolled back on an exception."""

    def ddl(self, tables: Iterable[Table]) -> list[str]:
        """CREATE statements (idempotent) for ``tables``, their indexes and sky indexes."""

    def table(self, name: str) -> str:
        """The name of table ``name`` in SQL on the writer connection."""

    def upsert(self, table: str, columns: Sequence[str], select: str, key: Sequence[str], updates: str) -> str:
        """``INSERT INTO table (columns) <select> ON CONFLICT (key) DO UPDATE SET <updates>``; ``select`` has no
        WHERE clause of its own."""

    def cone(self, table: Table, ra: float, dec: float, radius: float) -> tuple[str, tuple]:
        """(condition, parameters) selecting the rows of positional ``table`` (as named on a reader connection)
        within ``radius`` deg of (``ra``, ``dec``), using the sky index."""

    def row_lock(self, alias: str) -> str:
        """The clause ending a claim's SELECT so that concurrent claimers skip each other's rows ('' if the backend
        has a single writer anyway)."""

    def interrupt(self, conn) -> None:
        """Cancel the statement running on ``conn`` (callable from another thread)."""

    def bulk_writer(self) -> BulkWriter:
        """A new writer of alert-row batches, for one :class:`gateway.store.writers.Writer`."""

    def read_cutout(self, conn, alert_id: int, kind: str) -> Optional[bytes]:
        """The bytes of one cutout as shipped (None: there is none), on a reader connection."""


def insert_select_upsert(table: str, columns: Sequence[str], select: str, key: Sequence[str], updates: str) -> str:
    """The upsert both backends spell alike (SQLite once its parser is told where the SELECT ends)."""
    return f"INSERT INTO {table} ({', '.join(columns)}) {select} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


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
