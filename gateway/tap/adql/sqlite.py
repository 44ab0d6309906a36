"""SQLite: the R*Tree ``<table>_sky`` pre-selects, ``sky_distance``/``tap_in_polygon`` decide exactly; uploads go to
an in-memory ``tap_upload`` schema; ``conn.interrupt()`` stops a query.

Cone: ``rowid IN (SELECT id FROM <table>_sky WHERE <bounding box>) AND sky_distance(...) <= r``. The box comes from
:func:`gateway.sky.ra_ranges` for a constant centre, and is computed in SQL (three copies shifted by -360, 0,
+360 deg of RA, so boxes across RA 0 are covered) when the centre comes from another table, as in a cross-match.
"""

from __future__ import annotations

import math
import random
import sqlite3
from contextlib import contextmanager
from typing import Optional

from sqlglot import exp

from gateway import sky
from gateway.sky import BOX_MARGIN, bounding_cap, ra_ranges
from gateway.tap.adql.dialect import SqlDialect
from gateway.tap.adql.geometry import Circle, Point, Polygon, call, constant_value, number

#: VOTable datatype of an uploaded column -> SQLite column type
UPLOAD_TYPES = {"char": "TEXT", "double": "REAL", "float": "REAL", "long": "INTEGER", "int": "INTEGER",
                "short": "INTEGER"}


# -- functions the translator emits beyond those of gateway.store.db ---------------------------------------------

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


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions translated queries call (angles in radians, as SQL has them)."""
    conn.create_function("tap_in_polygon", -1, sky.in_polygon, deterministic=True)
    conn.create_function("tap_truncate", 1, _truncate, deterministic=True)
    conn.create_function("tap_truncate", 2, _truncate, deterministic=True)
    conn.create_function("tap_rand", 0, random.random)
    conn.create_function("tap_cot", 1, _cot, deterministic=True)
    conn.create_function("ceil", 1, lambda x: None if x is None else math.ceil(x), deterministic=True)
    conn.create_function("ln", 1, lambda x: None if x is None or x <= 0 else math.log(x), deterministic=True)


def _sql_ra_half_width(dec: exp.Expression, radius: exp.Expression) -> exp.Expression:
    """SQL for :func:`ra_ranges`' half width (deg): 360 near a pole, else asin(sin r / cos dec), plus a margin."""
    near_pole = exp.GTE(this=exp.Add(this=call("abs", exp.paren(dec.copy())), expression=exp.paren(radius.copy())),
                        expression=exp.Literal.number(89.9))
    ratio = exp.Div(this=call("sin", call("radians", exp.paren(radius.copy()))),
                    expression=call("cos", call("radians", exp.paren(dec.copy()))))
    width = exp.Add(this=call("degrees", call("asin", call("min", exp.Literal.number(1), ratio))),
                    expression=number(BOX_MARGIN))
    return exp.paren(exp.Case(ifs=[exp.If(this=near_pole, true=exp.Literal.number(360))], default=width))


