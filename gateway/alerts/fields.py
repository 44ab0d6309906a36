"""The survey-independent view of an alert, shared by the VOEvent builder and the store.

Every per-survey, per-schema-version field name lives here and nowhere else:

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
scale the survey publishes (``time_scale``: "tai" for Rubin, "utc" for ZTF); converting to UTC ISO-8601 is the
VOEvent builder's job (astropy.time), not done here because it is slow.

These are pure functions on :class:`gateway.alerts.Alert`: no I/O, no copies of big fields, cheap enough for
the hot path (thousands of alerts a second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Optional, Union

from gateway.alerts import Alert

#: AB zero point for fluxes in nJy: m = ZP_NJY - 2.5 log10(f / nJy)
ZP_NJY = 31.4
#: 2.5 / ln(10): converts a relative flux error into a magnitude error
_MAG_PER_RELFLUX = 2.5 / math.log(10.0)
#: ZTF filter ids
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
#: JD of MJD 0
MJD_OFFSET = 2400000.5
#: ZTF ``ssdistnr`` (arcsec) below which the candidate is taken to be the known solar-system object ``ssnamenr``.
#: The ZTF pipeline fills ``ssnamenr`` for any known object within 30"; 5" is a common, conservative match radius.
ZTF_SSO_RADIUS_ARCSEC = 5.0
#: Rubin bands, in the order used by the per-band diaObject summary columns
RUBIN_BANDS = ("u", "g", "r", "i", "z", "y")


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection (a Rubin diaSource or a ZTF candidate), survey-independent.

    - ``ra``, ``dec``: deg, ICRS; None when missing or NaN (such an alert cannot be placed on the sky).
    - ``ra_err``, ``dec_err``: deg, or None (ZTF publishes no per-alert position error).
    - ``mjd``: Modified Julian Date in ``time_scale`` ("tai" for Rubin, "utc" for ZTF). ``time_ref`` says what
      instant it is: "mid" (Rubin ``midpointMjdTai``, mid-exposure) or "start" (ZTF ``jd`` is the *start* of the
      exposure; ZTF exposures are usually 30 s, see ``extra["exptime"]`` where present).
    - ``band``: "u", "g", "r", "i", "z", "y" (Rubin) or "g", "r", "i" (ZTF fid 1/2/3), or None.
    - ``psf_flux``, ``psf_flux_err``: PSF flux on the difference image in nJy, signed (negative when the source
      got fainter than the template). For ZTF derived from ``magpsf``, ``sigmapsf`` (AB) and ``isdiffpos``.
    - ``mag``, ``mag_err``: AB magnitude of the difference flux; Rubin: only when the flux is positive; ZTF:
      ``magpsf`` as shipped (the magnitude of the absolute difference flux).
    - ``snr``: detection signal-to-noise (Rubin ``snr``), None when absent (ZTF).
    - ``reliability``: 0-1, Rubin ``reliability`` (5.0+), ZTF ``drb`` (deep real-bogus) else ``rb``; else None.
    - ``is_dipole``, ``is_negative``: bool or None when the schema does not say.
    - ``trail_length``: arcsec, or None.
    - ``extra``: the raw source record (not a copy) for everything else.
    """

    source_id: Optional[int]
    object_id: Union[int, str, None]
    ra: Optional[float]
    dec: Optional[float]
    ra_err: Optional[float]
    dec_err: Optional[float]
    mjd: float
    time_scale: str
    band: Optional[str]
    psf_flux: Optional[float]
    psf_flux_err: Optional[float]
    mag: Optional[float]
    mag_err: Optional[float]
    snr: Optional[float]
    reliability: Optional[float]
    is_dipole: Optional[bool]
    is_negative: Optional[bool]
    trail_length: Optional[float]
    time_ref: str = "mid"
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class UpperLimit:
    """A non-detection: ``limiting_mag`` (AB, 5 sigma) at ``mjd`` in time scale ``scale``, in ``band``."""

    mjd: float
    scale: str
    band: Optional[str]
    limiting_mag: Optional[float]


# ---------------------------------------------------------------------------------------------------------- helpers


