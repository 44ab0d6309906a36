"""Which alert, which object: the ids the gateway names things by (IVORNs, store keys, Citations).

Part of the alert reading of :mod:`gateway.alerts.fields` (where the per-survey field names are tabled).
"""

from __future__ import annotations

from typing import Optional

from gateway import times
from gateway.alerts import Alert
from gateway.view import finite


def _id(value) -> Optional[int]:
    """An object/source id, or None: Rubin writes 0 or null for "no object"."""
    return value if value else None


def alert_id(alert: Alert) -> int:
    """The alert's id: Rubin ``alertId`` (until 7.x) or ``diaSourceId`` (8.0+); ZTF ``candid``."""
    record = alert.record
    if alert.survey == "ztf":
        return record["candid"]
    value = record.get("alertId")
    return value if value is not None else record["diaSourceId"]


def issue_id(alert: Alert) -> str:
    """What tells this issue of an alert from any other: the local id of its VOEvent's IVORN.

    Rubin until 7.x: ``alertId`` (a re-issued alert gets a new one). Rubin 8.0+: the alert is keyed by
    ``diaSourceId``, which a reprocessed diaSource keeps, so its processing time is added:
    ``<diaSourceId>-p<MJD>`` (``timeProcessedMjdTai``, MJD TAI, 9.0+; ``time_processed``, UTC, in 8.0; 6 decimals,
    0.09 s). ZTF: ``candid``. The same packet always gives the same id (a replay is recognised by its IVORN).
    """
    record = alert.record
    if alert.survey == "ztf" or record.get("alertId") is not None:
        return str(alert_id(alert))
    source = record["diaSource"]
    processed = source.get("timeProcessedMjdTai")
    if processed is None and source.get("time_processed") is not None:
        processed = times.datetime_to_mjd(source["time_processed"])
    processed = finite(processed)
    return str(source["diaSourceId"]) if processed is None else f"{source['diaSourceId']}-p{processed:.6f}"


def object_key(alert: Alert) -> str:
    """A stable key of the astrophysical object, for citations and the store.

    Rubin: "diaObject:<id>", else "ssObject:<id>" for a solar-system source, else "diaSource:<id>" (an orphan
    source: no earlier alert can share it). ZTF: the ``objectId`` as published, e.g. "ZTF18aaxjdyr".
    """
    record = alert.record
    if alert.survey == "ztf":
        return record["objectId"]
    source = record["diaSource"]
    obj = record.get("diaObject")
    dia = _id(source.get("diaObjectId")) or (_id(obj.get("diaObjectId")) if obj else None)
    if dia is not None:
        return f"diaObject:{dia}"
    ss = _ss_object_id(record)
    if ss is not None:
        return f"ssObject:{ss}"
    return f"diaSource:{source['diaSourceId']}"


def _ss_object_id(record: dict) -> Optional[int]:
    ss = _id(record["diaSource"].get("ssObjectId"))
    if ss is None:
        for key in ("ssObject", "ssSource"):
            sub = record.get(key)
            if sub and _id(sub.get("ssObjectId")):
                return sub["ssObjectId"]
    return ss
