"""Reads for the HTTP pages and for replay: one object with its light curve, a cone over objects, stored events
by the time they were received. Each function runs on a read connection in a reader thread
(``Database.read(fn, ...)``), never on the reactor; :class:`gateway.store.Store` wraps them in Deferreds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from gateway.store.schema import DIAOBJECT, SCHEMA, Table

#: the columns a cone search over objects returns, in order (all of diaobject's but its bookkeeping)
CONE_COLUMNS: tuple[str, ...] = ("objectid", "survey", "ra", "dec", "ndetections", "first_mjd", "last_mjd",
                                 "last_ivorn", "tns_name")
#: the light-curve columns of an object's detections
DETECTION_COLUMNS: tuple[str, ...] = ("diasourceid", "mjd", "band", "mag", "mag_err", "psf_flux", "psf_flux_err",
                                      "snr", "reliability", "is_negative", "ra", "dec", "alertid")


@dataclass
class ObjectRecord:
    """One object as the object page shows it: its diaobject row, detections oldest first, its alerts (with the
    kinds of cutout stored for each) and VOEvents, newest first. Plain dicts, ready for JSON."""

    object: dict[str, Any]
    detections: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _dicts(cursor, columns) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def object_record(conn, p: str, objectid: str, limit: int) -> Optional[ObjectRecord]:
    """The object ``objectid`` (``p``: the backend's placeholder), or None; at most ``limit`` detections, alerts
    and events each (the newest)."""
    columns = [c.name for c in DIAOBJECT.columns]
    row = conn.execute(f"SELECT {', '.join(columns)} FROM {SCHEMA}.diaobject WHERE objectid = {p}",
                       (objectid,)).fetchone()
    if row is None:
        return None
    record = ObjectRecord(dict(zip(columns, row)))
    newest = conn.execute(f"SELECT {', '.join(DETECTION_COLUMNS)} FROM {SCHEMA}.diasource WHERE objectid = {p} "
                          f"ORDER BY mjd DESC LIMIT {int(limit)}", (objectid,))
    record.detections = _dicts(newest, DETECTION_COLUMNS)[::-1]
    alert_columns = ("alertid", "ivorn", "mjd", "received", "diasourceid")
    alerts = conn.execute(f"SELECT {', '.join(alert_columns)} FROM {SCHEMA}.alert WHERE objectid = {p} "
                          f"ORDER BY mjd DESC LIMIT {int(limit)}", (objectid,))
    record.alerts = _dicts(alerts, alert_columns)
    if record.alerts:
        ids = [a["alertid"] for a in record.alerts]
        kinds: dict[int, list[str]] = {}
        marks = ", ".join([p] * len(ids))
        # in the DB (PostgreSQL, older SQLite DBs) or in pack files beside it (SQLite)
        cutouts = conn.execute(f"SELECT alertid, kind FROM {SCHEMA}.cutout WHERE alertid IN ({marks}) UNION "
                               f"SELECT alertid, kind FROM {SCHEMA}.cutout_pack WHERE alertid IN ({marks}) "
                               "ORDER BY kind", ids + ids)
        for alert_id, kind in cutouts.fetchall():
            kinds.setdefault(alert_id, []).append(kind)
        for alert in record.alerts:
            alert["cutouts"] = kinds.get(alert["alertid"], [])
    event_columns = ("ivorn", "role", "event_time", "received")
    events = conn.execute(f"SELECT v.ivorn, v.role, v.event_time, v.received FROM {SCHEMA}.voevent v "
                          f"JOIN {SCHEMA}.alert a ON a.ivorn = v.ivorn WHERE a.objectid = {p} "
                          f"ORDER BY v.received DESC LIMIT {int(limit)}", (objectid,))
    record.events = _dicts(events, event_columns)
    return record


def cone(conn, backend, ra: float, dec: float, radius: float, limit: int,
         table: Table = DIAOBJECT) -> tuple[list[tuple], bool]:
    """(rows of :data:`CONE_COLUMNS`, in objectid order, at most ``limit``; True when more matched) for the objects
    within ``radius`` deg of (``ra``, ``dec``), through the backend's sky index."""
    condition, params = backend.cone(table, ra, dec, radius)
    sql = (f"SELECT {', '.join(CONE_COLUMNS)} FROM {SCHEMA}.{table.name} WHERE {condition} "
           f"ORDER BY objectid LIMIT {int(limit) + 1}")
    rows = conn.execute(sql, params).fetchall()
    return rows[:limit], len(rows) > limit


@dataclass(frozen=True)
class StoredEvent:
    """One stored VOEvent, as replay sends it again: ``received`` is the cursor for the next page."""

    ivorn: str
    role: str
    received: Any  # as the backend returns it: text on SQLite, a datetime on PostgreSQL
    xml: bytes


def _received_range(p: str, since: Optional[str], until: Optional[str]) -> tuple[list[str], list]:
    where, params = [], []
    if since is not None:
        where.append(f"received >= {p}")
        params.append(since)
    if until is not None:
        where.append(f"received < {p}")
        params.append(until)
    return where, params


def count_received(conn, p: str, since: Optional[str], until: Optional[str]) -> int:
    """How many stored events were received in [``since``, ``until``)."""
    where, params = _received_range(p, since, until)
    sql = f"SELECT count(*) FROM {SCHEMA}.voevent" + (f" WHERE {' AND '.join(where)}" if where else "")
    return int(conn.execute(sql, params).fetchone()[0])


def events_received(conn, p: str, since: Optional[str], until: Optional[str], after: Optional[tuple],
                    limit: int) -> list[StoredEvent]:
    """Stored events received in [``since``, ``until``) (naive-UTC ISO text; None: open), oldest first, at most
    ``limit``, starting after the (received, ivorn) cursor ``after``: keyset pages, so a long replay reads in
    bounded memory and each page is one index range."""
    where, params = _received_range(p, since, until)
    if after is not None:
        where.append(f"(received > {p} OR (received = {p} AND ivorn > {p}))")
        params += [after[0], after[0], after[1]]
    sql = (f"SELECT ivorn, role, received, xml FROM {SCHEMA}.voevent"
           + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY received, ivorn LIMIT {int(limit)}")
    return [StoredEvent(ivorn, role, received, xml.encode("utf-8") if isinstance(xml, str) else bytes(xml))
            for ivorn, role, received, xml in conn.execute(sql, params).fetchall()]

