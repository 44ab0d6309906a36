"""What the TAP service publishes: the alert tables, TAP_SCHEMA itself, and a query's uploaded tables.

Everything is derived from :data:`gateway.store.schema.PUBLIC_TABLES`; this module knows no alert field by name.
A :class:`Catalog` maps ``schema.table`` to column metadata (VOTable datatype, unit, UCD, description) for the ADQL
translator (name resolution), the output writers (FIELD metadata), VOSI ``/tables`` and TAP_SCHEMA.

TAP_SCHEMA is not stored in the alert DB (the TAP side only has read-only connections): its rows are built here
and each TAP_SCHEMA table a query names becomes a ``WITH tap_schema_<name>(...) AS (VALUES ...)`` in front of the
translated SQL, which works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from gateway.store import schema as store_schema
from gateway.store.rows import MJD_SCALE

#: ADQL/TAP_SCHEMA type of the store -> (VOTable datatype, arraysize, xtype)
VOTABLE_TYPES = {
    "BIGINT": ("long", None, None),
    "INTEGER": ("int", None, None),
    "SMALLINT": ("short", None, None),
    "DOUBLE": ("double", None, None),
    "REAL": ("float", None, None),
    "VARCHAR": ("char", "*", None),
    "TIMESTAMP": ("char", "*", "timestamp"),
    "BLOB": ("unsignedByte", "*", None),
}


#: ADQL reserved words among our column names (published delimited)
RESERVED = {"SIZE", "VALUE", "DATE", "TIME", "TIMESTAMP", "ORDER", "USER", "POSITION", "FIRST", "LAST"}


@dataclass(frozen=True)
class ColumnMeta:
    """One result or table column as VOTable/TAP_SCHEMA describe it."""
    name: str
    datatype: str  # VOTable: long int short double float char unicodeChar unsignedByte boolean
    arraysize: Optional[str] = None
    xtype: Optional[str] = None
    unit: Optional[str] = None
    ucd: Optional[str] = None
    description: Optional[str] = None
    principal: bool = False
    indexed: bool = False
    std: bool = False
    #: the coordinate or time system the values are in, by the id of its VOTable COOSYS/TIMESYS element
    #: (:data:`FRAMES`): "icrs" for positions, "tai" for MJDs, "utc" for timestamps; None for the rest
    frame: Optional[str] = None
    #: the column holds alert ids, which /tap/links (DataLink) takes as ID
    alert_id: bool = False

    @property
    def adql_name(self) -> str:
        """The name as published (TAP_SCHEMA, /tables): ADQL reserved words delimited, e.g. ``"size"``."""
        return f'"{self.name}"' if self.name.upper() in RESERVED else self.name

    @property
    def sql_type(self) -> str:
        """The sqlglot/ADQL type name, for type inference in the translator."""
        if self.xtype == "timestamp":
            return "TIMESTAMP"
        return {"long": "BIGINT", "int": "INT", "short": "SMALLINT", "double": "DOUBLE", "float": "FLOAT",
                "unsignedByte": "VARBINARY", "boolean": "BOOLEAN"}.get(self.datatype, "VARCHAR")


@dataclass(frozen=True)
class TableMeta:
    schema: str
    name: str
    description: str
    columns: tuple[ColumnMeta, ...]
    #: (ra, dec) column names when the table has a sky index (R*Tree ``<name>_sky`` / q3c)
    position: Optional[tuple[str, str]] = None
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    table_type: str = "table"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Optional[ColumnMeta]:
        for c in self.columns:
            if c.name == name:
                return c
        return None


#: the systems result columns refer to: id -> (VOTable element, attributes). Positions are ICRS; every MJD column
#: of the alert DB is TAI (gateway.store.rows.MJD_SCALE), at the observatory; timestamps are UTC ISO-8601.
FRAMES = {
    "icrs": ("COOSYS", {"system": "ICRS"}),
    MJD_SCALE: ("TIMESYS", {"timeorigin": "MJD-origin", "timescale": MJD_SCALE.upper(), "refposition": "TOPOCENTER"}),
    "utc": ("TIMESYS", {"timescale": "UTC", "refposition": "TOPOCENTER"}),
}


def frame_of(column: store_schema.Column) -> Optional[str]:
    """The system a stored column's values are in (a key of :data:`FRAMES`), from its type, unit and UCD."""
    ucd = (column.ucd or "").split(";")
    if column.datatype == "TIMESTAMP":
        return "utc"
    if column.datatype == "DOUBLE" and column.unit == "d" and ucd[0].startswith("time."):
        return MJD_SCALE
    if column.datatype == "DOUBLE" and ucd[0] in ("pos.eq.ra", "pos.eq.dec"):
        return "icrs"
    return None


def _from_store(table: store_schema.Table) -> TableMeta:
    columns = []
    for c in table.columns:
        datatype, arraysize, xtype = VOTABLE_TYPES[c.datatype]
        if c.name in store_schema.UNICODE_TEXT.get(table.name, ()):
            datatype = "unicodeChar"
        columns.append(ColumnMeta(c.name, datatype, arraysize, xtype, c.unit, c.ucd, c.description,
                                  principal=c.principal, indexed=c.indexed, frame=frame_of(c),
                                  alert_id=c.name in store_schema.ALERT_ID_COLUMNS.get(table.name, ())))
    return TableMeta(store_schema.SCHEMA, table.name, table.description, tuple(columns), table.position,
                     table.foreign_keys)


