"""Reading alerts: every per-survey, per-schema-version field name lives here and nowhere else.

:func:`view` reads an alert once into the survey-neutral :class:`gateway.view.View` that the rest of the gateway
uses; the functions it is made of are public for tools and tests.


======================  ===============================  ===============================  =====================
quantity                Rubin 3.0, 4.0                   Rubin 5.0 ... 11.x               ZTF 3.x
======================  ===============================  ===============================  =====================
alert id                ``alertId``                      ``alertId`` (<8.0),              ``candid``
                                                         ``diaSourceId`` (>=8.0)
object                  ``diaObjectId``/``ssObjectId``   same                             ``objectId``
declination             ``decl``, ``declErr``            ``dec``, ``decErr``              ``candidate.dec``
time                    ``midPointTai`` (MJD TAI)        ``midpointMjdTai`` (MJD TAI)     ``candidate.jd`` (JD
                                                                                          UTC, exposure *start*)
band                    ``filterName``                   ``band``                         ``fid`` 1/2/3 = g/r/i
difference flux         ``psFlux``, ``psFluxErr`` (nJy)  ``psfFlux``, ``psfFluxErr``      ``magpsf``, ``sigmapsf``
                                                                                          (AB mag)
reliability             (``spuriousness``: not used)     ``reliability`` (0-1)            ``drb``, else ``rb``
negative                --                               ``is_negative`` (7.3, 7.4),      ``isdiffpos`` 'f'/'0'
                                                         ``isNegative`` (>=8.0)
previous detections     ``prvDiaSources``                ``prvDiaSources``                ``prv_candidates`` with
                                                                                          a ``candid``
upper limits            ``prvDiaNondetectionLimits``     same (until 7.4)                 ``prv_candidates``
                                                                                          without ``candid``
======================  ===============================  ===============================  =====================

Fluxes are in nJy, magnitudes AB, with ``mag = 31.4 - 2.5 log10(flux / nJy)`` both ways. Times are MJD in the
scale the survey publishes (``time_scale``: "tai" for Rubin, "utc" for ZTF); the view adds both scales and the
UTC ISO-8601 text (:mod:`gateway.times`, a leap-second table: astropy.time costs ~100 us per call).

These are pure functions on :class:`gateway.alerts.Alert`: no I/O, no copies of big fields, cheap enough for
the hot path (thousands of alerts a second).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Callable, Optional

from gateway import times
from gateway.alerts import Alert, AlertError
from gateway.alerts.ids import _id, _ss_object_id, alert_id, issue_id, object_key
from gateway.view import Detection, UpperLimit, View, finite, flux_to_mag, mag_to_flux

__all__ = ["Detection", "UpperLimit", "flux_to_mag", "mag_to_flux", "view", "detection", "previous_detections",
           "upper_limits", "object_summary", "cutouts", "is_solar_system", "alert_id", "object_key", "n_previous",
           "exposure_time", "limiting_mag", "issue_id"]

#: ZTF filter ids
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
#: JD of MJD 0
MJD_OFFSET = 2400000.5
#: ZTF ``ssdistnr`` (arcsec) below which the candidate is taken to be the known solar-system object ``ssnamenr``.
#: The ZTF pipeline fills ``ssnamenr`` for any known object within 30"; 5" is a common, conservative match radius.
ZTF_SSO_RADIUS_ARCSEC = 5.0
#: Rubin bands, in the order used by the per-band diaObject summary columns
RUBIN_BANDS = ("u", "g", "r", "i", "z", "y")
#: signal-to-noise of a detection (Rubin's DIA threshold; the limits ZTF ships are 5 sigma too)
DETECTION_SIGMA = 5.0


# ---------------------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _RubinNames:
    """Field names of one Rubin schema major version."""

    dec: str
    dec_err: str
    mjd: str
    band: str
    flux: str
    flux_err: str
    object_flux: str  # diaObject per-band mean flux column, "{b}" replaced by the band
    object_flux_err: str
    object_ndata: str


_OLD = _RubinNames("decl", "declErr", "midPointTai", "filterName", "psFlux", "psFluxErr",
                   "{b}PSFluxMean", "{b}PSFluxMeanErr", "{b}PSFluxNdata")
_NEW = _RubinNames("dec", "decErr", "midpointMjdTai", "band", "psfFlux", "psfFluxErr",
                   "{b}_psfFluxMean", "{b}_psfFluxMeanErr", "{b}_psfFluxNdata")


@lru_cache(maxsize=64)
def _rubin_names(schema: str) -> _RubinNames:
    """Names for schema "M.m": 5.0 renamed decl, midPointTai, filterName, psFlux (DM-37868 / RFC-877)."""
    try:
        major = int(schema.split(".")[0])
    except ValueError:
        major = 99  # an unparsable version from a registry: assume the current naming
    return _OLD if major < 5 else _NEW


# ------------------------------------------------------------------------------------------------------- public API


def detection(alert: Alert) -> Detection:
    """The detection that triggered the alert (Rubin ``diaSource``, ZTF ``candidate``)."""
    record = alert.record
    if alert.survey == "ztf":
        return _ztf_detection(record["candidate"], record["objectId"])
    names = _rubin_names(alert.schema)
    det = _rubin_detection(record["diaSource"], names)
    if det.object_id is None:
        obj = record.get("diaObject")
        fallback = _id(obj.get("diaObjectId")) if obj else None
        if fallback is not None:
            # frozen dataclass: rebuild with the alert-level object id (diaSource.diaObjectId may be null)
            det = _with_object(det, fallback)
    return det


def previous_detections(alert: Alert) -> list[Detection]:
    """Earlier real detections of the object shipped in the alert, oldest first as shipped."""
    record = alert.record
    if alert.survey == "ztf":
        object_id = record["objectId"]
        return [_ztf_detection(p, object_id) for p in (record.get("prv_candidates") or ())
                if p.get("candid") is not None and p.get("magpsf") is not None]
    names = _rubin_names(alert.schema)
    return [_rubin_detection(s, names) for s in (record.get("prvDiaSources") or ())]


def upper_limits(alert: Alert) -> list[UpperLimit]:
    """Earlier non-detections shipped in the alert.

    ZTF: ``prv_candidates`` without ``candid`` (``diffmaglim``, 5 sigma). Rubin (until 7.x):
    ``prvDiaNondetectionLimits``, limiting magnitude from ``diaNoise`` (nJy) as 5 sigma; and (every version)
    ``prvDiaForcedSources`` below 5 sigma, limiting magnitude from ``psfFluxErr`` as 5 sigma.
    """
    record = alert.record
    if alert.survey == "ztf":
        return [UpperLimit(p["jd"] - MJD_OFFSET, "utc", ZTF_BANDS.get(p.get("fid")), finite(p.get("diffmaglim")))
                for p in (record.get("prv_candidates") or ())
                if p.get("candid") is None and p.get("jd") is not None]
    names = _rubin_names(alert.schema)
    limits = []
    for row in record.get("prvDiaNondetectionLimits") or ():
        noise = finite(row.get("diaNoise"))
        mag = flux_to_mag(5.0 * noise)[0] if noise is not None else None
        limits.append(UpperLimit(row[names.mjd], "tai", row.get(names.band), mag))
    # forced photometry below the detection threshold is a non-detection too: its 5-sigma limit
    for row in record.get("prvDiaForcedSources") or ():
        flux, error = finite(row.get(names.flux)), finite(row.get(names.flux_err))
        if flux is not None and error is not None and error > 0 and flux < DETECTION_SIGMA * error:
            limits.append(UpperLimit(row[names.mjd], "tai", row.get(names.band),
                                     flux_to_mag(DETECTION_SIGMA * error)[0]))
    return limits


def exposure_time(det: Detection) -> Optional[float]:
    """Exposure time of a detection's image, s: ZTF ``exptime``, Rubin ``exposureTime`` (11.1+); else None."""
    extra = det.extra or {}
    value = extra.get("exptime", extra.get("exposureTime"))
    value = finite(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return value if value is not None and value > 0 else None


def limiting_mag(det: Detection) -> Optional[float]:
    """The 5-sigma limit (AB) at a detection: ZTF ``diffmaglim`` of its image; Rubin from ``psfFluxErr``."""
    if det.time_scale == "utc":  # ZTF
        return finite(det.extra.get("diffmaglim"))
    error = det.psf_flux_err
    return flux_to_mag(DETECTION_SIGMA * error)[0] if error is not None and error > 0 else None


def n_previous(alert: Alert) -> int:
    """How many earlier real detections the alert ships (without building them)."""
    record = alert.record
    if alert.survey == "ztf":
        return sum(1 for p in (record.get("prv_candidates") or ())
                   if p.get("candid") is not None and p.get("magpsf") is not None)
    return len(record.get("prvDiaSources") or ())


def object_summary(alert: Alert) -> dict[str, Any]:
    """What the survey says about the whole object, in names that do not depend on the schema version.

    Always present (None when unknown):

    - ``n_detections``: detections of the object so far (Rubin ``nDiaSources`` from 8.0, before that the sum of
      the per-band ``psfFluxNdata``; ZTF ``ndethist``);
    - ``first_mjd``, ``last_mjd``: MJD of the first and latest detection (Rubin ``first/lastDiaSourceMjdTai``
      from 8.0; ZTF ``jdstarthist``, ``jdendhist``), in ``time_scale`` ("tai" Rubin, "utc" ZTF);
    - ``ra``, ``dec``: the object's mean position, deg (Rubin diaObject; None for ZTF).

    Present only when the survey gives them, per band b in u g r i z y:
    ``{b}_psf_flux_mean``, ``{b}_psf_flux_mean_err`` (nJy), ``{b}_n_detections``.
    """
    record = alert.record
    if alert.survey == "ztf":
        c = record["candidate"]
        first, last = c.get("jdstarthist"), c.get("jdendhist")
        return {
            "n_detections": c.get("ndethist"),
            "first_mjd": None if first is None else first - MJD_OFFSET,
            "last_mjd": None if last is None else last - MJD_OFFSET,
            "time_scale": "utc",
            "ra": None,
            "dec": None,
        }
    names = _rubin_names(alert.schema)
    obj = record.get("diaObject") or {}
    summary: dict[str, Any] = {
        "n_detections": obj.get("nDiaSources"),
        "first_mjd": finite(obj.get("firstDiaSourceMjdTai")),
        "last_mjd": finite(obj.get("lastDiaSourceMjdTai")),
        "time_scale": "tai",
        "ra": finite(obj.get("ra")),
        "dec": finite(obj.get(names.dec)),
    }
    ndata_total = 0
    for b, mean_key, err_key, ndata_key in _band_keys(names):
        mean = finite(obj.get(mean_key))
        if mean is not None:
            summary[f"{b}_psf_flux_mean"] = mean
            err = finite(obj.get(err_key))
            if err is not None:
                summary[f"{b}_psf_flux_mean_err"] = err
        ndata = obj.get(ndata_key)
        if ndata:
            summary[f"{b}_n_detections"] = ndata
            ndata_total += ndata
    if summary["n_detections"] is None and ndata_total:
        summary["n_detections"] = ndata_total
    return summary


@lru_cache(maxsize=4)
def _band_keys(names: _RubinNames) -> tuple[tuple[str, str, str, str], ...]:
    """(band, mean flux, its error, number of detections) diaObject column names, per band."""
    return tuple((b, names.object_flux.format(b=b), names.object_flux_err.format(b=b), names.object_ndata.format(b=b))
                 for b in RUBIN_BANDS)


#: cutout kind -> record field, in the order they are returned
_CUTOUTS = (("difference", "cutoutDifference"), ("science", "cutoutScience"), ("template", "cutoutTemplate"))


def cutouts(alert: Alert) -> dict[str, bytes]:
    """Cutout images shipped with the alert: kind ("difference", "science", "template") -> bytes.

    Rubin: FITS as shipped; ZTF: gzipped FITS as shipped (``stampData``). Absent or null cutouts are left out.
    """
    record = alert.record
    found = {}
    for kind, key in _CUTOUTS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, dict):  # ZTF: {fileName, stampData}
            value = value.get("stampData")
        if value:
            found[kind] = value
    return found


