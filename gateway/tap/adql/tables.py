"""Names and metadata: tables resolved against the :class:`~gateway.tap.catalog.Catalog`, columns qualified and
validated (sqlglot's optimizer), the result columns' VOTable metadata, and TAP_SCHEMA as CTEs.

TAP_SCHEMA is not stored in the alert DB (the TAP side only has read-only connections): each TAP_SCHEMA table a
query names becomes a ``WITH "tap_schema_<name>"(...) AS (VALUES ...)`` in front of the translated SQL.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from gateway.tap.adql.geometry import is_predicate
from gateway.tap.adql.parse import ADQL, AdqlError, position
from gateway.tap.adql.units import in_unit_column
from gateway.tap.catalog import Catalog, ColumnMeta, TableMeta, result_column

#: sqlglot type of a computed result column -> (VOTable datatype, arraysize, xtype)
INFERRED_TYPES = {
    "BIGINT": ("long", None, None), "INT": ("long", None, None), "SMALLINT": ("long", None, None),
    "TINYINT": ("long", None, None), "BOOLEAN": ("short", None, None),
    "DOUBLE": ("double", None, None), "FLOAT": ("double", None, None), "DECIMAL": ("double", None, None),
    "VARCHAR": ("char", "*", None), "TEXT": ("char", "*", None), "CHAR": ("char", "*", None),
    "TIMESTAMP": ("char", "*", "timestamp"), "VARBINARY": ("unsignedByte", "*", None),
}


def resolve_tables(tree: exp.Expression, catalog: Catalog, adql: str) -> None:
    """Qualify every table with its schema (and give it its own name as alias); unknown ones -> AdqlError. A name
    the query's WITH defines is that common table."""
    common = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.db and table.name.lower() in common:
            continue
        if table.args.get("catalog"):
            raise AdqlError(f"table name {table.sql()} has too many parts; use schema.table")
        schema = table.db or None
        meta = catalog.get(schema, table.name)
        if meta is None:
            shown = f"{schema}.{table.name}" if schema else table.name
            raise AdqlError(f"unknown table '{shown}'{position(table, adql)}; the tables are listed at "
                            f"/tap/tables and in TAP_SCHEMA.tables: {', '.join(sorted(catalog.tables))}")
        table.set("db", exp.to_identifier(meta.schema))
        table.set("this", exp.to_identifier(meta.name))
        if not table.alias:  # keep references like "TAP_SCHEMA.tables.table_name" resolvable
            table.set("alias", exp.TableAlias(this=exp.to_identifier(meta.name)))


def default_name(node: exp.Expression) -> str:
    """The name of a select-list item that has no alias, as DaCHS gives it: a column's name, a function's name in
    lower case (``count``, ``max``, ``distance``), else ``expr``."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func) and not isinstance(node, (exp.Case, exp.If)):
        return type(node).sql_names()[0].lower()
    return "expr"


def name_columns(tree: exp.Expression) -> None:
    """Give every unnamed select-list item of every SELECT its :func:`default_name`, made unique within its
    SELECT by a suffix (``expr``, ``expr_2``, ...), so no result column is called ``_col_0``."""
    for select in tree.find_all(exp.Select):
        taken = {p.alias_or_name.lower() for p in select.expressions
                 if isinstance(p, (exp.Alias, exp.Column)) and p.alias_or_name}
        for projection in list(select.expressions):
            if isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
                continue
            base = default_name(projection)
            name, n = base, 1
            while name.lower() in taken:
                n += 1
                name = f"{base}_{n}"
            taken.add(name.lower())
            projection.replace(exp.Alias(this=projection.copy(), alias=exp.to_identifier(name)))


def mapping_schema(catalog: Catalog) -> MappingSchema:
    """The catalog as sqlglot's schema, built once per catalog (building it is a good part of a translation)."""
    cached = getattr(catalog, "_sqlglot_schema", None)
    if cached is not None:
        return cached
    nested: dict = {}
    for t in catalog.tables.values():
        if t.columns:
            nested.setdefault(t.schema, {})[t.name] = {c.name: c.sql_type for c in t.columns}
    catalog._sqlglot_schema = MappingSchema(nested, dialect=ADQL)
    return catalog._sqlglot_schema


def qualify_columns(tree: exp.Expression, catalog: Catalog) -> exp.Expression:
    """Every column qualified with its table and checked to exist, and typed where sqlglot can tell."""
    schema = mapping_schema(catalog)
    try:
        tree = qualify(tree, schema=schema, dialect=ADQL, validate_qualify_columns=True, quote_identifiers=True,
                       isolate_tables=False)
    except OptimizeError as e:
        message = str(e)
        if "could not be resolved" in message:
            message += " (unknown column, or a column name that more than one table has: qualify it)"
        raise AdqlError(f"{message}; columns are listed at /tap/tables and in TAP_SCHEMA.columns") from None
    except SqlglotError as e:
        raise AdqlError(f"cannot resolve the query's names: {e}") from None
    try:
        return annotate_types(tree, schema=schema)
    except SqlglotError:
        return tree  # types are a nicety for metadata; the writer infers them from values


def sky_indexed_aliases(tree: exp.Expression, catalog: Catalog) -> dict[str, TableMeta]:
    """Table alias -> TableMeta, for the tables in ``tree`` that have a sky index."""
    aliases = {}
    for table in tree.find_all(exp.Table):
        meta = catalog.get(table.db, table.name)
        if meta is not None and meta.position:
            aliases[table.alias_or_name] = meta
    return aliases


