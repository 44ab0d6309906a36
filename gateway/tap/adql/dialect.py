"""What a backend dialect provides, and the function rewrite every backend shares.

A dialect object (:data:`gateway.tap.adql.sqlite.SQLITE`, :data:`gateway.tap.adql.postgres.POSTGRESQL`) holds
everything that differs between the backends, for the translator (function spellings, DISTANCE and the cone and
polygon predicates, where uploaded tables are, the sqlglot dialect) and for the runner (preparing a connection,
creating uploaded tables, the cursor that streams, how a running query is cancelled, how errors read).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Callable, Optional

from sqlglot import exp

from gateway.tap.adql.geometry import Circle, Point, Polygon, constant_value


class SqlDialect(ABC):
    """One backend's SQL and connections; a subclass per backend."""

    #: Database.kind this dialect is for
    kind: str
    #: sqlglot's name of the dialect the SQL is generated in
    sqlglot_name: str
    #: whether the first VALUES row of a TAP_SCHEMA CTE casts its cells to the column types (else NULL is untyped)
    types_tap_schema_values: bool = False

    # -- translation ---------------------------------------------------------------------------------------

    @abstractmethod
    def distance(self, p: Point, q: Point) -> exp.Expression:
        """The angular distance (deg) between two points."""

    @abstractmethod
    def cone(self, p: Point, c: Circle, sky_table) -> exp.Expression:
        """True where ``p`` lies within ``c``; ``sky_table``: the TableMeta whose sky index ``p`` is, or None."""

    @abstractmethod
    def polygon(self, p: Point, poly: Polygon, sky_table) -> exp.Expression:
        """True where ``p`` lies within ``poly`` (great-circle edges); ``sky_table`` as for :meth:`cone`."""

    @abstractmethod
    def truncate(self, value: exp.Expression, decimals: Optional[exp.Expression]) -> exp.Expression:
        """ADQL TRUNCATE(value[, decimals])."""

    def round(self, node: exp.Round) -> exp.Expression:
        """ADQL ROUND(value[, decimals])."""
        return node

    @abstractmethod
    def mod(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        """ADQL MOD(a, b)."""

    def rand(self, node: exp.Rand) -> exp.Expression:
        return node

    def cot(self, node: exp.Cot) -> exp.Expression:
        return node

    def upload_table(self, table: exp.Table) -> None:
        """Point ``table`` (``tap_upload.<name>``) at where :meth:`create_uploads` put it."""


    def functions(self, tree: exp.Expression) -> exp.Expression:
        """``tree`` with ADQL's functions in this backend's spelling."""
        def transform(node):
            if isinstance(node, exp.Log):
                if node.expression is None:  # ADQL LOG(x) is the natural logarithm (PostgreSQL's LOG is base 10)
                    return exp.Ln(this=node.this)
                if constant_value(node.this) == 10:  # LOG10(x) parses as LOG(10, x)
                    return exp.Anonymous(this="LOG10", expressions=[node.expression])
                return node
            if isinstance(node, exp.Anonymous) and node.name.upper() == "TRUNCATE":
                args = node.expressions
                return self.truncate(args[0], args[1] if len(args) > 1 else None)
            if isinstance(node, exp.Trunc):
                return self.truncate(node.this, node.args.get("decimals"))
            if isinstance(node, exp.Round):
                return self.round(node)
            if isinstance(node, exp.Mod):
                return self.mod(node.this, node.expression)
            if isinstance(node, exp.Concat):  # adjacent string literals: one literal
                return exp.Literal.string("".join(e.this for e in node.expressions))
            if isinstance(node, exp.Rand):
                return self.rand(node)
            if isinstance(node, exp.Cot):
                return self.cot(node)
            return node

        return tree.transform(transform, copy=False)

    # -- running ------------------------------------------------------------------------------------------

    def prepare(self, conn) -> None:
        """Make a new read-only connection ready for translated queries."""

    @abstractmethod
    def interrupter(self, conn) -> Callable[[], None]:
        """A callable that stops the statement running on ``conn``, callable from any thread."""

    @abstractmethod
    def create_uploads(self, conn, uploads: dict[str, tuple]) -> None:
        """Create and fill the tables ``{name: (columns, rows)}`` of TAP_UPLOAD for one query on ``conn``."""

    @abstractmethod
    def result_cursor(self, conn) -> AbstractContextManager:
        """A context giving the cursor a query's result is streamed from."""

    @abstractmethod
    def is_time_limit(self, error: Exception) -> bool:
        """Whether ``error`` is the statement being stopped by its time limit."""

    @abstractmethod
    def is_database_error(self, error: Exception) -> bool:
        """Whether ``error`` comes from the database (a message for the user) rather than from us."""
