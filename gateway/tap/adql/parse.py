"""The first steps: parse one SELECT (sqlglot, with an ADQL dialect that knows TOP) and check that every node and
function is on the allow-list, with a message naming what is refused and where."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp, tokens
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError


class AdqlError(ValueError):
    """The query is not ADQL this service can run; the message says what and, where known, where."""


class ADQL(Dialect):
    """Standard SQL plus ``SELECT TOP n`` and hexadecimal literals ``0x2F`` (LOG(x), the natural logarithm in
    ADQL, is mapped to LN later). Hexadecimal literals were in the ADQL 2.1 proposals (PR-20180112 section 2.2.10)
    and left out of the 2.1 REC; read as numbers here, because any other reading (``0 AS xff``) is silently wrong."""

    class Tokenizer(tokens.Tokenizer):
        KEYWORDS = {**tokens.Tokenizer.KEYWORDS, "TOP": tokens.TokenType.TOP}
        HEX_STRINGS = [("0x", ""), ("0X", "")]


# Node types a translated ADQL query may contain; everything else (DDL, DML, PRAGMA, window functions, ...) is refused.
ALLOWED_NODES = {
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.From, exp.Join, exp.Where, exp.Group,
    exp.Having, exp.Order, exp.Ordered, exp.Limit, exp.Offset, exp.Distinct, exp.Star, exp.Column, exp.Identifier,
    exp.Table, exp.TableAlias, exp.Alias, exp.Literal, exp.Null, exp.Boolean, exp.Paren, exp.Tuple,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In, exp.Is,
    exp.Like, exp.ILike, exp.Exists, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe,
    exp.Case, exp.If, exp.Cast, exp.DataType, exp.DataTypeParam, exp.Coalesce, exp.Nullif,
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max,
    exp.Abs, exp.Ceil, exp.Floor, exp.Exp, exp.Ln, exp.Log, exp.Pow, exp.Sqrt, exp.Round, exp.Trunc, exp.Rand,
    exp.Pi, exp.Sin, exp.Cos, exp.Tan, exp.Cot, exp.Asin, exp.Acos, exp.Atan, exp.Atan2, exp.Degrees, exp.Radians,
    exp.Upper, exp.Lower, exp.Contains, exp.Anonymous, exp.Var, exp.With, exp.CTE,
    exp.Concat,  # only from adjacent string literals ('a' 'b'), as ADQL allows
}
# ADQL functions sqlglot does not know as such (exp.Anonymous), by upper-case name
GEOMETRY_FUNCTIONS = {"POINT", "CIRCLE", "BOX", "POLYGON", "INTERSECTS", "DISTANCE", "COORD1", "COORD2", "COORDSYS",
                      "AREA", "CENTROID"}
ALLOWED_ANONYMOUS = GEOMETRY_FUNCTIONS | {"LOG10", "TRUNCATE", "IN_UNIT"}
CAST_TYPES = {exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.BIGINT, exp.DataType.Type.FLOAT,
              exp.DataType.Type.DOUBLE, exp.DataType.Type.CHAR, exp.DataType.Type.VARCHAR,
              exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TEXT}
#: longest QUERY accepted (characters); ADQL of a person or a script fits easily
MAX_QUERY_LENGTH = 100_000


def position(node: exp.Expression, query: str) -> str:
    """`` (line L, column C)`` of ``node`` (or of the first of its children that has one), else ""."""
    meta = node.meta if hasattr(node, "meta") else {}
    line, col = meta.get("line"), meta.get("col")
    if line is None:
        for n in node.walk():
            if n.meta.get("line") is not None:
                line, col = n.meta["line"], n.meta.get("col")
                break
    return f" (line {line}, column {col})" if line is not None else ""


def describe(node: exp.Expression) -> str:
    """``node`` as a person would name it in a message: a function by name, anything else by its text."""
    if isinstance(node, exp.Func):
        return f"function {node.sql_name() if hasattr(node, 'sql_name') else node.key.upper()}()"
    return f"'{node.sql(dialect=ADQL)[:60]}' ({node.key.upper()})"


def parse(adql: str) -> exp.Expression:
    """One SELECT statement, or an AdqlError naming what is wrong and where."""
    if not adql or not adql.strip():
        raise AdqlError("QUERY is empty: give an ADQL SELECT statement")
    if len(adql) > MAX_QUERY_LENGTH:
        raise AdqlError(f"QUERY is {len(adql):,} characters long; the limit is {MAX_QUERY_LENGTH:,} (upload long "
                        "lists of values as a table with UPLOAD instead)")
    first_word = (re.sub(r"^(\s|\(|--[^\n]*(\n|$))+", "", adql).split(None, 1) or [""])[0].rstrip(";").upper()
    if first_word not in ("SELECT", "WITH"):
        if first_word.isalpha():
            raise AdqlError(f"only SELECT queries are allowed here; this starts with {first_word}. Nothing was run "
                            "and nothing can be written.")
        raise AdqlError("ADQL syntax error at line 1, column 1: a query starts with SELECT")
    try:
        statements = [s for s in sqlglot.parse(adql, read=ADQL) if s is not None]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        near = (first.get("highlight") or "").strip()
        where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
        raise AdqlError(f"ADQL syntax error{where}" + (f" near '{near}'" if near else "") + ": "
                        + (first.get("description") or str(e)).lower()) from None
    except SqlglotError:  # tokenizer errors: sqlglot's text quotes the whole query over several lines
        raise AdqlError("ADQL syntax error: a string ('...') or quoted name (\"...\") is not closed, or the "
                        "query has a character ADQL does not use") from None
    if len(statements) != 1:
        raise AdqlError(f"QUERY must be exactly one SELECT statement; found {len(statements)} statements "
                        "(separated by ';'). Only queries run here: nothing can be written.")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        raise AdqlError(f"only SELECT queries are allowed here; this is {tree.key.upper()}, which would change "
                        "or inspect the database. Nothing was run.")
    for hexadecimal in list(tree.find_all(exp.HexString)):
        try:
            hexadecimal.replace(exp.Literal.number(int(hexadecimal.this, 16)))
        except ValueError:
            raise AdqlError(f"'0x{hexadecimal.this}' is not a hexadecimal number{position(hexadecimal, adql)}"
                            ) from None
    return tree


def check_allowed(tree: exp.Expression, adql: str) -> None:
    """Raise AdqlError for the first node, function, CAST type or clause of ``tree`` that is not allowed."""
    for node in tree.walk():
        if type(node) not in ALLOWED_NODES:
            raise AdqlError(f"{describe(node)} is not allowed in ADQL here{position(node, adql)}")
        if isinstance(node, exp.Anonymous) and node.name.upper() not in ALLOWED_ANONYMOUS:
            raise AdqlError(f"unknown function {node.name.upper()}(){position(node, adql)}; see the ADQL functions "
                            "listed in /tap/capabilities")
        if isinstance(node, exp.DataType) and node.this not in CAST_TYPES:
            raise AdqlError(f"CAST to {node.sql()} is not supported; use INTEGER, SMALLINT, BIGINT, REAL, "
                            "DOUBLE PRECISION, CHAR, VARCHAR or TIMESTAMP")
        if isinstance(node, exp.With) and (node.args.get("recursive") or node.parent is not tree):
            raise AdqlError("WITH is allowed once, at the start of the query, and not RECURSIVE (ADQL 2.1)")
        if (isinstance(node, exp.Join) and node.args.get("kind")
                and node.kind.upper() not in ("INNER", "OUTER", "CROSS")):
            raise AdqlError(f"{node.kind.upper()} JOIN is not supported")
        if isinstance(node, exp.Var):
            raise AdqlError(f"unexpected word '{node.name}'{position(node, adql)}")
        if isinstance(node, exp.Concat) and not all(isinstance(e, exp.Literal) and e.is_string
                                                    for e in node.expressions):
            raise AdqlError(f"CONCAT() is not ADQL; use the || operator{position(node, adql)}")
        if isinstance(node, exp.Subquery) and isinstance(node.parent, (exp.From, exp.Join)) and not node.alias:
            raise AdqlError(f"a subquery in FROM needs a name: (SELECT ...) AS name{position(node, adql)}")
        if (isinstance(node, exp.Join) and not node.args.get("on") and not node.args.get("using")
                and (node.kind or "").upper() not in ("CROSS",) and (node.method or "").upper() != "NATURAL"
                and (node.kind or node.side)):
            raise AdqlError(f"JOIN needs ON or USING (or use CROSS JOIN or NATURAL JOIN){position(node, adql)}")
        if isinstance(node, exp.Select) and node.args.get("from_") is None:
            raise AdqlError(f"every SELECT needs a FROM clause in ADQL{position(node, adql)}")
