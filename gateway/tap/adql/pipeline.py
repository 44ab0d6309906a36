"""The translation, step by step: parse -> allow-list -> names of unnamed columns -> tables -> columns -> result
metadata -> IN_UNIT -> geometry values and functions -> function spellings -> TAP_SCHEMA and TAP_UPLOAD names ->
TOP/MAXREC -> SQL in the backend's dialect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from gateway.tap.adql.dialect import SqlDialect
from gateway.tap.adql.geometry import GeometryRewriter, constant_value
from gateway.tap.adql.parse import AdqlError, check_allowed, parse, position
from gateway.tap.adql.tables import (
    column_lookup,
    name_columns,
    place_special_tables,
    qualify_columns,
    resolve_tables,
    result_columns,
    sky_indexed_aliases,
    tap_schema_cte,
)
from gateway.tap.adql.units import rewrite_in_unit
from gateway.tap.catalog import Catalog, ColumnMeta


@dataclass
class Translation:
    #: the SQL to run, TAP_SCHEMA CTEs included
    sql: str
    #: result columns in order; metadata from the catalog for plain column references, else inferred
    columns: list[ColumnMeta]
    #: the limit applied to the outer query (TOP or MAXREC + 1), None when unlimited
    limit: Optional[int]
    #: TAP_SCHEMA tables the query reads (each one a CTE in front of the SQL)
    tap_schema: list[str]


def translate(adql: str, dialect: SqlDialect, catalog: Catalog, maxrec: Optional[int] = None) -> Translation:
    """ADQL -> SQL for ``dialect``; ``maxrec``: at most this many rows are wanted (the outer query is limited to
    maxrec + 1, so the caller can tell an overflow). Raises AdqlError."""
    try:
        return _translate(adql, dialect, catalog, maxrec)
    except RecursionError:
        raise AdqlError("the query is nested too deeply to translate; simplify it") from None


def _translate(adql: str, dialect: SqlDialect, catalog: Catalog, maxrec: Optional[int]) -> Translation:
    tree = parse(adql)
    check_allowed(tree, adql)
    name_columns(tree)
    resolve_tables(tree, catalog, adql)
    tree = qualify_columns(tree, catalog)
    columns = result_columns(tree, catalog)
    tree = rewrite_in_unit(tree, column_lookup(tree, catalog), lambda node: position(node, adql))
    geometry = GeometryRewriter(dialect, adql, sky_indexed_aliases(tree, catalog))
    if isinstance(tree, exp.Select):
        columns = geometry.values(tree, columns)
    tree = geometry.rewrite(tree)
    tree = dialect.functions(tree)
    tap_schema = place_special_tables(tree, dialect)
    limit = _limit(tree, maxrec)
    if limit is not None:
        if isinstance(tree, exp.Select):
            tree.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
        else:
            tree = exp.select("*").from_(exp.Subquery(this=tree, alias=exp.TableAlias(this=exp.to_identifier("q"))))
            tree = tree.limit(limit)
    try:
        # comments are dropped: nothing the user wrote reaches the database except through the parse tree
        sql = tree.sql(dialect=dialect.sqlglot_name, unsupported_level=ErrorLevel.RAISE, comments=False)
    except SqlglotError as e:
        raise AdqlError(f"this query cannot be run on the {dialect.kind} backend: {e}") from None
    prefix = tap_schema_cte(catalog, tap_schema, dialect)
    if prefix and sql.startswith("WITH "):  # one WITH: TAP_SCHEMA's common tables, then the query's own
        sql = prefix.rstrip() + ", " + sql[len("WITH "):]
    else:
        sql = prefix + sql
    return Translation(sql, columns, limit, tap_schema)


def _limit(tree: exp.Expression, maxrec: Optional[int]) -> Optional[int]:
    """The outer query's row limit: TOP, or MAXREC + 1 when that is smaller (None: unlimited)."""
    limit = None
    for select in tree.find_all(exp.Select):
        offset = select.args.get("offset")
        value = constant_value(offset.expression) if offset is not None else 0
        if value is None or value < 0 or value != int(value):
            raise AdqlError("OFFSET takes a non-negative whole number")
    top = tree.args.get("limit")
    if top is not None:
        value = constant_value(top.expression)
        if value is None or value < 0 or value != int(value):
            raise AdqlError("TOP takes a non-negative whole number")
        limit = int(value)
    if maxrec is not None and (limit is None or limit > maxrec):
        limit = maxrec + 1
    return limit
