"""SQLite: the zone index ``<table>_zones`` pre-selects, ``sky_distance``/``tap_in_polygon`` decide exactly; uploads
go to an in-memory ``tap_upload`` schema; ``conn.interrupt()`` stops a query.

Cone: ``zone IN (<zones of the band>) AND ra BETWEEN <RA interval> AND dec BETWEEN <band> AND sky_distance(...) <= r``
with ``zone`` the index's own expression (:func:`gateway.store.sqlite.zone_sql`): a seek per zone. The interval comes
from :func:`gateway.sky.ra_ranges` for a constant centre, and is computed in SQL (three copies shifted by -360, 0,
+360 deg of RA, so intervals across RA 0 are covered) when the centre comes from another table, as in a cross-match;
there the zones are those of the centre and the band's two edges, which cover the band while the radius is at most
a zone's height, and a range of zones otherwise.
"""

from __future__ import annotations

import math
import random
import sqlite3
from contextlib import contextmanager
from typing import Optional

from sqlglot import exp

from gateway import sky
from gateway.sky import BOX_MARGIN, ZONE_HEIGHT, ZONES_PER_DEGREE, bounding_cap, ra_ranges, zones
from gateway.store.sqlite import MAX_ZONE_LIST
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


def _zone_of(dec: exp.Expression) -> exp.Expression:
    """The zone index's expression (:func:`gateway.store.sqlite.zone_sql`) of ``dec`` (deg)."""
    value = dec.copy() if isinstance(dec, (exp.Column, exp.Literal)) else exp.paren(dec.copy())
    shifted = exp.paren(exp.Add(this=value, expression=exp.Literal.number(90)))
    return exp.Cast(this=exp.Mul(this=shifted, expression=exp.Literal.number(ZONES_PER_DEGREE)),
                    to=exp.DataType.build("INTEGER"))


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
        return exp.and_(self._zones(p, sky_table, c.ra, c.dec, c.radius), exact)

    def polygon(self, p: Point, poly: Polygon, sky_table) -> exp.Expression:
        flat = [number(v) for vertex in poly.vertices for v in vertex]
        exact = exp.EQ(this=call("tap_in_polygon", p.ra.copy(), p.dec.copy(), *flat), expression=exp.Literal.number(1))
        if sky_table is None:
            return exact
        (cra, cdec), radius = bounding_cap(poly.vertices)
        return exp.and_(self._zones(p, sky_table, number(cra), number(cdec), number(radius)), exact)

    def _zones(self, p: Point, sky_table, cra, cdec, radius) -> exp.Expression:
        """``((zone IN (...) AND ra BETWEEN lo AND hi) OR ...) AND dec BETWEEN ...`` around the cone, on the zone
        index of ``sky_table`` (``p`` is its position)."""
        ra0, dec0, r = constant_value(cra), constant_value(cdec), constant_value(radius)
        zone = _zone_of(p.dec)
        if None in (ra0, dec0, r):
            # e.g. a cross-match, correlated with the outer row: the intervals are computed in SQL
            lo = exp.Sub(this=exp.paren(cdec.copy()), expression=exp.paren(radius.copy()))
            hi = exp.Add(this=exp.paren(cdec.copy()), expression=exp.paren(radius.copy()))
            half = _sql_ra_half_width(cdec, radius)
            intervals = []
            for shift in (-360, 0, 360):
                centre = exp.Add(this=exp.paren(cra.copy()), expression=exp.Literal.number(shift))
                intervals.append((exp.Sub(this=centre, expression=half.copy()),
                                  exp.Add(this=centre.copy(), expression=half.copy())))
            if r is not None and r + BOX_MARGIN <= ZONE_HEIGHT:
                in_zones = exp.In(this=zone, expressions=[_zone_of(lo), _zone_of(cdec), _zone_of(hi)])
            else:
                in_zones = exp.Between(this=zone, low=_zone_of(lo), high=_zone_of(hi))
            lo = exp.Sub(this=lo, expression=number(BOX_MARGIN))
            hi = exp.Add(this=hi, expression=number(BOX_MARGIN))
        else:
            lo, hi = number(dec0 - r - BOX_MARGIN), number(dec0 + r + BOX_MARGIN)
            intervals = [(number(a), number(b)) for a, b in ra_ranges(ra0, dec0, r)]
            band = zones(dec0 - r - BOX_MARGIN, dec0 + r + BOX_MARGIN)
            in_zones = (exp.In(this=zone, expressions=[exp.Literal.number(z) for z in band])
                        if len(band) <= MAX_ZONE_LIST else
                        exp.Between(this=zone, low=exp.Literal.number(band[0]), high=exp.Literal.number(band[-1])))
        seeks = [exp.paren(exp.and_(in_zones.copy(), exp.Between(this=p.ra.copy(), low=a, high=b)))
                 for a, b in intervals]
        return exp.and_(exp.paren(exp.or_(*seeks)), exp.Between(this=p.dec.copy(), low=lo, high=hi))

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
