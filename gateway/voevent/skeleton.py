"""The VOEvent of one alert *shape*, built once and filled in for every alert of that shape (see
:mod:`gateway.voevent.build` for why), and the values of one alert that fill it.

The tree is indented once when it is built (``etree.indent``), so every packet is written pretty-printed (XSD
errors then name useful lines) at no cost per alert: only attribute values and leaf texts change afterwards.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from lxml import etree

from gateway import times
from gateway.alerts import fields
from gateway.voevent.spec import BOOL, INT, PREVIOUS_FIELDS, SurveyProfile, fmt_float, object_params, param_attrs

VOEVENT_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: cutout kinds of fields.cutouts, in the order their References appear
CUTOUT_KINDS = ("difference", "science", "template")
#: Reference@meaning (the IVOA datalink/core vocabulary): a cutout is "a subsection of the primary data"; the
#: facility pages are documentation
CUTOUT_MEANING = "http://www.ivoa.net/rdf/datalink/core#cutout"
DOCUMENTATION_MEANING = "http://www.ivoa.net/rdf/datalink/core#documentation"
SOLAR_CONCEPT = "known solar-system object"
TRANSIENT_CONCEPT = "transient or variable source (difference image)"
#: observatory coordinates: geodetic, the system VOEvent 2.0 section 3.4.2 names for an ObservatoryLocation
SITE_SYSTEM = "UTC-GEOD-TOPO"
#: event coordinates: topocentric, hence the ObservatoryLocation ("a required element for expressing topocentric
#: coordinate systems", VOEvent 2.0 section 3.4.2)
EVENT_SYSTEM = "UTC-ICRS-TOPO"

_SubElement = etree.SubElement
_ROOT_TAG = f"{{{VOEVENT_NS}}}VOEvent"
_NSMAP = {"voe": VOEVENT_NS, "xsi": XSI_NS}
_ROOT_ATTRS = {
    "version": "2.0",
    f"{{{XSI_NS}}}schemaLocation": f"{VOEVENT_NS} http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd",
}
_CUTOUT_MIME = "application/fits"
_INDENT = "  "
#: the light-curve rows are written as text (see Skeleton.data); the Data element is 3 levels below the root
_ROW_INDENT = "\n" + _INDENT * 4
_DATA_CLOSE = "\n" + _INDENT * 3 + "</Data>"
ROWS_MARK = "vogateway-light-curve-rows"
DATA_MARK = f"<Data>{ROWS_MARK}</Data>"

# Params of the What section that are not about the detection itself
_P_ALERT_ID = param_attrs("alert_id", "meta.id", None, INT)
_P_OBJECT_KEY = param_attrs("object_key", "meta.id", None, None)
_P_SURVEY = param_attrs("survey", "meta.id;instr.obsty", None, None)  # as the alert DB's survey columns
_P_SCHEMA = param_attrs("schema_version", "meta.version", None, None)
_P_N_PREVIOUS = param_attrs("n_previous", "meta.number", None, INT)
_P_N_LIMITS = param_attrs("n_upper_limits", "meta.number", None, INT)
_P_SSO = param_attrs("solar_system", "meta.code", None, BOOL)
_P_ISO = param_attrs("observation_time_utc", "time.epoch", None, None)


def table_rows(previous) -> str:
    """The ``<TR><TD>..</TD>..</TR>`` lines of the light-curve table and the Data end tag, values escaped as lxml
    would."""
    cells = []
    for det in previous:
        cells.append(_ROW_INDENT + "<TR>")
        for get, fmt in PREVIOUS_FIELDS:
            value = get(det)
            if value is None:
                cells.append("<TD></TD>")
            elif type(value) is str:  # a band; numbers are written as digits, signs, '.', 'e': nothing to escape
                cells.append(f"<TD>{escape(fmt(value))}</TD>")
            else:
                cells.append(f"<TD>{fmt(value)}</TD>")
        cells.append("</TR>")
    return "".join(cells) + _DATA_CLOSE


def mid_exposure_iso(view, default_exposure_s: float) -> str:
    """The UTC ISO time of the middle of the exposure: WhereWhen's ISOTime (ZTF's times are its start: half the
    exposure, ``default_exposure_s`` when the alert gives none, is added)."""
    det = view.detection
    if view.time_ref != "start" or det is None:
        return view.iso_utc
    exposure = fields.exposure_time(det) or default_exposure_s
    return times.mjd_to_utc_iso(det.mjd + exposure / 2.0 / 86400.0, det.time_scale)


class Values:
    """Everything of one alert that goes into its VOEvent, as text, and the shape it gives the document."""

    __slots__ = ("alert", "profile", "det", "alert_id", "key", "ivorn", "role", "iso", "time_error", "solar",
                 "radius", "trigger", "extra", "object", "n_previous", "n_limits", "previous", "cutouts",
                 "probability", "now")

    def __init__(self, alert, view, profile: SurveyProfile, ivorn, role, rows):
        det = view.detection
        self.alert, self.profile, self.det, self.alert_id, self.key = alert, profile, det, view.alert_id, view.object_key
        self.ivorn, self.role = ivorn, role
        # one convention in WhereWhen: mid-exposure, whatever instant the survey's time is (ZTF: the start)
        exposure = fields.exposure_time(det) or profile.exposure_s
        self.time_error = fmt_float(exposure / 2.0)
        self.iso = mid_exposure_iso(view, profile.exposure_s)
        self.solar = view.solar_system
        self.radius = view.error_radius
        # triggering detection: text or None (absent) per Param of the profile, in profile order
        self.trigger = [None if (value := get(det)) is None else fmt(value)
                        for _, get, fmt in profile.trigger_params]
        extra, missing = det.extra, profile.missing
        self.extra = [None if (value := extra.get(name)) is None or value != value or value in missing
                      else fmt(value) for name, _, fmt in profile.extra_params]
        # object summary: (key, text) of the keys that become Params (the shape records which, in which order)
        formats = profile.object_formats
        self.object = [(name, formats[name](value)) for name, value in view.summary.items()
                       if value is not None and name in formats]
        self.n_previous = view.n_previous
        self.n_limits = len(view.upper_limits)
        self.previous = sorted(view.previous, key=_by_time)[-rows:] if self.n_previous and rows else []
        present = view.cutouts
        self.cutouts = tuple(kind for kind in CUTOUT_KINDS if kind in present)
        reliability = det.reliability
        self.probability = ("%.3f" % reliability) if reliability is not None and 0.0 <= reliability <= 1.0 else None

    def shape(self) -> tuple:
        """What decides the document's structure: survey, which Params are present, table, cutouts, citation."""
        return (self.alert.survey, tuple([v is None for v in self.trigger]), tuple([v is None for v in self.extra]),
                tuple([name for name, _ in self.object]), self.object_type(), bool(self.previous), self.cutouts,
                self.probability is not None)

    def object_type(self) -> str:
        return self.profile.object_type(self.key)

    def param_values(self) -> list[str]:
        """Values of the skeleton's value-less Params, in document order (see Skeleton)."""
        values = [str(self.alert_id), self.key, self.alert.schema, self.iso, "true" if self.solar else "false"]
        values += [v for v in self.trigger if v is not None]
        values += [v for v in self.extra if v is not None]
        values += [text for _, text in self.object]
        values += [str(self.n_previous), str(self.n_limits)]
        return values


