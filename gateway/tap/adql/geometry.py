"""The geometry rewrite: CONTAINS, INTERSECTS, DISTANCE, COORD1/2, COORDSYS, AREA and CENTROID become plain SQL
predicates and values, spelled by the backend's dialect (q3c on PostgreSQL; the R*Tree plus exact tests on SQLite).

POINT, CIRCLE, BOX and POLYGON are read into :class:`Point`, :class:`Circle` and :class:`Polygon` (BOX as the
polygon through its four corners, with great-circle edges). In the outer select list a POINT, CIRCLE or CENTROID
is returned as a value (DALI ``point``: double[2], ``circle``: double[3]): :meth:`GeometryRewriter.values`
turns it into its 2 or 3 numbers as SQL columns, which the runner puts back together. Degrees throughout, ICRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from sqlglot import exp

from gateway.sky import unit_vector
from gateway.tap.adql.parse import AdqlError, describe, position
from gateway.tap.catalog import ColumnMeta

COORD_SYSTEMS = {"", "ICRS", "ICRS GEOCENTER", "ICRS TOPOCENTER", "ICRS BARYCENTER", "UNKNOWNFRAME"}


@dataclass
class Point:
    ra: exp.Expression  # deg
    dec: exp.Expression  # deg


@dataclass
class Circle:
    ra: exp.Expression  # deg
    dec: exp.Expression  # deg
    radius: exp.Expression  # deg


@dataclass
class Polygon:
    vertices: list[tuple[float, float]]  # (ra, dec) deg, constants


def constant_value(node: exp.Expression) -> Optional[float]:
    """The value of a constant numeric expression, or None."""
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    if isinstance(node, exp.Paren):
        return constant_value(node.this)
    if isinstance(node, exp.Neg):
        v = constant_value(node.this)
        return None if v is None else -v
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        a, b = constant_value(node.this), constant_value(node.expression)
        if a is None or b is None:
            return None
        if isinstance(node, exp.Add):
            return a + b
        if isinstance(node, exp.Sub):
            return a - b
        if isinstance(node, exp.Mul):
            return a * b
        return a / b if b else None
    return None


def number(value: float) -> exp.Expression:
    """A float literal that keeps every digit of ``value``."""
    return exp.Literal.number(repr(float(value)))


def call(name: str, *args: exp.Expression) -> exp.Expression:
    """The SQL function call ``name(args...)``, spelled as given."""
    return exp.Anonymous(this=name, expressions=list(args))


_SQ_DEG_PER_SR = (180.0 / math.pi) ** 2


def _triangles(vertices: list[tuple[float, float]]):
    """(unit vectors a, b, c; signed solid angle in sr) of the fan of triangles from the first vertex."""
    vs = [unit_vector(*v) for v in vertices]
    for b, c in zip(vs[1:-1], vs[2:]):
        a = vs[0]
        triple = (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                  + a[2] * (b[0] * c[1] - b[1] * c[0]))
        dots = sum(p * q for p, q in zip(a, b)) + sum(p * q for p, q in zip(b, c)) + sum(p * q for p, q in zip(c, a))
        yield a, b, c, 2.0 * math.atan2(triple, 1.0 + dots)  # Van Oosterom & Strackee


def polygon_area(vertices: list[tuple[float, float]]) -> float:
    """Area (deg^2) of a spherical polygon with great-circle edges, vertices (ra, dec) in deg, either order."""
    return abs(sum(t[3] for t in _triangles(vertices))) * _SQ_DEG_PER_SR


def polygon_centroid(vertices: list[tuple[float, float]]) -> tuple[float, float]:
    """(ra, dec) deg of the area-weighted centroid of a spherical polygon."""
    x = y = z = 0.0
    for a, b, c, area in _triangles(vertices):
        x, y, z = x + area * (a[0] + b[0] + c[0]), y + area * (a[1] + b[1] + c[1]), z + area * (a[2] + b[2] + c[2])
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0.0:
        raise AdqlError("CENTROID of a polygon without area is not defined")
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, z / norm))))


#: geometries that may be select-list values: DALI xtype and how many numbers
GEOMETRY_VALUES = {Point: ("point", 2), Circle: ("circle", 3)}


def is_predicate(node) -> bool:
    """CONTAINS(...) or INTERSECTS(...)."""
    return isinstance(node, exp.Contains) or (isinstance(node, exp.Anonymous) and node.name.upper() == "INTERSECTS")


class GeometryRewriter:
    """Rewrites one query's geometry for ``dialect`` (a :class:`~gateway.tap.adql.dialect.SqlDialect`)."""

    def __init__(self, dialect, adql: str, aliases: dict[str, object]):
        self.dialect = dialect
        self.adql = adql
        self.aliases = aliases  # table alias -> TableMeta of the tables with a sky index

    def fail(self, message: str, node: exp.Expression):
        raise AdqlError(message + position(node, self.adql))

    # geometry values
    def geometry(self, node: exp.Expression):
        name = node.name.upper() if isinstance(node, exp.Anonymous) else None
        args = list(node.expressions) if isinstance(node, exp.Anonymous) else []
        if name in ("POINT", "CIRCLE", "BOX", "POLYGON"):
            if args and isinstance(args[0], exp.Literal) and args[0].is_string:
                system = args[0].this.strip().upper()
                if system not in COORD_SYSTEMS:
                    self.fail(f"coordinate system '{args[0].this}' is not supported: use 'ICRS' (or '')", node)
                args = args[1:]
        if name == "CENTROID":
            g = self.geometry(args[0]) if len(args) == 1 else self.fail("CENTROID takes one geometry", node)
            if isinstance(g, Circle):
                return Point(g.ra, g.dec)
            if isinstance(g, Polygon):
                ra, dec = polygon_centroid(g.vertices)
                return Point(number(ra), number(dec))
            return g
        if name == "POINT":
            if len(args) != 2:
                self.fail("POINT takes (coordsys, ra, dec)", node)
            return Point(*args)
        if name == "CIRCLE":
            if len(args) == 2 and isinstance(self.geometry(args[0]), Point):  # ADQL 2.1 CIRCLE(point, radius)
                p = self.geometry(args[0])
                return Circle(p.ra, p.dec, args[1])
            if len(args) != 3:
                self.fail("CIRCLE takes (coordsys, ra, dec, radius) in degrees", node)
            return Circle(*args)
        if name == "BOX":
            if len(args) != 4:
                self.fail("BOX takes (coordsys, ra, dec, width, height) in degrees", node)
            values = [constant_value(a) for a in args]
            if None in values:
                self.fail("BOX needs numeric constants here", node)
            ra, dec, width, height = values
            if abs(dec) + height / 2 >= 90:
                self.fail("BOX must not reach a pole; use a CIRCLE or POLYGON", node)
            half_ra = width / 2 / math.cos(math.radians(dec))
            return Polygon([(ra - half_ra, dec - height / 2), (ra + half_ra, dec - height / 2),
                            (ra + half_ra, dec + height / 2), (ra - half_ra, dec + height / 2)])
        if name == "POLYGON":
            values = [constant_value(a) for a in args]
            if None in values or len(values) < 6 or len(values) % 2:
                self.fail("POLYGON takes (coordsys, ra1, dec1, ra2, dec2, ra3, dec3, ...) as numeric constants", node)
            return Polygon(list(zip(values[0::2], values[1::2])))
        self.fail(f"{describe(node)} is not a geometry (POINT, CIRCLE, BOX or POLYGON)", node)

    def sky_indexed_table(self, p: Point):
        """The TableMeta whose sky-indexed position ``p`` is (``alias.ra, alias.dec``), else None."""
        if not (isinstance(p.ra, exp.Column) and isinstance(p.dec, exp.Column) and p.ra.table == p.dec.table):
            return None
        meta = self.aliases.get(p.ra.table)
        if meta is None or meta.position != (p.ra.name, p.dec.name):
            return None
        return meta

    # predicates
    def predicate(self, func: exp.Expression) -> exp.Expression:
        if isinstance(func, exp.Contains):
            a, b, name = func.this, func.expression, "CONTAINS"
        else:
            if len(func.expressions) != 2:
                self.fail("INTERSECTS takes two geometries", func)
            a, b, name = func.expressions[0], func.expressions[1], "INTERSECTS"
        ga, gb = self.geometry(a), self.geometry(b)
        if name == "INTERSECTS" and isinstance(gb, Point):
            ga, gb = gb, ga
        if isinstance(ga, Point) and isinstance(gb, Circle):
            return self.dialect.cone(ga, gb, self.sky_indexed_table(ga))
        if isinstance(ga, Point) and isinstance(gb, Polygon):
            return self.dialect.polygon(ga, gb, self.sky_indexed_table(ga))
        if isinstance(ga, Circle) and isinstance(gb, Circle):
            distance = self.dialect.distance(Point(ga.ra, ga.dec), Point(gb.ra, gb.dec))
            if name == "CONTAINS":  # circle a inside circle b
                return exp.LTE(this=exp.Add(this=distance, expression=exp.paren(ga.radius.copy())),
                               expression=exp.paren(gb.radius.copy()))
            return exp.LTE(this=distance, expression=exp.Add(this=exp.paren(ga.radius.copy()),
                                                             expression=exp.paren(gb.radius.copy())))
        self.fail(f"{name} of {type(ga).__name__.upper()} and {type(gb).__name__.upper()} is not supported; "
                  "supported: CONTAINS(POINT, CIRCLE|BOX|POLYGON), CONTAINS(CIRCLE, CIRCLE), INTERSECTS of "
                  "a POINT or two CIRCLEs", func)

    def _comparison(self, node: exp.Expression) -> exp.Expression:
        """``1 = CONTAINS(...)``, ``CONTAINS(...) <> 0``, ...: the predicate or its negation."""
        for func, other in ((node.this, node.expression), (node.expression, node.this)):
            if is_predicate(func) and isinstance(other, exp.Literal) and not other.is_string:
                value = constant_value(other)
                if value not in (0, 1):
                    self.fail("CONTAINS and INTERSECTS compare only with 0 or 1", node)
                pred = self.predicate(func)
                positive = (value == 1) == isinstance(node, exp.EQ)
                return exp.paren(pred) if positive else exp.Not(this=exp.paren(pred))
        return node

    def _function(self, node: exp.Anonymous) -> exp.Expression:
        """DISTANCE, COORD1/COORD2 and COORDSYS as values; other functions unchanged."""
        name = node.name.upper()
        if name == "DISTANCE":
            args = node.expressions
            if len(args) == 4:
                return self.dialect.distance(Point(args[0], args[1]), Point(args[2], args[3]))
            if len(args) == 2:
                p, q = self.geometry(args[0]), self.geometry(args[1])
                if isinstance(p, Point) and isinstance(q, Point):
                    return self.dialect.distance(p, q)
            self.fail("DISTANCE takes two POINTs (or ra1, dec1, ra2, dec2) in degrees", node)
        if name in ("COORD1", "COORD2"):
            p = self.geometry(node.expressions[0]) if len(node.expressions) == 1 else None
            if not isinstance(p, Point):
                self.fail(f"{name} takes one POINT", node)
            return (p.ra if name == "COORD1" else p.dec).copy()
        if name == "COORDSYS":
            return exp.Literal.string("ICRS")
        if name == "AREA":  # square degrees
            g = self.geometry(node.expressions[0]) if len(node.expressions) == 1 else None
            if isinstance(g, Point):
                return number(0.0)
            if isinstance(g, Polygon):
                return number(polygon_area(g.vertices))
            if isinstance(g, Circle):
                radius = constant_value(g.radius)
                if radius is not None:
                    return number(2 * math.pi * (1 - math.cos(math.radians(radius))) * _SQ_DEG_PER_SR)
                cap = exp.Sub(this=exp.Literal.number(1), expression=call("cos", call("radians", g.radius.copy())))
                return exp.paren(exp.Mul(this=number(2 * math.pi * _SQ_DEG_PER_SR), expression=exp.paren(cap)))
            self.fail("AREA takes one geometry (POINT, CIRCLE, BOX or POLYGON)", node)
        return node

    def values(self, select: exp.Select, columns: list[ColumnMeta]) -> list[ColumnMeta]:
        """POINT, CIRCLE and CENTROID in ``select``'s list turned into their numbers (ra, dec[, radius]) as SQL
        columns; returns ``columns`` with those result columns as DALI point/circle arrays of their width."""
        out = list(columns)
        for i, projection in reversed(list(enumerate(select.expressions))):
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            if not (isinstance(inner, exp.Anonymous) and inner.name.upper() in ("POINT", "CIRCLE", "CENTROID")):
                continue
            g = self.geometry(inner)
            if type(g) not in GEOMETRY_VALUES:
                self.fail(f"a {type(g).__name__.upper()} cannot be returned as a value; POINT and CIRCLE can", inner)
            xtype, width = GEOMETRY_VALUES[type(g)]
            name = out[i].name
            parts = [g.ra, g.dec] + ([g.radius] if isinstance(g, Circle) else [])
            items = [exp.Alias(this=exp.paren(p.copy()), alias=exp.to_identifier(f"{name}__{k}", quoted=True))
                     for k, p in enumerate(parts)]
            select.set("expressions", select.expressions[:i] + items + select.expressions[i + 1:])
            out[i] = ColumnMeta(name, "double", str(width), xtype, "deg", "pos.eq" if xtype == "point" else None,
                                f"{xtype.upper()} (ICRS, deg): " + ("ra dec" if width == 2 else "ra dec radius"),
                                frame="icrs")
        return out

    def rewrite(self, tree: exp.Expression) -> exp.Expression:
        """``tree`` with all its geometry rewritten; AdqlError for geometry used where it cannot be."""
        def transform(node):
            if isinstance(node, (exp.EQ, exp.NEQ)):
                return self._comparison(node)
            if is_predicate(node):  # as a value (e.g. in the select list): 1 or 0
                return exp.Case(ifs=[exp.If(this=self.predicate(node), true=exp.Literal.number(1))],
                                default=exp.Literal.number(0))
            if isinstance(node, exp.Anonymous):
                return self._function(node)
            return node

        tree = tree.transform(transform, copy=False)
        for node in tree.find_all(exp.Anonymous):
            if node.name.upper() in ("POINT", "CIRCLE", "BOX", "POLYGON", "INTERSECTS", "CENTROID"):
                self.fail(f"{node.name.upper()} can only be used inside CONTAINS, INTERSECTS, DISTANCE, AREA, "
                          "CENTROID or COORD1/COORD2, or as a POINT or CIRCLE value in the outer select list", node)
        return tree
