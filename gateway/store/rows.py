"""Event -> rows of the alert DB tables (the mapping documented in docs/store.rst).

Plain functions over plain tuples, in the column order of :mod:`gateway.store.schema`, so both backends (and
the benchmark) share them. Runs in the writer thread, never on the reactor.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from lxml import etree

from gateway.alerts import fields
from gateway.event import Event
from gateway.times import TimeError, format_iso, mjd_to_utc_iso, parse_iso
from gateway.voevent.parse import VOEventError, safe_fromstring

#: a gzipped ZTF cutout larger than this when unpacked is refused (a gzip bomb must not fill the DB)
MAX_CUTOUT_BYTES = 16 * 1024 * 1024


@dataclass
class Rows:
    """Rows one batch of events adds, per table (tuples in schema column order)."""

    alert: list[tuple] = field(default_factory=list)
    voevent: list[tuple] = field(default_factory=list)
    diasource: list[tuple] = field(default_factory=list)
    diaobject: list[tuple] = field(default_factory=list)
    cutout: list[tuple] = field(default_factory=list)

    def extend(self, other: "Rows") -> None:
        for name in ("alert", "voevent", "diasource", "diaobject", "cutout"):
            getattr(self, name).extend(getattr(other, name))


def timestamp(value: datetime) -> str:
    """Naive-UTC ISO 8601 with milliseconds: what both backends store in TIMESTAMP columns."""
    return format_iso(value, zone="")


def _iso_time(text: Optional[str]) -> Optional[str]:
    """A VOEvent ISOTime as a UTC timestamp string, or None when it does not parse (it is not ours to fix)."""
    if not text:
        return None
    try:
        return timestamp(parse_iso(text))
    except TimeError:
        return None


def _flag(value) -> Optional[int]:
    return None if value is None else int(bool(value))


def _between(xml: bytes, start: bytes, end: bytes) -> Optional[str]:
    i = xml.find(start)
    if i < 0:
        return None
    i += len(start)
    j = xml.find(end, i)
    return xml[i:j].decode("utf-8", "replace").strip() if j > i else None


def rows_for(event: Event) -> Rows:
    """All rows ``event`` adds: always a voevent row; for an alert also alert, diasource, diaobject, cutouts."""
    if event.alert is None:
        return Rows(voevent=[voevent_row_from_xml(event)])
    alert = event.alert
    det = event.detection or fields.detection(alert)
    key = fields.object_key(alert)
    alert_id = fields.alert_id(alert)
    received = timestamp(event.received)
    rows = Rows()
    rows.alert.append((alert_id, event.ivorn, alert.survey, alert.schema, key, det.source_id, det.ra, det.dec,
                       det.mjd, received, f"{alert.source}@{alert.position}", int(alert.simulated)))
    # the builder wrote these from the same detection; reading them back from the XML would cost a parse
    author = _between(event.xml, b"<AuthorIVORN>", b"</AuthorIVORN>")
    error = _between(event.xml, b"<Error2Radius>", b"</Error2Radius>")
    rows.voevent.append((event.ivorn, event.role, author, _iso_time(mjd_to_utc_iso(det.mjd, det.time_scale)),
                         det.ra, det.dec, float(error) if error else None, received, event.origin,
                         event.xml.decode("utf-8")))
    seen = set()
    detections = [det, *fields.previous_detections(alert)]
    for d in detections:
        if d.source_id is None or d.source_id in seen:
            continue
        seen.add(d.source_id)
        rows.diasource.append((d.source_id, key, alert.survey, d.ra, d.dec, d.ra_err, d.dec_err, d.mjd, d.band,
                               d.psf_flux, d.psf_flux_err, d.mag, d.mag_err, d.snr, d.reliability,
                               _flag(d.is_negative), _flag(d.is_dipole), d.trail_length, alert_id))
    summary = fields.object_summary(alert)
    mjds = [d.mjd for d in detections if d.mjd is not None]
    ra = summary["ra"] if summary["ra"] is not None else det.ra
    dec = summary["dec"] if summary["dec"] is not None else det.dec
    rows.diaobject.append((key, alert.survey, ra, dec, min(mjds, default=None), max(mjds, default=None), alert_id,
                           event.ivorn, received))
    for kind, content in fields.cutouts(alert).items():
        # as shipped (ZTF: gzipped): unpacking three stamps per alert here would triple the bytes written
        rows.cutout.append((alert_id, kind, content))
    return rows


def fits_bytes(content: bytes) -> bytes:
    """Plain FITS from a stored cutout: ZTF ships gzipped FITS; unpack it (bounded: a gzip bomb raises
    ValueError) so every cutout is served as plain FITS."""
    if content[:2] != b"\x1f\x8b":
        return content
    inflater = zlib.decompressobj(wbits=31)
    data = inflater.decompress(content, MAX_CUTOUT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"cutout unpacks to more than {MAX_CUTOUT_BYTES} bytes")
    return data


_NS_FREE_PATHS = {
    "author": "./Who/AuthorIVORN",
    "time": "./WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Time/TimeInstant/ISOTime",
    "position": "./WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Position2D",
}


def voevent_row_from_xml(event: Event) -> tuple:
    """The voevent row of an event that arrived as XML: WhereWhen and Who read from the packet (safely)."""
    author = time = ra = dec = error = None
    try:
        root = safe_fromstring(event.xml)
    except VOEventError:
        root = None  # already accepted upstream; store what we know rather than drop it
    if root is not None:
        # children of VOEvent are unqualified in VOEvent 2.0; strip any namespace anyway (pygcn-era packets)
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.startswith("{"):
                element.tag = etree.QName(element).localname
        author = root.findtext(_NS_FREE_PATHS["author"])
        time = _iso_time(root.findtext(_NS_FREE_PATHS["time"]))
        position = root.find(_NS_FREE_PATHS["position"])
        if position is not None:
            ra, dec = _number(position.findtext("Value2/C1")), _number(position.findtext("Value2/C2"))
            error = _number(position.findtext("Error2Radius"))
            if ((position.get("unit") or "deg") != "deg" or ra is None or dec is None
                    or not (0 <= ra <= 360 and -90 <= dec <= 90)):
                ra = dec = error = None  # other units are rare; never store a wrong position
    return (event.ivorn, event.role, author and author.strip(), time, ra, dec, error, timestamp(event.received),
            event.origin, event.xml.decode("utf-8", "replace"))


def _number(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None