def is_solar_system(alert: Alert) -> bool:
    """True when the source is associated with a known solar-system object.

    Rubin: an ``ssObjectId`` on the diaSource, or an ssObject/ssSource in the alert. ZTF: a named known object
    (``ssnamenr``) within :data:`ZTF_SSO_RADIUS_ARCSEC` (``ssdistnr``, -999 when none).
    """
    record = alert.record
    if alert.survey == "ztf":
        c = record["candidate"]
        name, dist = c.get("ssnamenr"), c.get("ssdistnr")
        return bool(name) and name != "null" and dist is not None and 0.0 <= dist <= ZTF_SSO_RADIUS_ARCSEC
    return _ss_object_id(record) is not None


# ------------------------------------------------------------------------------------------------ per-survey makers


def _rubin_detection(src: dict, names: _RubinNames) -> Detection:
    # positional, in Detection's field order: ~31 per alert, the worker's most frequent call
    get = src.get
    flux, flux_err = finite(get(names.flux)), finite(get(names.flux_err))
    mag, mag_err = flux_to_mag(flux, flux_err)
    negative = get("isNegative")
    if negative is None:
        negative = get("is_negative")
    return Detection(
        get("diaSourceId"), get("diaObjectId") or get("ssObjectId") or None,  # Rubin writes 0 or null for "none"
        finite(get("ra")), finite(get(names.dec)), finite(get("raErr")), finite(get(names.dec_err)),
        src[names.mjd], "tai", get(names.band), flux, flux_err, mag, mag_err, finite(get("snr")),
        finite(get("reliability")), get("isDipole"), negative, finite(get("trailLength")), "mid", src)


