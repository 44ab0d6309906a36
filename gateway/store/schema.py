"""The gateway's DB schema, once, for both backends and for TAP_SCHEMA.

Every table and column is described here with its ADQL type, unit, UCD and description. Each backend
(:mod:`gateway.store.sqlite`, :mod:`gateway.store.postgres`) generates its DDL from these tables, and the TAP
service publishes the public ones as TAP_SCHEMA. The alert tables are created by the store; the forward outbox's
tables (internal: not public, so neither in TAP_SCHEMA nor queryable over TAP) by the outbox. The mapping from
Rubin and ZTF alerts to rows is in :mod:`gateway.store.rows` and ``docs/store.rst``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

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
    #: SQL literal the DB fills in when an INSERT leaves the column out
    default: Optional[str] = None
    unique: bool = False
    #: an id the DB assigns and never reuses (SQLite AUTOINCREMENT, PostgreSQL bigserial)
    autoincrement: bool = False
    #: large values: PostgreSQL compresses them with lz4, several times faster than the default pglz
    compressed: bool = False


@dataclass(frozen=True)
class Index:
    """A plain index over several columns, named ``<table>_<name>``."""

    name: str
    columns: tuple[str, ...]


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
    #: extra plain indexes: a column name, or an :class:`Index`
    indexes: tuple[Union[str, Index], ...] = ()
    #: False: stored and served elsewhere or internal, left out of TAP_SCHEMA (e.g. cutout bytes, the outbox)
    public: bool = True

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def index_definitions(self) -> list[tuple[str, str]]:
        """(index name, comma-separated columns) of each plain index."""
        return [(f"{self.name}_{i}", i) if isinstance(i, str) else (f"{self.name}_{i.name}", ", ".join(i.columns))
                for i in self.indexes]


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
        Column("first_mjd", "DOUBLE", "Time of the first stored detection (MJD, TAI)", "d",
               "time.start;obs", indexed=True, principal=True),
        Column("last_mjd", "DOUBLE", "Time of the latest stored detection (MJD, TAI)", "d",
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
        Column("mjd", "DOUBLE", "Time of the detection (MJD, TAI; Rubin: midpoint, ZTF: start of exposure)",
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
        Column("trail_length", "DOUBLE", "Length of a trailed source (Rubin only)", "arcsec", "phys.angSize"),
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
        Column("mjd", "DOUBLE", "Time of the triggering detection (MJD, TAI)", "d", "time.epoch;obs", principal=True),
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
        Column("xml", "VARCHAR", "The VOEvent XML as sent", ucd="meta.code", compressed=True),
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

CUTOUT_PACK = Table(
    "cutout_pack",
    "Where cutouts kept beside the DB are (pack files in store.cutouts or <db>.cutouts/, see gateway.store.packs).",
    (
        Column("alertid", "BIGINT", "Alert that carried the cutout", ucd="meta.id", nullable=False),
        Column("kind", "VARCHAR", "difference, science or template", ucd="meta.code", nullable=False),
        Column("pack", "VARCHAR", "Pack file name", ucd="meta.file", nullable=False),
        Column("byte_offset", "BIGINT", "Where the FITS bytes start in the pack", "byte", "meta.number",
               nullable=False),
        Column("byte_length", "BIGINT", "How many bytes", "byte", "meta.number", nullable=False),
    ),
    primary_key=("alertid", "kind"),
    public=False,
)


# -- the forward outbox (internal: times are Unix seconds, as the outbox's clock gives them). Text primary keys
# stay nullable as earlier versions created them (SQLite, unlike PostgreSQL, does not imply NOT NULL for them).

def _seconds(name: str, description: str, nullable: bool = False) -> Column:
    return Column(name, "DOUBLE", description, "s", "time.epoch", nullable=nullable)


def _text(name: str, description: str, nullable: bool = True, **flags) -> Column:
    return Column(name, "VARCHAR", description, nullable=nullable, **flags)


FORWARD_OUTBOX = Table(
    "forward_outbox",
    "One row per forward to make: queued before the source commits, claimed and sent by the route's worker.",
    (
        Column("id", "BIGINT", "Row id (what the operator names in vogateway outbox retry/drop)", nullable=False,
               autoincrement=True),
        _text("key", "Idempotency key: <route>:<ivorn>, or tns:<objectid> for TNS reports", nullable=False,
              unique=True),
        _text("route", "Route name", nullable=False),
        _text("kind", "Destination kind: gcn, webhook, command, tns, ...", nullable=False),
        _text("ivorn", "IVORN of the event forwarded"),
        _text("objectid", "Object key (diaobject.objectid), for once-per-object forwards"),
        Column("payload", "BLOB", "Bytes to send; NULL: the event's VOEvent (voevent or forward_payload)"),
        _text("meta", "JSON the destination needs besides the payload"),
        _text("status", "pending, sending, sent, failed or dropped", nullable=False),
        _text("stage", "send, or poll (TNS: the report was accepted, its reply is awaited)", nullable=False),
        Column("attempts", "INTEGER", "Delivery attempts made", nullable=False, default="0"),
        _seconds("next_attempt", "When the row is due"),
        _seconds("lease_until", "While sending: when the claim lapses (its process is then taken as dead)", True),
        Column("uncertain", "SMALLINT", "1 when an earlier attempt may have reached the endpoint", nullable=False,
               default="0"),
        _text("result", "What the endpoint answered (e.g. a TNS report id or name)"),
        _text("last_error", "Why the last attempt failed"),
        _seconds("created", "When the row was queued"),
        _seconds("updated", "When the row was last written"),
    ),
    primary_key=("id",),
    indexes=(Index("due", ("route", "status", "next_attempt")),),
    public=False,
)

TNS_REPORT = Table(
    "tns_report",
    "Every object ever queued for a TNS report, whichever route queued it: an object is reported once.",
    (
        _text("objectid", "Object key (diaobject.objectid)"),
        _text("route", "Route that queued the report"),
        _text("ivorn", "IVORN of the event reported"),
        _text("report_id", "Report id TNS gave"),
        _text("tns_name", "Name TNS gave the object"),
        _text("status", "queued, submitted, named or failed", nullable=False),
        _seconds("created", "When the object was queued"),
        _seconds("updated", "When the row was last written"),
    ),
    primary_key=("objectid",),
    public=False,
)

#: the VOEvent of a forwarded event the store had not written when its rows were queued (kept once per event)
FORWARD_PAYLOAD = Table(
    "forward_payload",
    "VOEvents of forwarded events missing from voevent, one copy however many routes queued them.",
    (
        _text("ivorn", "IVORN of the event"),
        Column("xml", "BLOB", "The VOEvent XML", nullable=False),
        _seconds("created", "When it was copied"),
    ),
    primary_key=("ivorn",),
    public=False,
)

#: created by the store
ALERT_TABLES: tuple[Table, ...] = (DIAOBJECT, DIASOURCE, ALERT, VOEVENT, CUTOUT, CUTOUT_PACK)
#: created by the forward outbox
OUTBOX_TABLES: tuple[Table, ...] = (FORWARD_OUTBOX, TNS_REPORT, FORWARD_PAYLOAD)
TABLES: tuple[Table, ...] = ALERT_TABLES + OUTBOX_TABLES
PUBLIC_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.public)
BY_NAME = {t.name: t for t in TABLES}

#: columns holding an alert id (alert.alertid): TAP results with one get a DataLink service descriptor
ALERT_ID_COLUMNS: dict[str, tuple[str, ...]] = {"alert": ("alertid",), "diasource": ("alertid",),
                                                 "diaobject": ("last_alertid",)}

#: VARCHAR columns that may hold any Unicode text (VOEvents, names and paths others wrote): TAP publishes them as
#: VOTable unicodeChar; the other VARCHAR columns hold ASCII (ids, codes, bands) and are VOTable char
UNICODE_TEXT: dict[str, tuple[str, ...]] = {
    "voevent": ("ivorn", "author", "origin", "xml"),
    "alert": ("ivorn", "origin"),
    "diaobject": ("last_ivorn",),
}
