"""Param specifications shared by the survey profiles and the builder: names, UCDs (IVOA UCD1+), units.

Every attribute dict here is built once at import; the builder passes them straight to
``lxml.etree.SubElement``. docs/mapping.rst is the readable version of this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any, Callable, Optional

#: VOEvent 2.0 Param dataTypes (the XSD allows only string, float, int); booleans are "true"/"false" strings
FLOAT, INT, BOOL = "float", "int", "string"


def param_attrs(name: str, ucd: str, unit: Optional[str], data_type: Optional[str]) -> dict[str, str]:
    """The attribute dict of one Param (or Field): name, ucd, unit and dataType, where given."""
    attrs = {"name": name, "ucd": ucd}
    if unit:
        attrs["unit"] = unit
    if data_type and data_type != "string":
        attrs["dataType"] = data_type
    return attrs


#: The band of a detection ("g", "r", ...), the same UCD as the alert DB's ``diasource.band``: UCD1+ defines
#: instr.bandpass as "Bandpass (e.g.: band name) of instrument"; instr.filter is a secondary-only word
BAND_UCD = "instr.bandpass"
#: Length of a trailed source (arcsec): an angular size (phys.angSize), not an axis ratio
TRAIL_UCD = "phys.angSize"

#: 7 significant digits: the precision of the float32 columns most alert quantities are
fmt_float: Callable[[float], str] = "%.7g".__mod__


fmt_repr = repr  # shortest round-trip text of a double: positions and times keep every digit
fmt_int = str


def fmt_bool(value: Any) -> str:
    return "true" if value else "false"


def _trigger(scale: str):
    """(attrs, getter on a fields.Detection, formatter) of the triggering detection's Params."""
    rows = [
        ("source_id", "meta.id;meta.main", None, INT, fmt_int),
        ("ra", "pos.eq.ra;meta.main", "deg", FLOAT, fmt_repr),
        ("dec", "pos.eq.dec;meta.main", "deg", FLOAT, fmt_repr),
        ("ra_err", "stat.error;pos.eq.ra", "deg", FLOAT, fmt_float),
        ("dec_err", "stat.error;pos.eq.dec", "deg", FLOAT, fmt_float),
        ("mjd", "time.epoch;obs", "d", FLOAT, fmt_repr),
        ("band", BAND_UCD, None, None, str),
        ("psf_flux", "phot.flux.density;em.opt", "nJy", FLOAT, fmt_float),
        ("psf_flux_err", "stat.error;phot.flux.density;em.opt", "nJy", FLOAT, fmt_float),
        ("mag", "phot.mag;em.opt", "mag", FLOAT, fmt_float),
        ("mag_err", "stat.error;phot.mag;em.opt", "mag", FLOAT, fmt_float),
        ("snr", "stat.snr", None, FLOAT, fmt_float),
        ("reliability", "stat.probability", None, FLOAT, fmt_float),
        ("is_dipole", "meta.code", None, BOOL, fmt_bool),
        ("is_negative", "meta.code", None, BOOL, fmt_bool),
        ("trail_length", TRAIL_UCD, "arcsec", FLOAT, fmt_float),
    ]
    out = []
    for attribute, ucd, unit, data_type, fmt in rows:
        name = f"mjd_{scale}" if attribute == "mjd" else attribute
        out.append((param_attrs(name, ucd, unit, data_type), attrgetter(attribute), fmt))
    return tuple(out)


TRIGGER_PARAMS = {"tai": _trigger("tai"), "utc": _trigger("utc")}

#: (getter, formatter) of each column of the previous-detections Table, in Field order
PREVIOUS_FIELDS = (
    (attrgetter("mjd"), fmt_repr),
    (attrgetter("band"), str),
    (attrgetter("psf_flux"), fmt_float),
    (attrgetter("psf_flux_err"), fmt_float),
    (attrgetter("mag"), fmt_float),
    (attrgetter("mag_err"), fmt_float),
)


def previous_fields(scale: str) -> tuple[dict[str, str], ...]:
    """Field attribute dicts of the previous-detections Table (same order as :data:`PREVIOUS_FIELDS`)."""
    return (
        param_attrs(f"mjd_{scale}", "time.epoch;obs", "d", FLOAT),
        param_attrs("band", BAND_UCD, None, None),
        param_attrs("psf_flux", "phot.flux.density;em.opt", "nJy", FLOAT),
        param_attrs("psf_flux_err", "stat.error;phot.flux.density;em.opt", "nJy", FLOAT),
        param_attrs("mag", "phot.mag;em.opt", "mag", FLOAT),
        param_attrs("mag_err", "stat.error;phot.mag;em.opt", "mag", FLOAT),
    )


