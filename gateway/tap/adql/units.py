"""ADQL 2.1 IN_UNIT(value, 'unit'): a column's value converted to another unit, by a factor from its unit in the
catalog (VOUnits, converted with astropy.units). The result column carries the new unit."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Callable, Optional

from sqlglot import exp

from gateway.tap.adql.geometry import number
from gateway.tap.adql.parse import AdqlError
from gateway.tap.catalog import ColumnMeta


def _is_in_unit(node) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.upper() == "IN_UNIT"


def _arguments(node: exp.Anonymous) -> tuple[exp.Expression, str]:
    args = node.expressions
    if len(args) != 2 or not (isinstance(args[1], exp.Literal) and args[1].is_string):
        raise AdqlError("IN_UNIT takes (value, 'unit'), the unit a string literal in VOUnit syntax, e.g. "
                        "IN_UNIT(ra, 'arcsec')")
    return args[0], args[1].this


@lru_cache(maxsize=256)
def factor(source: str, target: str) -> float:
    """The number a value in VOUnit ``source`` is multiplied by to be in ``target``; AdqlError when the units
    are unknown or of different kinds."""
    from astropy import units  # slow to import; only IN_UNIT needs it

    try:
        have, want = units.Unit(source, format="vounit"), units.Unit(target, format="vounit")
    except ValueError:
        bad = target
        try:
            units.Unit(source, format="vounit")
        except ValueError:
            bad = source
        raise AdqlError(f"IN_UNIT: '{bad}' is not a unit in VOUnit syntax (e.g. deg, arcsec, mas, d, s, nJy, mJy)"
                        ) from None
    try:
        return float(have.to(want))
    except units.UnitConversionError:
        raise AdqlError(f"IN_UNIT cannot convert {source} to {target}: they measure different things") from None


def in_unit_column(node: exp.Expression, aliases: dict) -> Optional[ColumnMeta]:
    """The result metadata of ``IN_UNIT(column, 'unit')`` (the column's, in the new unit), else None."""
    if not _is_in_unit(node):
        return None
    value, target = _arguments(node)
    if isinstance(value, exp.Column) and value.table in aliases:
        meta = aliases[value.table].column(value.name)
        if meta is not None:
            return replace(meta, unit=target, datatype="double", arraysize=None, xtype=None,
                           frame=meta.frame if meta.frame == "icrs" else None, description=meta.description)
    return None


def rewrite_in_unit(tree: exp.Expression, lookup: Callable[[exp.Column], Optional[ColumnMeta]],
                    where: Callable[[exp.Expression], str]) -> exp.Expression:
    """``tree`` with every IN_UNIT(column, 'unit') as ``column * factor``; ``lookup`` gives a column's metadata."""
    def transform(node):
        if not _is_in_unit(node):
            return node
        value, target = _arguments(node)
        meta = lookup(value) if isinstance(value, exp.Column) else None
        if meta is None or not meta.unit:
            raise AdqlError("IN_UNIT needs a column whose unit is known as its first argument (units are listed "
                            f"at /tap/tables), e.g. IN_UNIT(ra, 'arcsec'){where(node)}")
        scale = factor(meta.unit, target)
        if scale == 1.0:
            return exp.paren(value.copy())
        return exp.paren(exp.Mul(this=value.copy(), expression=number(scale)))

    return tree.transform(transform, copy=False)
