"""The alert DB schema, once, for both backends and for TAP_SCHEMA.

Every table and column is described here with its ADQL type, unit, UCD and description; the SQLite and
PostgreSQL DDL are generated from it, and the TAP service publishes it as TAP_SCHEMA. The mapping from
Rubin and ZTF alerts to these rows is in :mod:`gateway.store.rows` and ``docs/store.rst``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: the schema name users see in ADQL (``gateway.diasource``); a real schema on PostgreSQL, the name the
#: database file is attached under on SQLite read connections
SCHEMA = "gateway"


@dataclass(frozen=True)
class Column:
    name: str
    datatype: str  # ADQL/TAP_SCHEMA type: BIGINT, INTEGER, SMALLINT, DOUBLE, REAL, VARCHAR, TIMESTAMP, BLOB
    description: str
    unit: Optional[str] = None
    ucd: Optional[str] = None
    nullable: bool = True
    indexed: bool = False
    principal: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    #: (ra column, dec column) when the table has a sky position with a cone-search index
    position: Optional[tuple[str, str]] = None
    #: (column, other table, other column) foreign keys published in TAP_SCHEMA.keys
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    #: extra plain indexes
    indexes: tuple[str, ...] = ()
    #: False: stored and served elsewhere, left out of TAP_SCHEMA (e.g. cutout bytes)
    public: bool = True

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _ra(description="Right ascension (ICRS)"):
    return Column("ra", "DOUBLE", description, "deg", "pos.eq.ra;meta.main", indexed=True, principal=True)


def _dec(description="Declination (ICRS)"):
    return Column("dec", "DOUBLE", description, "deg", "pos.eq.dec;meta.main", indexed=True, principal=True)


DIAOBJECT = Table(
    "diaobject",
    "Astronomical objects seen in alerts: Rubin diaObjects and ssObjects, ZTF objects. One row per object, "
    "updated by every alert on it.",
    (
        Column("objectid", "VARCHAR", "Object key: 'diaObject:<id>' or 'ssObject:<id>' (Rubin), the ZTF objectId "
               "(e.g. ZTF18aaxjdyr)", ucd="meta.id;meta.main", nullable=False, indexed=True, principal=True),
        Column("survey", "VARCHAR", "Survey that issued the alerts: rubin or ztf", ucd="meta.id;instr.obsty",
               principal=True),
        _ra("Right ascension (ICRS) of the object (Rubin diaObject mean; ZTF latest detection)"),
        _dec("Declination (ICRS) of the object (Rubin diaObject mean; ZTF latest detection)"),
        Column("ndetections", "INTEGER", "Detections of this object stored in diasource", ucd="meta.number",
               principal=True),
        Column("first_mjd", "DOUBLE", "Time of the first stored detection (MJD, TAI for Rubin, UTC for ZTF)", "d",
               "time.start;obs", indexed=True, principal=True),
        Column("last_mjd", "DOUBLE", "Time of the latest stored detection (MJD, TAI for Rubin, UTC for ZTF)", "d",
               "time.end;obs", indexed=True, principal=True),
        Column("last_alertid", "BIGINT", "alertid of the latest alert on this object", ucd="meta.id"),
        Column("last_ivorn", "VARCHAR", "IVORN of the latest VOEvent on this object", ucd="meta.ref.ivoid"),
        Column("tns_name", "VARCHAR", "Name given by the Transient Name Server (e.g. 2026abc), once reported",
               ucd="meta.id.cross", indexed=True, principal=True),
        Column("updated", "TIMESTAMP", "When this row was last written (UTC)", ucd="time.processing"),
    ),
    primary_key=("objectid",),
    position=("ra", "dec"),
    indexes=("last_mjd", "tns_name"),
)

DIASOURCE = Table(
    "diasource",
    "Detections on difference images: the triggering source of each alert and the previous ones it carries, "
    "one row per detection (deduplicated by id).",
    (
        Column("diasourceid", "BIGINT", "Detection id: Rubin diaSourceId, ZTF candid", ucd="meta.id;meta.main",
               nullable=False, indexed=True, principal=True),
        Column("objectid", "VARCHAR", "Object key (diaobject.objectid)", ucd="meta.id", indexed=True,
               principal=True),
        Column("survey", "VARCHAR", "Survey: rubin or ztf", ucd="meta.id;instr.obsty"),
        _ra(),
        _dec(),
        Column("ra_err", "DOUBLE", "Uncertainty of ra (null when the survey gives none)", "deg",
               "stat.error;pos.eq.ra"),
        Column("dec_err", "DOUBLE", "Uncertainty of dec (null when the survey gives none)", "deg",
               "stat.error;pos.eq.dec"),
        Column("mjd", "DOUBLE", "Time of the detection (MJD; Rubin: TAI midpoint, ZTF: UTC start of exposure)",
               "d", "time.epoch;obs", indexed=True, principal=True),
        Column("band", "VARCHAR", "Filter band (u g r i z y; ZTF g r i)", ucd="instr.bandpass", principal=True),
        Column("psf_flux", "DOUBLE", "PSF flux on the difference image", "nJy", "phot.flux.density"),
        Column("psf_flux_err", "DOUBLE", "Uncertainty of psf_flux", "nJy", "stat.error;phot.flux.density"),
        Column("mag", "DOUBLE", "Difference-image AB magnitude (Rubin: from psf_flux; ZTF: magpsf)", "mag",
               "phot.mag", principal=True),
        Column("mag_err", "DOUBLE", "Uncertainty of mag", "mag", "stat.error;phot.mag"),
        Column("snr", "DOUBLE", "Signal-to-noise ratio of the detection", ucd="stat.snr"),
        Column("reliability", "DOUBLE", "Real/bogus score, 0 to 1 (Rubin reliability, ZTF drb or rb)",
               ucd="stat.probability", principal=True),
        Column("is_negative", "SMALLINT", "1 when the difference flux is negative (ZTF isdiffpos = f)",
               ucd="meta.code"),
        Column("is_dipole", "SMALLINT", "1 when fit as a dipole (Rubin only)", ucd="meta.code"),
        Column("trail_length", "DOUBLE", "Length of a trailed source (Rubin only)", "arcsec", "phys.size.axisRatio"),
        Column("alertid", "BIGINT", "First alert that carried this detection", ucd="meta.id"),
    ),
    primary_key=("diasourceid",),
    position=("ra", "dec"),
    foreign_keys=(("objectid", "diaobject", "objectid"),),
    indexes=("objectid", "mjd"),
)

ALERT = Table(
    "alert",
    "Alert packets received: one row per packet.",
    (
        Column("alertid", "BIGINT", "Alert id: Rubin alertId (diaSourceId from schema 8.0), ZTF candid",
               ucd="meta.id;meta.main", nullable=False, indexed=True, principal=True),
        Column("ivorn", "VARCHAR", "IVORN of the VOEvent built from this alert", ucd="meta.ref.ivoid",
               indexed=True, principal=True),
        Column("survey", "VARCHAR", "Survey: rubin or ztf", ucd="meta.id;instr.obsty", principal=True),
        Column("schema_version", "VARCHAR", "Avro schema version the packet was decoded with (e.g. 7.4, 3.3)",
               ucd="meta.version"),
        Column("objectid", "VARCHAR", "Object key (diaobject.objectid)", ucd="meta.id", indexed=True,
               principal=True),
        Column("diasourceid", "BIGINT", "Triggering detection (diasource.diasourceid)", ucd="meta.id"),
        _ra("Right ascension (ICRS) of the triggering detection"),
        _dec("Declination (ICRS) of the triggering detection"),
        Column("mjd", "DOUBLE", "Time of the triggering detection (MJD)", "d", "time.epoch;obs", principal=True),
        Column("received", "TIMESTAMP", "When the gateway received the packet (UTC)", ucd="time.processing",
               indexed=True, principal=True),
        Column("origin", "VARCHAR", "Where the packet came from (file, Kafka topic/partition/offset)",
               ucd="meta.ref"),
        Column("simulated", "SMALLINT", "1 for simulated packets (bundled samples)", ucd="meta.code"),
    ),
    primary_key=("alertid",),
    position=("ra", "dec"),
    foreign_keys=(("objectid", "diaobject", "objectid"), ("diasourceid", "diasource", "diasourceid"),
                  ("ivorn", "voevent", "ivorn")),
    indexes=("ivorn", "objectid", "received"),
)

VOEVENT = Table(
    "voevent",
    "VOEvent 2.0 packets: built from alerts here, or received over VTP and Kafka.",
    (
        Column("ivorn", "VARCHAR", "IVORN of the event", ucd="meta.ref.ivoid;meta.main", nullable=False,
               indexed=True, principal=True),
        Column("role", "VARCHAR", "VOEvent role: observation, prediction, utility or test", ucd="meta.code",
               principal=True),
        Column("author", "VARCHAR", "Who/AuthorIVORN of the event", ucd="meta.ref.ivoid"),
        Column("event_time", "TIMESTAMP", "WhereWhen ISOTime of the event (as given, usually UTC)",
               ucd="time.epoch", indexed=True, principal=True),
        _ra("Right ascension (ICRS) from WhereWhen, when given"),
        _dec("Declination (ICRS) from WhereWhen, when given"),
        Column("error_radius", "DOUBLE", "WhereWhen Error2Radius", "deg", "stat.error;pos.eq"),
        Column("received", "TIMESTAMP", "When the gateway received or built the event (UTC)",
               ucd="time.processing", indexed=True, principal=True),
        Column("origin", "VARCHAR", "Source of the event (file, Kafka topic, VTP peer)", ucd="meta.ref"),
        Column("xml", "VARCHAR", "The VOEvent XML as sent", ucd="meta.code"),
    ),
    primary_key=("ivorn",),
    position=("ra", "dec"),
    indexes=("received", "event_time"),
)

CUTOUT = Table(
    "cutout",
    "Image cutouts shipped with alerts, served as FITS at /cutouts/<alertid>/<kind>.fits.",
    (
        Column("alertid", "BIGINT", "Alert that carried the cutout", ucd="meta.id", nullable=False, indexed=True),
        Column("kind", "VARCHAR", "difference, science or template", ucd="meta.code", nullable=False),
        Column("content", "BLOB", "FITS bytes as shipped (ZTF: gzipped)", ucd="meta.code"),
    ),
    primary_key=("alertid", "kind"),
    public=False,
)

TABLES: tuple[Table, ...] = (DIAOBJECT, DIASOURCE, ALERT, VOEVENT, CUTOUT)
PUBLIC_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.public)
BY_NAME = {t.name: t for t in TABLES}

_SQLITE_TYPES = {"BIGINT": "INTEGER", "INTEGER": "INTEGER", "SMALLINT": "INTEGER", "DOUBLE": "REAL", "REAL": "REAL",
                 "VARCHAR": "TEXT", "TIMESTAMP": "TEXT", "BLOB": "BLOB"}
_POSTGRES_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "DOUBLE": "double precision",
                   "REAL": "real", "VARCHAR": "text", "TIMESTAMP": "timestamp", "BLOB": "bytea"}


def sqlite_ddl() -> list[str]:
    """CREATE statements for SQLite: tables, plain indexes, and an R*Tree ``<table>_sky`` per positional table.

    The R*Tree holds (id = the table's rowid, ra_min, ra_max, dec_min, dec_max); for points min = max. A cone
    search first selects the rowids whose box meets the cone's bounding box, then checks the exact distance.
    """
    out = []
    for t in TABLES:
        cols = []
        for c in t.columns:
            sql_type = _SQLITE_TYPES[c.datatype]
            # a single INTEGER primary key becomes the rowid: the R*Tree and joins key on it for free
            if t.primary_key == (c.name,) and sql_type == "INTEGER":
                cols.append(f"{c.name} INTEGER PRIMARY KEY")
                continue
            cols.append(f"{c.name} {sql_type}" + ("" if c.nullable else " NOT NULL"))
        if not (len(t.primary_key) == 1 and _SQLITE_TYPES[t.column(t.primary_key[0]).datatype] == "INTEGER"):
            cols.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
        out.append(f"CREATE TABLE IF NOT EXISTS {t.name} ({', '.join(cols)})")
        for name in t.indexes:
            out.append(f"CREATE INDEX IF NOT EXISTS {t.name}_{name} ON {t.name} ({name})")
        if t.position:
            out.extend(_sqlite_sky_index(t))
    return out


def _sqlite_sky_index(t: Table) -> list[str]:
    # triggers keep the R*Tree in step with the table, whoever writes it
    ra, dec = t.position
    box = f"new.rowid, new.{ra}, new.{ra}, new.{dec}, new.{dec}"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {t.name}_sky USING rtree(id, ra_min, ra_max, dec_min, dec_max)",
        f"CREATE TRIGGER IF NOT EXISTS {t.name}_sky_insert AFTER INSERT ON {t.name} "
        f"WHEN new.{ra} IS NOT NULL AND new.{dec} IS NOT NULL "
        f"BEGIN INSERT INTO {t.name}_sky VALUES ({box}); END",
        f"CREATE TRIGGER IF NOT EXISTS {t.name}_sky_update AFTER UPDATE OF {ra}, {dec} ON {t.name} "
        f"BEGIN DELETE FROM {t.name}_sky WHERE id = old.rowid; "
        f"INSERT INTO {t.name}_sky SELECT {box} WHERE new.{ra} IS NOT NULL AND new.{dec} IS NOT NULL; END",
        f"CREATE TRIGGER IF NOT EXISTS {t.name}_sky_delete AFTER DELETE ON {t.name} "
        f"BEGIN DELETE FROM {t.name}_sky WHERE id = old.rowid; END",
    ]


def postgres_ddl(schema: str = SCHEMA) -> list[str]:
    """CREATE statements for PostgreSQL in ``schema``: tables, plain indexes, and a q3c index on
    ``q3c_ang2ipix(ra, dec)`` per positional table, which ``q3c_radial_query``/``q3c_poly_query`` use.

    q3c rather than pgsphere: Debian's pgsphere 1.1.1 for PostgreSQL 15 fails at CREATE EXTENSION ("commutator
    operator @> is already the commutator of operator <@"), and q3c's cone search is the faster of the two.
    """
    out = ["CREATE EXTENSION IF NOT EXISTS q3c", f"CREATE SCHEMA IF NOT EXISTS {schema}"]
    for t in TABLES:
        cols = [f"{c.name} {_POSTGRES_TYPES[c.datatype]}" + ("" if c.nullable else " NOT NULL") for c in t.columns]
        cols.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
        out.append(f"CREATE TABLE IF NOT EXISTS {schema}.{t.name} ({', '.join(cols)})")
        for c in t.columns:
            if c.datatype in ("VARCHAR", "BLOB") and c.name in ("xml", "content"):
                # lz4 compresses large values several times faster than the default pglz
                out.append(f"ALTER TABLE {schema}.{t.name} ALTER COLUMN {c.name} SET COMPRESSION lz4")
        for name in t.indexes:
            out.append(f"CREATE INDEX IF NOT EXISTS {t.name}_{name} ON {schema}.{t.name} ({name})")
        if t.position:
            ra, dec = t.position
            out.append(f"CREATE INDEX IF NOT EXISTS {t.name}_sky ON {schema}.{t.name} (q3c_ang2ipix({ra}, {dec}))")
    return out