#: object_summary key -> (name, ucd, unit, dataType, formatter); {scale} and per-band keys handled below
_OBJECT = {
    "n_detections": ("n_detections", "meta.number", None, INT, fmt_int),
    "first_mjd": ("first_mjd_{scale}", "time.epoch;stat.min", "d", FLOAT, fmt_repr),
    "last_mjd": ("last_mjd_{scale}", "time.epoch;stat.max", "d", FLOAT, fmt_repr),
    "ra": ("ra", "pos.eq.ra;stat.mean", "deg", FLOAT, fmt_repr),
    "dec": ("dec", "pos.eq.dec;stat.mean", "deg", FLOAT, fmt_repr),
}
_PER_BAND = {
    "psf_flux_mean": ("phot.flux.density;stat.mean;em.opt", "nJy", FLOAT, fmt_float),
    "psf_flux_mean_err": ("stat.error;phot.flux.density;stat.mean;em.opt", "nJy", FLOAT, fmt_float),
    "n_detections": ("meta.number", None, INT, fmt_int),
}


#: every ``fields.object_summary`` key that becomes a Param, in document order (others are ignored)
OBJECT_KEYS = tuple(_OBJECT) + tuple(f"{band}_{quantity}" for band in "ugrizy" for quantity in _PER_BAND)


def object_formats(scale: str) -> dict[str, Callable]:
    """``fields.object_summary`` key -> formatter, for every key in :data:`OBJECT_KEYS`."""
    return {key: object_params(key, scale)[1] for key in OBJECT_KEYS}


@lru_cache(maxsize=256)
def object_params(key: str, scale: str) -> Optional[tuple[dict[str, str], Callable]]:
    """(attrs, formatter) of the object-summary Param for ``fields.object_summary`` key ``key``, or None for
    keys that are not Params (``time_scale``: it is in the Param names instead)."""
    if key in _OBJECT:
        name, ucd, unit, data_type, fmt = _OBJECT[key]
        return param_attrs(name.format(scale=scale), ucd, unit, data_type), fmt
    band, _, quantity = key.partition("_")
    if len(band) == 1 and quantity in _PER_BAND:
        ucd, unit, data_type, fmt = _PER_BAND[quantity]
        return param_attrs(key, ucd, unit, data_type), fmt
    return None


@dataclass(frozen=True)
class Site:
    """Where a survey's telescope is: ``id`` (ObservatoryLocation@id), ``name``; WGS84 geodetic ``longitude``
    (deg east, 0-360, as VOEvent 2.0's example writes KPNO), ``latitude`` (deg), ``height`` (m); ``source`` of
    the figures."""

    id: str
    name: str
    longitude: float
    latitude: float
    height: float
    source: str


@dataclass(frozen=True)
class SurveyProfile:
    """What differs between surveys in a VOEvent (besides the field names, which alerts.fields hides).

    - ``label``: "Rubin", "ZTF" (descriptions); ``scale``: time scale of the survey's MJDs ("tai", "utc");
    - ``how``: How/Description (facility, telescope, instrument); ``references``: How/Reference URLs;
    - ``site``: the telescope's :class:`Site` (ObservatoryLocation); ``default_error_deg``: Error2Radius (deg)
      used when the alert has no position error;
    - ``exposure_s``: exposure time (s) when the alert gives none; ``time_note``: what instant the survey's
      ``mjd_*`` Params are (their Description); ``time_source``: how WhereWhen's mid-exposure time is had;
    - ``trigger_type``: Group type of the triggering detection; ``extra_params``: (record field, attrs,
      formatter) of survey-specific Params of the triggering record, added when present and not null/NaN
      and not one of the survey's ``missing`` sentinels;
    - ``object_types``: object_key prefix -> Group type of the object summary.
    """

    label: str
    scale: str
    how: str
    references: tuple[str, ...]
    site: Site
    default_error_deg: float
    exposure_s: float
    time_note: str
    time_source: str
    trigger_type: str
    extra_params: tuple[tuple[str, dict[str, str], Callable], ...]
    object_types: dict[str, str]
    default_object_type: str = "object"
    missing: frozenset = frozenset()
    object_formats: dict = field(init=False, repr=False, compare=False)  # summary key -> formatter

    def __post_init__(self):
        object.__setattr__(self, "object_formats", object_formats(self.scale))

    @property
    def trigger_group(self) -> dict[str, str]:
        return {"name": "trigger", "type": self.trigger_type}

    @property
    def trigger_params(self):
        return TRIGGER_PARAMS[self.scale]

    @property
    def previous_table(self) -> dict[str, str]:
        return {"name": "previous_detections", "type": "light_curve"}

    @property
    def previous_fields(self):
        return _PREVIOUS_FIELDS[self.scale]

    def object_type(self, object_key: str) -> str:
        """Group type of the object summary: by the object key's prefix ("diaObject:..." -> diaObject)."""
        return self.object_types.get(object_key.partition(":")[0], self.default_object_type)


_PREVIOUS_FIELDS = {"tai": previous_fields("tai"), "utc": previous_fields("utc")}