def _finite(value) -> Optional[float]:
    """The value as a float, or None if it is missing or NaN/inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _id(value) -> Optional[int]:
    """An object/source id, or None: Rubin writes 0 or null for "no object"."""
    return value if value else None


def flux_to_mag(flux: Optional[float], flux_err: Optional[float] = None) -> tuple[Optional[float], Optional[float]]:
    """AB magnitude and error of a flux in nJy; (None, None) unless the flux is positive and finite."""
    flux = _finite(flux)
    if flux is None or flux <= 0.0:
        return None, None
    mag = ZP_NJY - 2.5 * math.log10(flux)
    flux_err = _finite(flux_err)
    return mag, (None if flux_err is None else _MAG_PER_RELFLUX * flux_err / flux)


def mag_to_flux(mag: Optional[float], mag_err: Optional[float] = None) -> tuple[Optional[float], Optional[float]]:
    """Flux in nJy and its error from an AB magnitude and error; (None, None) if the magnitude is missing."""
    mag = _finite(mag)
    if mag is None:
        return None, None
    flux = 10.0 ** ((ZP_NJY - mag) / 2.5)
    mag_err = _finite(mag_err)
    return flux, (None if mag_err is None else flux * mag_err / _MAG_PER_RELFLUX)


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


def alert_id(alert: Alert) -> int:
    """The alert's id: Rubin ``alertId`` (until 7.x) or ``diaSourceId`` (8.0+); ZTF ``candid``."""
    record = alert.record
    if alert.survey == "ztf":
        return record["candid"]
    value = record.get("alertId")
    return value if value is not None else record["diaSourceId"]


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
    ``prvDiaNondetectionLimits``, limiting magnitude from ``diaNoise`` (nJy) as 5 sigma. Rubin 8.0+ ships none.
    """
    record = alert.record
    if alert.survey == "ztf":
        return [UpperLimit(p["jd"] - MJD_OFFSET, "utc", ZTF_BANDS.get(p.get("fid")), _finite(p.get("diffmaglim")))
                for p in (record.get("prv_candidates") or ())
                if p.get("candid") is None and p.get("jd") is not None]
    names = _rubin_names(alert.schema)
    limits = []
    for row in record.get("prvDiaNondetectionLimits") or ():
        noise = _finite(row.get("diaNoise"))
        mag = flux_to_mag(5.0 * noise)[0] if noise is not None else None
        limits.append(UpperLimit(row[names.mjd], "tai", row.get(names.band), mag))
    return limits


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
        "first_mjd": _finite(obj.get("firstDiaSourceMjdTai")),
        "last_mjd": _finite(obj.get("lastDiaSourceMjdTai")),
        "time_scale": "tai",
        "ra": _finite(obj.get("ra")),
        "dec": _finite(obj.get(names.dec)),
    }
    ndata_total = 0
    for b, mean_key, err_key, ndata_key in _band_keys(names):
        mean = _finite(obj.get(mean_key))
        if mean is not None:
            summary[f"{b}_psf_flux_mean"] = mean
            err = _finite(obj.get(err_key))
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
    flux, flux_err = _finite(src.get(names.flux)), _finite(src.get(names.flux_err))
    mag, mag_err = flux_to_mag(flux, flux_err)
    negative = src.get("isNegative")
    if negative is None:
        negative = src.get("is_negative")
    return Detection(
        source_id=src.get("diaSourceId"),
        object_id=_id(src.get("diaObjectId")) or _id(src.get("ssObjectId")),
        ra=_finite(src.get("ra")),
        dec=_finite(src.get(names.dec)),
        ra_err=_finite(src.get("raErr")),
        dec_err=_finite(src.get(names.dec_err)),
        mjd=src[names.mjd],
        time_scale="tai",
        band=src.get(names.band),
        psf_flux=flux,
        psf_flux_err=flux_err,
        mag=mag,
        mag_err=mag_err,
        snr=_finite(src.get("snr")),
        reliability=_finite(src.get("reliability")),
        is_dipole=src.get("isDipole"),
        is_negative=negative,
        trail_length=_finite(src.get("trailLength")),
        time_ref="mid",
        extra=src,
    )


def _ztf_detection(c: dict, object_id: str) -> Detection:
    mag, mag_err = _finite(c.get("magpsf")), _finite(c.get("sigmapsf"))
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
        ra=_finite(c.get("ra")),
        dec=_finite(c.get("dec")),
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
        reliability=_finite(reliability),
        is_dipole=None,
        is_negative=negative,
        trail_length=None,
        time_ref="start",
        extra=c,
    )


def _with_object(det: Detection, object_id) -> Detection:
    return replace(det, object_id=object_id)
