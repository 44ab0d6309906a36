"""VOEvent XML -> :class:`gateway.view.View`: what an event that arrived as XML says, read once.

Our own VOEvents and foreign ones (GCN, Comet authors) alike: the position and its error from WhereWhen (only in
degrees, and only when on the sky: a wrong position is worse than none), the time from ISOTime, the author from
Who, and every What Param by name (``mag``, ``band``, ``survey``, ...: the names our builder writes; a number where
the value reads as one). The tree is parsed already (safely: :func:`gateway.voevent.parse.safe_fromstring`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from lxml import etree

from gateway import times
from gateway.view import View

_OBSERVATION = "WhereWhen/ObsDataLocation/ObservationLocation"
_POSITION = _OBSERVATION + "/AstroCoords/Position2D"
_ISOTIME = _OBSERVATION + "/AstroCoords/Time/TimeInstant/ISOTime"


def number_or_text(value) -> Any:
    """A Param value as a number (an int when written as one, or bool for true/false) when it reads as one, else
    the stripped text."""
    if value is None:
        return None
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text.lstrip("+-").isdigit():  # an id: every digit kept (a float holds 15 or 16 of Rubin's 19)
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else None


def _number(value) -> Optional[float]:
    value = number_or_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value if isinstance(value, float) else None


def _strip_namespaces(root: etree._Element) -> etree._Element:
    """VOEvent 2.0 children are unqualified; pygcn-era packets qualify them: read both the same way."""
    if any(isinstance(e.tag, str) and e.tag.startswith("{") for e in root.iterchildren()):
        root = etree.fromstring(etree.tostring(root))  # a copy: the caller's tree stays as it arrived
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.startswith("{"):
                element.tag = etree.QName(element).localname
    return root


def params_of(root: etree._Element) -> dict[str, Any]:
    """The What Params by name (the first of a name wins), values as :func:`number_or_text` reads them."""
    return {name: number_or_text(element.get("value")) for name, element in _param_elements(root).items()}


def _param_elements(root: etree._Element) -> dict[str, etree._Element]:
    elements: dict[str, etree._Element] = {}
    for element in root.iterfind("What//Param"):
        name = element.get("name")
        if name and name not in elements:
            elements[name] = element
    return elements


def view_of_tree(root: etree._Element) -> View:
    """The :class:`View` of a parsed VOEvent; fields the packet does not give are None."""
    root = _strip_namespaces(root)
    elements = _param_elements(root)
    params = {name: number_or_text(element.get("value")) for name, element in elements.items()}
    ra = dec = error = None
    position = root.find(_POSITION)
    if position is not None and (position.get("unit") or "deg") == "deg":  # other units are rare: never guess
        ra, dec = _number(position.findtext("Value2/C1")), _number(position.findtext("Value2/C2"))
        error = _number(position.findtext("Error2Radius"))
        if ra is None or dec is None or not (0 <= ra <= 360 and -90 <= dec <= 90):
            ra = dec = error = None
    if ra is None:  # a position only in Params (e.g. a utility event): better than none
        ra, dec = _number(params.get("ra")), _number(params.get("dec"))
    mjd, scale, iso, time_ref = _time(root, params, elements)
    mjd_tai = mjd_utc = None
    if mjd is not None:
        try:
            mjd_tai, mjd_utc = times.to_tai(mjd, scale), times.to_utc(mjd, scale)
            iso = iso or times.mjd_to_utc_iso(mjd, scale)
        except times.TimeError:
            mjd = scale = iso = time_ref = None
    author = root.findtext("Who/AuthorIVORN")
    survey, schema = params.get("survey"), params.get("schema_version")
    return View(
        survey=survey if isinstance(survey, str) else None, schema=None if schema is None else str(schema),
        simulated=root.get("role") == "test", alert_id=_integer(params.get("alert_id")),
        object_key=_text(params.get("object_key")), ra=ra, dec=dec, error_radius=error, mjd=mjd, time_scale=scale,
        mjd_tai=mjd_tai, mjd_utc=mjd_utc, iso_utc=iso, time_ref=time_ref, band=_text(params.get("band")), mag=_number(params.get("mag")),
        mag_err=_number(params.get("mag_err")), flux=_number(params.get("psf_flux")),
        flux_err=_number(params.get("psf_flux_err")), snr=_number(params.get("snr")),
        reliability=_number(params.get("reliability")), is_negative=_flag(params.get("is_negative")),
        is_dipole=_flag(params.get("is_dipole")), trail_length=_number(params.get("trail_length")),
        limiting_mag=_number(params.get("diffmaglim")),
        solar_system=_flag(params.get("solar_system")), n_detections=_integer(params.get("n_detections")),
        n_previous=_integer(params.get("n_previous")), author=author.strip() if author else None, params=params)


def _time(root, params, elements) -> tuple[Optional[float], Optional[str], Optional[str], Optional[str]]:
    """(MJD, its scale, UTC ISO text, "mid"/"start" of exposure or None): our Params ``mjd_tai``/``mjd_utc`` first
    (exact; their Description says which instant), else WhereWhen's ISOTime (mid-exposure if its Description says
    so, as ours do)."""
    for name, scale in (("mjd_tai", "tai"), ("mjd_utc", "utc"), ("mjd", "utc")):
        value = _number(params.get(name))
        if value is not None:
            return value, scale, None, _instant(elements[name].findtext("Description"))
    text = root.findtext(_ISOTIME)
    if text:
        try:
            when = times.parse_iso(text)
        except times.TimeError:
            return None, None, None, None
        return (times.datetime_to_mjd(when), "utc", times.format_iso(when, zone=""),
                _instant(root.findtext("WhereWhen/Description")))
    return None, None, None, None


def _instant(description: Optional[str]) -> Optional[str]:
    """What instant of the exposure a time is, by the words of our builder's Descriptions."""
    text = description or ""
    return "start" if "start of the exposure" in text else "mid" if "mid-exposure" in text else None


def _text(value) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _integer(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, float) and value.is_integer() else None


def _flag(value) -> Optional[bool]:
    return value if isinstance(value, bool) else None