def _by_time(det) -> float:
    return det.mjd if det.mjd is not None else -math.inf


class Skeleton:
    """The VOEvent tree of one alert shape, reused for every alert of that shape: only values change.

    ``params`` are the Params whose ``value`` each alert sets, in :meth:`Values.param_values` order;
    ``date``, ``iso``, ``c1``, ... are the other elements an alert fills in (None when the shape has none).
    ``author`` is the Who/Author dict (``shortName``, ``contactName``, ``contactEmail``; empty ones left out).
    """

    def __init__(self, v: Values, author_ivorn: str, author: dict[str, str]):
        profile = v.profile
        sub = _SubElement
        root = self.root = etree.Element(_ROOT_TAG, _ROOT_ATTRS, nsmap=_NSMAP, ivorn="", role="observation")
        named: dict[str, etree._Element] = {}
        params = []

        who = sub(root, "Who")
        sub(who, "AuthorIVORN").text = author_ivorn
        named["date"] = sub(who, "Date")
        sub(who, "Description").text = "Converted from the survey's Avro alert by vogateway"
        contact = sub(who, "Author")
        for tag, text in author.items():
            if text:
                sub(contact, tag).text = text

        what = sub(root, "What")
        for attrs in (_P_ALERT_ID, _P_OBJECT_KEY, _P_SURVEY, _P_SCHEMA, _P_ISO, _P_SSO):
            if attrs is _P_SURVEY:
                sub(what, "Param", {**attrs, "value": v.alert.survey})
            else:
                params.append(sub(what, "Param", attrs))
        trigger = sub(what, "Group", profile.trigger_group)
        for (attrs, _, _), value in zip(profile.trigger_params, v.trigger):
            if value is not None:
                params.append(param := sub(trigger, "Param", attrs))
                if attrs["name"].startswith("mjd_"):
                    sub(param, "Description").text = profile.time_note
        params += [sub(trigger, "Param", attrs)
                   for (_, attrs, _), value in zip(profile.extra_params, v.extra) if value is not None]
        group = sub(what, "Group", {"name": "object", "type": v.object_type()})
        params += [sub(group, "Param", object_params(name, profile.scale)[0]) for name, _ in v.object]
        params.append(sub(what, "Param", _P_N_PREVIOUS))
        params.append(sub(what, "Param", _P_N_LIMITS))
        self.data = None
        if v.previous:
            table = sub(what, "Table", profile.previous_table)
            for attrs in profile.previous_fields:
                sub(table, "Field", attrs)
            self.data = sub(table, "Data")
            self.data.text = ROWS_MARK
        # type (deprecated in VOEvent 2.0, section 3.9.4) still names the kind; meaning says what it is
        cutouts = [sub(what, "Reference", uri="", meaning=CUTOUT_MEANING, type=kind, mimetype=_CUTOUT_MIME)
                   for kind in v.cutouts]

        named.update(_where_when(sub(root, "WhereWhen"), profile))

        how = sub(root, "How")
        sub(how, "Description").text = profile.how
        for uri in profile.references:
            sub(how, "Reference", uri=uri, meaning=DOCUMENTATION_MEANING)

        named["why"] = why = sub(root, "Why")
        named["inference"] = inference = sub(why, "Inference", relation="identified")
        named["name"] = sub(inference, "Name")
        named["concept"] = sub(inference, "Concept")

        named["description"] = sub(root, "Description")
        etree.indent(root, space=_INDENT)

        for name, element in named.items():
            setattr(self, name, element)
        self.params = tuple(params)
        self.cutouts = tuple(cutouts)