class SqliteDialect(SqlDialect):
    kind = "sqlite"
    sqlglot_name = "sqlite"

    # -- translation ---------------------------------------------------------------------------------------

    def distance(self, p: Point, q: Point) -> exp.Expression:
        return call("sky_distance", p.ra.copy(), p.dec.copy(), q.ra.copy(), q.dec.copy())

    def cone(self, p: Point, c: Circle, sky_table) -> exp.Expression:
        exact = exp.LTE(this=self.distance(p, Point(c.ra, c.dec)), expression=exp.paren(c.radius.copy()))
        if sky_table is None:
            return exact
        return exp.and_(self._rtree(p, sky_table, c.ra, c.dec, c.radius), exact)

    def polygon(self, p: Point, poly: Polygon, sky_table) -> exp.Expression:
        flat = [number(v) for vertex in poly.vertices for v in vertex]
        exact = exp.EQ(this=call("tap_in_polygon", p.ra.copy(), p.dec.copy(), *flat), expression=exp.Literal.number(1))
        if sky_table is None:
            return exact
        (cra, cdec), radius = bounding_cap(poly.vertices)
        return exp.and_(self._rtree(p, sky_table, number(cra), number(cdec), number(radius)), exact)

    def _rtree(self, p: Point, sky_table, cra, cdec, radius) -> exp.Expression:
        """``alias.rowid IN (SELECT id FROM gateway.<table>_sky WHERE <boxes around the cone>)``."""
        ra0, dec0, r = constant_value(cra), constant_value(cdec), constant_value(radius)
        if None in (ra0, dec0, r):
            # e.g. a cross-match, correlated with the outer row: the box is computed in SQL, in three copies
            # shifted by -360, 0, +360 deg of RA so that boxes across RA 0 are covered (each copy an R*Tree probe)
            lo = exp.Sub(this=exp.paren(cdec.copy()), expression=exp.paren(radius.copy()))
            hi = exp.Add(this=exp.paren(cdec.copy()), expression=exp.paren(radius.copy()))
            half = _sql_ra_half_width(cdec, radius)
            boxes = []
            for shift in (-360, 0, 360):
                centre = exp.Add(this=exp.paren(cra.copy()), expression=exp.Literal.number(shift))
                boxes.append((exp.Sub(this=centre, expression=half.copy()),
                              exp.Add(this=centre.copy(), expression=half.copy()), lo, hi))
        else:
            boxes = [(number(a), number(b), number(dec0 - r - BOX_MARGIN), number(dec0 + r + BOX_MARGIN))
                     for a, b in ra_ranges(ra0, dec0, r)]
        selects = []
        sky_index = exp.Table(this=exp.to_identifier(f"{sky_table.name}_sky"), db=exp.to_identifier(sky_table.schema))
        for ra_lo, ra_hi, dec_lo, dec_hi in boxes:
            cond = exp.and_(exp.GTE(this=exp.column("dec_max"), expression=dec_lo),
                            exp.LTE(this=exp.column("dec_min"), expression=dec_hi),
                            exp.GTE(this=exp.column("ra_max"), expression=ra_lo),
                            exp.LTE(this=exp.column("ra_min"), expression=ra_hi))
            selects.append(exp.select("id").from_(sky_index.copy()).where(cond))
        query = selects[0]
        for s in selects[1:]:
            query = exp.union(query, s, distinct=False)
        return exp.In(this=exp.column("rowid", table=p.ra.table), query=exp.Subquery(this=query))

    def truncate(self, value: exp.Expression, decimals: Optional[exp.Expression]) -> exp.Expression:
        return call("tap_truncate", value, *([decimals] if decimals is not None else []))

    def mod(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return call("mod", a, b)

    def rand(self, node: exp.Rand) -> exp.Expression:
        return call("tap_rand")

    def cot(self, node: exp.Cot) -> exp.Expression:
        return call("tap_cot", node.this)

    # -- running ------------------------------------------------------------------------------------------

    def prepare(self, conn) -> None:
        register_functions(conn)

    def interrupter(self, conn):
        return conn.interrupt

    def create_uploads(self, conn, uploads: dict[str, tuple]) -> None:
        conn.execute("ATTACH DATABASE ':memory:' AS tap_upload")
        conn.execute("PRAGMA query_only=0")  # only the in-memory tap_upload schema is writable; gateway is mode=ro
        try:
            for name, (columns, rows) in uploads.items():
                cols = ", ".join(f'"{c.name}" {UPLOAD_TYPES[c.datatype]}' for c in columns)
                conn.execute(f'CREATE TABLE tap_upload."{name}" ({cols})')
                marks = ", ".join("?" for _ in columns)
                conn.executemany(f'INSERT INTO tap_upload."{name}" VALUES ({marks})', rows)
        finally:
            conn.execute("PRAGMA query_only=1")

    @contextmanager
    def result_cursor(self, conn):
        yield conn.cursor()

    def is_time_limit(self, error: Exception) -> bool:
        # the deadline's progress handler and conn.interrupt() both end a statement with "interrupted"
        return str(error).strip() == "interrupted"

    def is_database_error(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.Error)


SQLITE = SqliteDialect()