def _outer_select(tree: exp.Expression) -> exp.Select:
    while not isinstance(tree, exp.Select):
        tree = tree.this
    return tree


def _sources(select: exp.Select, catalog: Catalog, common: dict) -> dict[str, TableMeta]:
    """Table alias -> TableMeta of what ``select`` reads from: published tables, and subqueries and common
    tables (their result columns), so a column keeps its metadata through them."""
    aliases = {}
    for source in [select.args.get("from_")] + list(select.args.get("joins") or []):
        if source is None:
            continue
        item = source.this
        if isinstance(item, exp.Table):
            meta = catalog.get(item.db, item.name) if item.db else common.get(item.name.lower())
            if meta is None and not item.db:
                meta = catalog.get(None, item.name)
            if meta is not None:
                aliases[item.alias_or_name] = meta
        elif isinstance(item, exp.Subquery) and item.alias:
            columns = tuple(result_columns(item.this, catalog, common))
            aliases[item.alias] = TableMeta("", item.alias, "", columns)
    return aliases


def result_columns(tree: exp.Expression, catalog: Catalog, common: dict | None = None) -> list[ColumnMeta]:
    """The result columns in order: catalog metadata for plain column references (through subqueries and common
    tables too), else a type inferred from the expression (datatype None: the writer decides from the values;
    SQLite columns have no fixed type)."""
    common = dict(common or {})
    for cte in (tree.args.get("with_").expressions if tree.args.get("with_") else []):
        common[cte.alias_or_name.lower()] = TableMeta("", cte.alias_or_name, "",
                                                      tuple(result_columns(cte.this, catalog, common)))
    select = _outer_select(tree)
    aliases = _sources(select, catalog, common)
    out = []
    for projection in select.expressions:
        name = projection.alias_or_name
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        meta = None
        if isinstance(inner, exp.Column) and inner.table in aliases:
            meta = aliases[inner.table].column(inner.name)
        if meta is not None:
            out.append(result_column(meta, name))
            continue
        converted = in_unit_column(inner, aliases)
        if converted is not None:
            out.append(result_column(converted, name))
            continue
        kind = inner.type.this.name if getattr(inner, "type", None) is not None else "UNKNOWN"
        unit = None
        if isinstance(inner, exp.Anonymous) and inner.name.upper() in ("DISTANCE", "COORD1", "COORD2", "AREA"):
            kind, unit = "DOUBLE", ("deg**2" if inner.name.upper() == "AREA" else "deg")
        elif is_predicate(inner):
            kind = "INT"
        datatype, arraysize, xtype = INFERRED_TYPES.get(kind, (None, None, None))
        out.append(ColumnMeta(name, datatype, arraysize, xtype, unit))
    return out


def place_special_tables(tree: exp.Expression, dialect) -> list[str]:
    """Point TAP_SCHEMA tables at their CTEs and TAP_UPLOAD tables where ``dialect`` creates them; returns the
    TAP_SCHEMA tables used, in order of first use."""
    tap_schema = []
    for table in tree.find_all(exp.Table):
        if table.db == "tap_schema":
            if table.name not in tap_schema:
                tap_schema.append(table.name)
            table.set("db", None)
            table.set("this", exp.to_identifier(f"tap_schema_{table.name}", quoted=True))
        elif table.db == "tap_upload":
            dialect.upload_table(table)
    return tap_schema


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def tap_schema_cte(catalog: Catalog, names: list[str], dialect) -> str:
    """``WITH "tap_schema_<name>"(columns) AS (VALUES ...), ... `` for the TAP_SCHEMA tables ``names`` ("" for
    none)."""
    if not names:
        return ""
    rows = catalog.tap_schema_rows()
    metas = {t.name: t for t in catalog.tables.values() if t.schema == "tap_schema"}
    parts = []
    for name in names:
        meta = metas[name]
        cols = ", ".join(f'"{c.name}"' for c in meta.columns)
        values = []
        for i, row in enumerate(rows[name]):
            if i == 0 and dialect.types_tap_schema_values:
                cells = [f"CAST({_literal(v)} AS {'integer' if c.datatype == 'int' else 'text'})"
                         for v, c in zip(row, meta.columns)]
            else:
                cells = [_literal(v) for v in row]
            values.append("(" + ", ".join(cells) + ")")
        if not values:  # an empty table (e.g. no foreign keys): a VALUES row that matches nothing
            values = ["(" + ", ".join("NULL" for _ in meta.columns) + ")"]
            body = f"SELECT * FROM (VALUES {values[0]}) AS empty_values WHERE 1 = 0"
        else:
            body = "VALUES " + ", ".join(values)
        parts.append(f'"tap_schema_{name}"({cols}) AS ({body})')
    return "WITH " + ", ".join(parts) + " "


def column_lookup(tree: exp.Expression, catalog: Catalog):
    """A function giving the catalog metadata of a qualified column of ``tree`` (through subqueries and common
    tables), or None."""
    common = {}
    for cte in (tree.args.get("with_").expressions if tree.args.get("with_") else []):
        common[cte.alias_or_name.lower()] = TableMeta("", cte.alias_or_name, "",
                                                      tuple(result_columns(cte.this, catalog, common)))

    def lookup(column: exp.Column):
        select = column.find_ancestor(exp.Select)
        if select is None:
            return None
        meta = _sources(select, catalog, common).get(column.table)
        return meta.column(column.name) if meta is not None else None
    return lookup