def _where_when(where_when, profile: SurveyProfile) -> dict[str, etree._Element]:
    """WhereWhen: the observatory (VOEvent 2.0 section 3.4.2, second form: its geodetic coordinates) and the
    event's position and mid-exposure time with their errors. The elements an alert fills in, by name."""
    sub = _SubElement
    obs_data = sub(where_when, "ObsDataLocation")
    site = profile.site
    observatory = sub(obs_data, "ObservatoryLocation", id=site.id)
    sub(observatory, "AstroCoordSystem", id=SITE_SYSTEM)
    position3d = sub(sub(observatory, "AstroCoords", coord_system_id=SITE_SYSTEM), "Position3D")
    for tag, text in (("Name1", "longitude"), ("Name2", "latitude"), ("Name3", "height")):
        sub(position3d, tag).text = text
    value3 = sub(position3d, "Value3")
    for tag, number in (("C1", site.longitude), ("C2", site.latitude), ("C3", site.height)):
        sub(value3, tag).text = repr(number)
    location = sub(obs_data, "ObservationLocation")
    sub(location, "AstroCoordSystem", id=EVENT_SYSTEM)
    coords = sub(location, "AstroCoords", coord_system_id=EVENT_SYSTEM)
    time = sub(coords, "Time", unit="s")
    named = {"iso": sub(sub(time, "TimeInstant"), "ISOTime"), "time_error": sub(time, "Error")}
    position = sub(coords, "Position2D", unit="deg")
    sub(position, "Name1").text = "RA"
    sub(position, "Name2").text = "Dec"
    value2 = sub(position, "Value2")
    named["c1"] = sub(value2, "C1")
    named["c2"] = sub(value2, "C2")
    named["radius"] = sub(position, "Error2Radius")
    sub(where_when, "Description").text = (
        f"Time: mid-exposure, UTC ({profile.time_source}); Time/Error: half the exposure time, s. Position: ICRS, "
        f"deg; Error2Radius: 1-sigma, deg. ObservatoryLocation: {site.id}, {site.name}, WGS84 geodetic longitude "
        f"(deg east, C1), latitude (deg, C2), height (m, C3) ({site.source}); the VOEvent 2.0 schema gives C1-C3 "
        f"no unit attributes")
    return named