def _ztf_detection(c: dict, object_id: str) -> Detection:
    mag, mag_err = finite(c.get("magpsf")), finite(c.get("sigmapsf"))
    flux, flux_err = mag_to_flux(mag, mag_err)
    diffpos = c.get("isdiffpos")
    negative = None if diffpos is None else diffpos in ("f", "0")
    if negative and flux is not None:
        flux = -flux
    reliability = c.get("drb")
    if reliability is None:
        reliability = c.get("rb")
    return Detection(
        source_id=c.get("candid"),
        object_id=object_id,
        ra=finite(c.get("ra")),
        dec=finite(c.get("dec")),
        ra_err=None,
        dec_err=None,
        mjd=c["jd"] - MJD_OFFSET,
        time_scale="utc",
        band=ZTF_BANDS.get(c.get("fid")),
        psf_flux=flux,
        psf_flux_err=flux_err,
        mag=mag,
        mag_err=mag_err,
        snr=None,
        reliability=finite(reliability),
        is_dipole=None,
        is_negative=negative,
        trail_length=None,
        time_ref="start",
        extra=c,
    )


def _with_object(det: Detection, object_id) -> Detection:
    return replace(det, object_id=object_id)


# ------------------------------------------------------------------------------------------------------ the view


def view(alert: Alert, author: Optional[str] = None,
         error_radius: Optional[Callable[[Detection], Optional[float]]] = None) -> View:
    """The alert read once into the survey-neutral :class:`View`. The VOEvent builder, which makes it, says who
    the author is and how large the position error is that it publishes (``error_radius`` of the detection).

    Raises :class:`AlertError` with a reason for a person: a malformed record, no usable position, no usable time.
    """
    try:
        det = detection(alert)
        ra, dec, mjd, scale = det.ra, det.dec, det.mjd, det.time_scale
        if ra is None or dec is None:
            raise AlertError(alert.source, alert.position, "no usable position: ra/dec missing or NaN")
        if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
            raise AlertError(alert.source, alert.position, f"position out of range: ra={ra!r}, dec={dec!r} deg")
        if not isinstance(mjd, (int, float)) or isinstance(mjd, bool):
            raise AlertError(alert.source, alert.position, f"no usable time: MJD {mjd!r}")
        try:
            mjd_tai, mjd_utc, iso = times.to_tai(mjd, scale), times.to_utc(mjd, scale), times.mjd_to_utc_iso(mjd, scale)
        except times.TimeError as error:
            raise AlertError(alert.source, alert.position, f"no usable time: {error}") from None
        summary = object_summary(alert)
        previous = tuple(previous_detections(alert))
        return View(
            survey=alert.survey, schema=alert.schema, simulated=alert.simulated, alert_id=alert_id(alert),
            object_key=object_key(alert), ra=ra, dec=dec, mjd=mjd, time_scale=scale, mjd_tai=mjd_tai,
            mjd_utc=mjd_utc, iso_utc=iso, time_ref=det.time_ref, band=det.band, mag=det.mag, mag_err=det.mag_err,
            flux=det.psf_flux, flux_err=det.psf_flux_err, snr=det.snr, reliability=det.reliability,
            is_negative=det.is_negative, is_dipole=det.is_dipole, trail_length=det.trail_length,
            limiting_mag=_limiting_mag(alert, det), solar_system=is_solar_system(alert),
            n_detections=summary.get("n_detections"), n_previous=len(previous), detection=det, previous=previous,
            upper_limits=tuple(upper_limits(alert)), summary=summary, cutouts=cutouts(alert), author=author,
            error_radius=None if error_radius is None else error_radius(det))
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # AlertError is none of these: it passes
        raise AlertError(alert.source, alert.position, malformed(error)) from None


def _limiting_mag(alert: Alert, det: Detection) -> Optional[float]:
    return finite(det.extra.get("diffmaglim")) if alert.survey == "ztf" else None


def malformed(error: Exception) -> str:
    """A reason for a person from the error a malformed record raised while being read."""
    if isinstance(error, KeyError):
        return f"malformed alert: field {error.args[0]!r} is missing"
    return f"malformed alert: {error}"
