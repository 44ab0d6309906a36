"""Event -> rows of the alert DB tables (the mapping documented in docs/store.rst).

Plain functions over plain tuples, in the column order of :mod:`gateway.store.schema`, so both backends (and
the benchmark) share them. Runs in the writer thread, never on the reactor.

Every ``mjd`` column holds TAI (:data:`MJD_SCALE`): Rubin publishes TAI, ZTF UTC, and one column must mean one
thing to be compared, sorted or differenced. TAI, because it is Rubin's own scale (no conversion for most rows)
and a uniform one: the difference of two TAI MJDs is the time elapsed, across leap seconds, which light curves
and periods need; UTC MJDs have no value for the leap second itself. ZTF's UTC is converted here, exactly
(:func:`gateway.times.to_tai`, the leap-second table).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from gateway.event import Event
from gateway.times import TimeError, format_iso, parse_iso, to_tai
from gateway.view import View
from gateway.voevent.build import PROFILES
from gateway.voevent.parse import view_of
from gateway.voevent.skeleton import mid_exposure_iso

#: the time scale of every MJD column of the alert DB
MJD_SCALE = "tai"
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
    #: cutouts already in a pack file (a worker wrote them): (alertid, kind, pack, offset, length)
    cutout_pack: list[tuple] = field(default_factory=list)

    def extend(self, other: "Rows") -> None:
        for name in ("alert", "voevent", "diasource", "diaobject", "cutout", "cutout_pack"):
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


def stored_mjd(mjd: Optional[float], scale: Optional[str]) -> Optional[float]:
    """An MJD in ``scale`` ("tai" or "utc") as the DB stores it: TAI; None when missing or not a usable time."""
    if mjd is None:
        return None
    try:
        return to_tai(mjd, scale)
    except TimeError:
        return None


def _flag(value) -> Optional[int]:
    return None if value is None else int(bool(value))


def rows_for(event: Event) -> Rows:
    """All rows ``event`` adds: always a voevent row; for an alert also alert, diasource, diaobject, cutouts."""
    view = view_of(event)
    rows = Rows(voevent=[(event.ivorn, event.role, view.author, _iso_time(_event_time(event, view)), view.ra, view.dec,
                          view.error_radius, timestamp(event.received), event.origin,
                          event.xml.decode("utf-8", "replace"))])
    rows.extend(event.rows if event.rows is not None else alert_rows(event, view))
    return rows


def _event_time(event: Event, view: View) -> Optional[str]:
    """The VOEvent's ISOTime: for our own packets the middle of the exposure, as the builder writes it (ZTF's
    alert times are the start); for received packets the view read it from the packet already."""
    profile = PROFILES.get(view.survey) if event.alert is not None else None
    return view.iso_utc if profile is None else mid_exposure_iso(view, profile.exposure_s)


def alert_rows(event: Event, view: Optional[View] = None) -> Rows:
    """The rows of the alert behind ``event`` but its voevent row (none for an event that arrived as XML): what a
    worker process prepares with the event, since they do not depend on Citations."""
    view = view or view_of(event)
    rows = Rows()
    alert, det = event.alert, view.detection
    if alert is None or det is None:
        return rows
    key, alert_id = view.object_key, view.alert_id
    received = timestamp(event.received)
    rows.alert.append((alert_id, event.ivorn, alert.survey, alert.schema, key, det.source_id, det.ra, det.dec,
                       stored_mjd(det.mjd, det.time_scale), received, f"{alert.source}@{alert.position}",
                       int(alert.simulated)))
    seen = set()
    detections = [det, *view.previous]
    for d in detections:
        if d.source_id is None or d.source_id in seen:
            continue
        seen.add(d.source_id)
        rows.diasource.append((d.source_id, key, alert.survey, d.ra, d.dec, d.ra_err, d.dec_err,
                               stored_mjd(d.mjd, d.time_scale), d.band,
                               d.psf_flux, d.psf_flux_err, d.mag, d.mag_err, d.snr, d.reliability,
                               _flag(d.is_negative), _flag(d.is_dipole), d.trail_length, alert_id))
    summary = view.summary
    mjds = [m for m in (stored_mjd(d.mjd, d.time_scale) for d in detections) if m is not None]
    ra = summary["ra"] if summary.get("ra") is not None else det.ra
    dec = summary["dec"] if summary.get("dec") is not None else det.dec
    rows.diaobject.append((key, alert.survey, ra, dec, min(mjds, default=None), max(mjds, default=None), alert_id,
                           event.ivorn, received))
    for kind, content in view.cutouts.items():
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
