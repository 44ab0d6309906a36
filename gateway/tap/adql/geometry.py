"""The geometry rewrite: CONTAINS, INTERSECTS, DISTANCE, COORD1/2 and COORDSYS become plain SQL predicates and
values, spelled by the backend's dialect (q3c on PostgreSQL; the R*Tree plus exact tests on SQLite).

POINT, CIRCLE, BOX and POLYGON are read into :class:`Point`, :class:`Circle` and :class:`Polygon` (BOX as the
polygon through its four corners, with great-circle edges); they exist only inside the functions above. Degrees
throughout, ICRS only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from sqlglot import exp

from gateway.tap.adql.parse import AdqlError, describe, position

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
        return node

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
            if node.name.upper() in ("POINT", "CIRCLE", "BOX", "POLYGON", "INTERSECTS"):
                self.fail(f"{node.name.upper()} can only be used inside CONTAINS, INTERSECTS, DISTANCE or "
                          "COORD1/COORD2 here (geometry columns are not returned)", node)
        return tree