def _tap_schema_table(name: str, description: str, columns: str, foreign_keys=()) -> TableMeta:
    """A TAP_SCHEMA table from one line per column, ``name type description``: type ``char`` (arraysize ``*``)
    or ``int``, with a trailing ``-`` when the column is not principal."""
    metas = []
    for line in columns.strip().splitlines():
        column, datatype, text = line.split(None, 2)
        principal = not datatype.endswith("-")
        datatype = datatype.rstrip("-")
        metas.append(ColumnMeta(column, datatype, "*" if datatype == "char" else None, None, None, None, text,
                                principal=principal, std=True))
    return TableMeta("tap_schema", name, description, tuple(metas), foreign_keys=foreign_keys)


TAP_SCHEMA_TABLES = (
    _tap_schema_table("schemas", "Schemas published by this service", """
        schema_name   char   Schema name, for reference
        utype         char-  Schema utype
        description   char   Brief description of the schema
        schema_index  int-   Recommended sort order when listing schemas
    """),
    _tap_schema_table("tables", "Tables published by this service", """
        schema_name   char   Schema the table belongs to
        table_name    char   Fully qualified table name, as used in ADQL
        table_type    char   One of: table, view
        utype         char-  Table utype
        description   char   Brief description of the table
        table_index   int-   Recommended sort order when listing tables
    """, foreign_keys=(("schema_name", "schemas", "schema_name"),)),
    _tap_schema_table("columns", "Columns of the tables published by this service", """
        table_name    char   Table name from TAP_SCHEMA.tables
        column_name   char   Column name
        utype         char-  Column utype
        ucd           char   Column UCD
        unit          char   Column unit in VO standard format
        description   char   Brief description of the column
        datatype      char   VOTable datatype of the column
        arraysize     char   VOTable arraysize of the column
        xtype         char   VOTable xtype of the column
        size          int-   Length of variable-length datatypes (deprecated; use arraysize)
        principal     int    1 if the column is principal, 0 otherwise
        indexed       int    1 if the column is indexed, 0 otherwise
        std           int    1 if the column is defined by a standard, 0 otherwise
        column_index  int-   Recommended sort order when listing columns
    """, foreign_keys=(("table_name", "tables", "table_name"),)),
    _tap_schema_table("keys", "Foreign keys between the tables published by this service", """
        key_id        char   Unique key identifier
        from_table    char   Fully qualified table name of the table holding the foreign key
        target_table  char   Fully qualified table name of the referenced table
        utype         char-  Key utype
        description   char   Description of this key
    """, foreign_keys=(("from_table", "tables", "table_name"), ("target_table", "tables", "table_name"))),
    _tap_schema_table("key_columns", "Columns of the foreign keys in TAP_SCHEMA.keys", """
        key_id        char   Key identifier from TAP_SCHEMA.keys
        from_column   char   Column in the from_table
        target_column char   Column in the target_table
    """, foreign_keys=(("key_id", "keys", "key_id"),)),
)

SCHEMA_DESCRIPTIONS = {
    store_schema.SCHEMA: "The alert DB: objects, detections, alert packets and VOEvents received by this gateway",
    "tap_schema": "Metadata of this TAP service (TAP 1.1 TAP_SCHEMA)",
}


class Catalog:
    """Published tables by lower-case ``schema.table`` name; uploads are added per query with :meth:`with_uploads`."""

    def __init__(self, tables):
        self.tables: dict[str, TableMeta] = {t.qualified.lower(): t for t in tables}

    @classmethod
    def default(cls) -> "Catalog":
        return cls([_from_store(t) for t in store_schema.PUBLIC_TABLES] + list(TAP_SCHEMA_TABLES))

    def with_uploads(self, uploads: dict[str, tuple[ColumnMeta, ...]]) -> "Catalog":
        extra = [TableMeta("tap_upload", name, "Table uploaded with this query", cols)
                 for name, cols in uploads.items()]
        return Catalog(list(self.tables.values()) + extra)

    def get(self, schema: Optional[str], name: str) -> Optional[TableMeta]:
        if schema is None:  # unqualified names mean the alert tables (as in many TAP services)
            schema = store_schema.SCHEMA
        return self.tables.get(f"{schema}.{name}".lower())

    def published(self) -> list[TableMeta]:
        return [t for t in self.tables.values() if t.schema != "tap_upload"]

    def schemas(self) -> list[str]:
        out = []
        for t in self.published():
            if t.schema not in out:
                out.append(t.schema)
        return out

    # -- TAP_SCHEMA contents ----------------------------------------------------------------------------------

    def tap_schema_rows(self) -> dict[str, list[tuple]]:
        """Rows of each TAP_SCHEMA table, columns in the order of :data:`TAP_SCHEMA_TABLES`."""
        rows = {"schemas": [], "tables": [], "columns": [], "keys": [], "key_columns": []}
        for i, s in enumerate(self.schemas()):
            rows["schemas"].append((s, None, SCHEMA_DESCRIPTIONS.get(s), i))
        for ti, t in enumerate(self.published()):
            rows["tables"].append((t.schema, t.qualified, t.table_type, None, t.description, ti))
            for ci, c in enumerate(t.columns):
                rows["columns"].append((t.qualified, c.adql_name, None, c.ucd, c.unit, c.description, c.datatype,
                                        c.arraysize, c.xtype, None, int(c.principal), int(c.indexed), int(c.std),
                                        ci))
            for column, target, target_column in t.foreign_keys:
                key_id = f"{t.schema}.{t.name}.{column}"
                rows["keys"].append((key_id, t.qualified, f"{t.schema}.{target}", None,
                                     f"{t.name}.{column} refers to {target}.{target_column}"))
                rows["key_columns"].append((key_id, column, target_column))
        return rows


def result_column(meta: ColumnMeta, name: str) -> ColumnMeta:
    """``meta`` under the name the query gave it (an alias)."""
    return meta if meta.name == name else replace(meta, name=name)
