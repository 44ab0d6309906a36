"""PostgreSQL with q3c: cones are ``q3c_radial_query`` (``q3c_join`` when the centre comes from another table, as in
a cross-match), polygons ``q3c_poly_query``, distances ``q3c_dist``; uploads are temporary tables filled by COPY;
results stream from a server-side cursor; ``conn.cancel()`` stops a query.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

from sqlglot import exp

from gateway.tap.adql.dialect import SqlDialect
from gateway.tap.adql.geometry import Circle, Point, Polygon, call, constant_value, number

#: VOTable datatype of an uploaded column -> PostgreSQL column type
UPLOAD_TYPES = {"char": "text", "double": "double precision", "float": "real", "long": "bigint", "int": "integer",
                "short": "smallint"}


def _numeric(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("DECIMAL"))


def _double(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("DOUBLE"))


class PostgresDialect(SqlDialect):
    kind = "postgresql"
    sqlglot_name = "postgres"
    types_tap_schema_values = True

    # -- translation ---------------------------------------------------------------------------------------

    def distance(self, p: Point, q: Point) -> exp.Expression:
        return call("q3c_dist", p.ra.copy(), p.dec.copy(), q.ra.copy(), q.dec.copy())

    def cone(self, p: Point, c: Circle, sky_table) -> exp.Expression:
        if None in (constant_value(c.ra), constant_value(c.dec)):
            # a cross-match: q3c_join uses the index of its 3rd/4th arguments, once per outer row
            return call("q3c_join", c.ra.copy(), c.dec.copy(), p.ra.copy(), p.dec.copy(), c.radius.copy())
        return call("q3c_radial_query", p.ra.copy(), p.dec.copy(), c.ra.copy(), c.dec.copy(), c.radius.copy())

    def polygon(self, p: Point, poly: Polygon, sky_table) -> exp.Expression:
        array = exp.Array(expressions=[number(v) for vertex in poly.vertices for v in vertex])
        return call("q3c_poly_query", p.ra.copy(), p.dec.copy(), array)

    def truncate(self, value: exp.Expression, decimals: Optional[exp.Expression]) -> exp.Expression:
        if decimals is None:
            return exp.Trunc(this=value)
        return _double(call("TRUNC", _numeric(value), decimals))

    def round(self, node: exp.Round) -> exp.Expression:
        if node.args.get("decimals") is None:
            return node
        return _double(call("ROUND", _numeric(node.this), node.args["decimals"]))

    def mod(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return call("MOD", _numeric(a), _numeric(b))

    def upload_table(self, table: exp.Table) -> None:
        table.set("db", exp.to_identifier("pg_temp", quoted=True))
        table.set("this", exp.to_identifier(f"tap_upload_{table.name}", quoted=True))

    # -- running ------------------------------------------------------------------------------------------

    def prepare(self, conn) -> None:
        # q3c plans carry huge cost estimates, which make PostgreSQL JIT-compile small queries (~0.1 s)
        conn.execute("SET jit = off")

    def interrupter(self, conn):
        return conn.cancel

    def create_uploads(self, conn, uploads: dict[str, tuple]) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ WRITE")  # the connection defaults to read-only; temp tables only here
            for name, (columns, rows) in uploads.items():
                cols = ", ".join(f'"{c.name}" {UPLOAD_TYPES[c.datatype]}' for c in columns)
                conn.execute(f'CREATE TEMP TABLE "tap_upload_{name}" ({cols})')
                with conn.cursor().copy(f'COPY "tap_upload_{name}" FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.execute(f'ANALYZE "tap_upload_{name}"')  # row counts, so a cross-match plans an index join

    @contextmanager
    def result_cursor(self, conn):
        with conn.transaction():
            yield conn.cursor(name="tap_result")  # server-side: rows arrive batch by batch

    # psycopg is imported by gateway.store.db only when a PostgreSQL DB is opened; errors are told by their class
    # and module names so that SQLite deployments never import it
    def is_time_limit(self, error: Exception) -> bool:
        return type(error).__name__ == "QueryCanceled"

    def is_database_error(self, error: Exception) -> bool:
        return type(error).__module__.startswith("psycopg")


POSTGRESQL = PostgresDialect()
