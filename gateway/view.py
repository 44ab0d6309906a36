"""The survey-neutral reading of an event: what every sink wants to know, read once.

A :class:`View` is made once per event, when it enters the gateway: from a decoded alert by
:func:`gateway.alerts.fields.view` (every per-survey, per-schema-version field name lives there), or from a VOEvent
that arrived as XML by :func:`gateway.voevent.read.view_of_tree`. The VOEvent builder, the filters, the store's
rows and the forwards read the view, never the raw Rubin/ZTF record or the XML again.

Units: positions and errors in deg (ICRS); fluxes in nJy, magnitudes AB with ``mag = 31.4 - 2.5 log10(flux / nJy)``
both ways; times as MJD, both TAI and UTC (:mod:`gateway.times`), and the survey's own scale in ``time_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

#: AB zero point for fluxes in nJy: m = ZP_NJY - 2.5 log10(f / nJy)
ZP_NJY = 31.4
#: 2.5 / ln(10): converts a relative flux error into a magnitude error
_MAG_PER_RELFLUX = 2.5 / math.log(10.0)


@dataclass(slots=True)
class Detection:
    """One detection (a Rubin diaSource or a ZTF candidate), survey-independent. Read-only by convention: not a
    frozen dataclass, because a Rubin alert makes ~31 of them and a frozen one costs ten times more to make.

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


@dataclass(frozen=True, slots=True)
class View:
    """One event as every part of the gateway reads it. None wherever the event does not say.

    - ``survey`` ("rubin", "ztf", or what a foreign VOEvent's ``survey`` Param says), ``schema`` (alert schema
      version), ``simulated``; ``alert_id``, ``object_key`` ("diaObject:<id>", "ssObject:<id>", a ZTF objectId).
    - ``ra``, ``dec``, deg ICRS; ``error_radius``, deg (from the VOEvent; None for an alert before it is built).
    - ``mjd`` in the survey's ``time_scale`` ("tai" or "utc"), and the same instant as ``mjd_tai``, ``mjd_utc`` and
      ``iso_utc`` (UTC ISO-8601 to the millisecond, no zone suffix); ``time_ref``: "mid" or "start" of exposure.
    - ``band``, ``mag``, ``mag_err``, ``flux``, ``flux_err`` (nJy), ``snr``, ``reliability`` (0-1), ``is_negative``,
      ``is_dipole``, ``trail_length`` (arcsec) of the triggering detection; ``limiting_mag``: the 5-sigma limit of
      its image (ZTF ``diffmaglim``; Rubin alerts carry none); ``solar_system``; ``n_detections``
      (as the survey counts them), ``n_previous`` (earlier detections shipped).
    - for alerts: ``detection`` (the triggering :class:`Detection`), ``previous`` (earlier detections, as
      shipped), ``upper_limits``, ``summary`` (the object summary of :func:`gateway.alerts.fields.object_summary`),
      ``cutouts`` (kind -> bytes as shipped);
    - for VOEvents: ``author`` (Who/AuthorIVORN) and ``params`` (the What Params by name, numbers where they read
      as numbers).
    """

    survey: Optional[str] = None
    schema: Optional[str] = None
    simulated: bool = False
    alert_id: Optional[int] = None
    object_key: Optional[str] = None
    ra: Optional[float] = None
    dec: Optional[float] = None
    error_radius: Optional[float] = None
    mjd: Optional[float] = None
    time_scale: Optional[str] = None
    mjd_tai: Optional[float] = None
    mjd_utc: Optional[float] = None
    iso_utc: Optional[str] = None
    time_ref: Optional[str] = None
    band: Optional[str] = None
    mag: Optional[float] = None
    mag_err: Optional[float] = None
    flux: Optional[float] = None
    flux_err: Optional[float] = None
    snr: Optional[float] = None
    reliability: Optional[float] = None
    is_negative: Optional[bool] = None
    is_dipole: Optional[bool] = None
    trail_length: Optional[float] = None
    limiting_mag: Optional[float] = None
    solar_system: Optional[bool] = None
    n_detections: Optional[int] = None
    n_previous: Optional[int] = None
    detection: Optional[Detection] = field(default=None, repr=False)
    previous: tuple[Detection, ...] = field(default=(), repr=False)
    upper_limits: tuple[UpperLimit, ...] = field(default=(), repr=False)
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cutouts: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    author: Optional[str] = None
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)


#: a view that says nothing: for an event whose XML could not be read
EMPTY = View()


def finite(value, _isfinite=math.isfinite) -> Optional[float]:
    """The value as a float, or None if it is missing or NaN/inf."""
    if value is None:
        return None
    if value.__class__ is not float:  # Avro doubles are floats already: most calls skip the conversion
        value = float(value)
    return value if _isfinite(value) else None


def flux_to_mag(flux: Optional[float], flux_err: Optional[float] = None) -> tuple[Optional[float], Optional[float]]:
    """AB magnitude and error of a flux in nJy; (None, None) unless the flux is positive and finite."""
    flux = finite(flux)
    if flux is None or flux <= 0.0:
        return None, None
    mag = ZP_NJY - 2.5 * math.log10(flux)
    flux_err = finite(flux_err)
    return mag, (None if flux_err is None else _MAG_PER_RELFLUX * flux_err / flux)


def mag_to_flux(mag: Optional[float], mag_err: Optional[float] = None) -> tuple[Optional[float], Optional[float]]:
    """Flux in nJy and its error from an AB magnitude and error; (None, None) if the magnitude is missing."""
    mag = finite(mag)
    if mag is None:
        return None, None
    flux = 10.0 ** ((ZP_NJY - mag) / 2.5)
    mag_err = finite(mag_err)
    return flux, (None if mag_err is None else flux * mag_err / _MAG_PER_RELFLUX)
