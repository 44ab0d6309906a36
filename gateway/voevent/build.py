"""Alert -> VOEvent 2.0, built directly with lxml (the hot path of the gateway).

:class:`Converter` turns one :class:`gateway.alerts.Alert` into an :class:`gateway.event.Event` whose ``xml``
validates against the official VOEvent 2.0 XSD. What goes where (element, Param name, UCD, unit, per survey
and schema version) is written down in ``docs/mapping.rst``; the survey-specific parts (How, default
position error, extra Params) live in :mod:`gateway.voevent.rubin` and :mod:`gateway.voevent.ztf`. Alert
fields are read only through :mod:`gateway.alerts.fields`, never by per-version name here.

Why lxml and not voevent-parse: voevent-parse 1.0.3 builds through ``lxml.objectify`` and is partly broken on
Python >= 3.10 (``add_how``/``add_why``/``add_citations`` use the removed ``collections.Iterable``); it is
also several times slower (``scripts/bench/convert.py`` measures both). It is still used to check our output
in the tests (``voeventparse.loads``, ``valid_as_v2_0``).

Speed: creating an attribute with lxml costs ~0.6 us (key and value checks, UTF-8 conversion); a VOEvent has
~150 of them, which alone took longer than decoding the Avro alert. Alerts of one survey and schema version
mostly have the same *shape* (which Params are present, whether there is a light curve, cutouts, a
citation). So the values are computed first; the tree of that shape is built once with SubElement and the
attribute dicts of :mod:`gateway.voevent.spec` (a :class:`_Skeleton`, kept in a bounded cache per
Converter), and for each alert of that shape only its values are set before the tree is serialized: no
attribute is created twice, nothing is copied. Times are converted
with a leap-second table (:mod:`gateway.times`), not astropy.time. ``scripts/bench/convert.py`` has
the figures.

Size: a VOEvent stays under :data:`MAX_EVENT_BYTES` (Comet's VTP frame cap): the light curve is summarised as
the last :data:`MAX_PREVIOUS_ROWS` previous detections plus counts, never dumped.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Optional
from xml.sax.saxutils import escape

from lxml import etree

from gateway.alerts import Alert, AlertError, fields
from gateway.event import ROLES, Event
from gateway.times import format_iso
from gateway.voevent import rubin, ztf
from gateway.voevent.history import History, MemoryHistory
from gateway.voevent.parse import IVORN_RE
from gateway.voevent.spec import (
    BOOL,
    INT,
    PREVIOUS_FIELDS,
    SurveyProfile,
    fmt_float,
    object_params,
    param_attrs,
)

VOEVENT_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: VOEvents must stay below this size, bytes (Comet refuses VTP frames of 99,999 bytes and more)
MAX_EVENT_BYTES = 99_999
#: How many of the latest previous detections a VOEvent lists (the rest are only counted)
MAX_PREVIOUS_ROWS = 30
#: Skeletons (one per alert shape) kept per thread; a stream has a handful of shapes per schema version
MAX_SKELETONS = 2048

PROFILES: dict[str, SurveyProfile] = {"rubin": rubin.PROFILE, "ztf": ztf.PROFILE}

_SubElement = etree.SubElement
_ROOT_TAG = f"{{{VOEVENT_NS}}}VOEvent"
_NSMAP = {"voe": VOEVENT_NS, "xsi": XSI_NS}
_ROOT_ATTRS = {
    "version": "2.0",
    f"{{{XSI_NS}}}schemaLocation": f"{VOEVENT_NS} http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd",
}
_COORD_SYSTEM = {"id": "UTC-ICRS-TOPO"}
_COORDS = {"coord_system_id": "UTC-ICRS-TOPO"}
_TIME = {"unit": "s"}
_POSITION = {"unit": "deg"}
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_CUTOUT_MIME = "application/fits"
#: cutout kinds of fields.cutouts, in the order their References appear
CUTOUT_KINDS = ("difference", "science", "template")

# Params of the What section that are not about the detection itself
_P_ALERT_ID = param_attrs("alert_id", "meta.id", None, INT)
_P_OBJECT_KEY = param_attrs("object_key", "meta.id", None, None)
_P_SURVEY = param_attrs("survey", "meta.id;instr.obsty", None, None)  # as the alert DB's survey columns
_P_SCHEMA = param_attrs("schema_version", "meta.version", None, None)
_P_N_PREVIOUS = param_attrs("n_previous", "meta.number", None, INT)
_P_N_LIMITS = param_attrs("n_upper_limits", "meta.number", None, INT)
_P_SSO = param_attrs("solar_system", "meta.code", None, BOOL)
_P_ISO = param_attrs("observation_time_utc", "time.epoch", None, None)


class _DateCache:
    """Who/Date text for "now" (UTC, whole seconds), formatted once per second."""

    def __init__(self, clock: Callable[[], float]):
        self.clock, self.second, self.text = clock, None, ""

    def now(self) -> tuple[float, str]:
        t = self.clock()
        second = int(t)
        if second != self.second:
            self.second = second
            self.text = format_iso(second, digits=0, zone="")
        return t, self.text


class Converter:
    """Builds VOEvents from alerts: ``converter(alert) -> Event``; raises :class:`AlertError` if it cannot.

    - ``authority``, ``stream``: IVORNs are ``ivo://<authority>/<stream>#<alertId>``; the author is
      ``ivo://<authority>/<stream>``.
    - ``public_url``: base URL of the gateway's HTTP service; cutouts are referenced as
      ``<public_url>/cutouts/<alertId>/<kind>.fits`` (not embedded).
    - ``role``: "observation", "test", ... or "auto" ("test" for simulated alerts, else "observation").
    - ``history``: a :class:`History` for citations (default: a :class:`MemoryHistory`).
    - ``clock``: seconds since the epoch, for Who/Date and Event.received (tests pass a fixed clock).

    May be called from several threads: the skeletons it fills in place are per thread; the default
    :class:`MemoryHistory` is only safe from one thread at a time (the reactor's, in ``serve``).
    """

    def __init__(self, authority: str, stream: str, public_url: str, role: str = "auto",
                 history: Optional[History] = None, clock: Optional[Callable[[], float]] = None,
                 max_previous_rows: int = MAX_PREVIOUS_ROWS):
        stream = stream.strip("/")
        author = f"ivo://{authority}/{stream}"
        if not IVORN_RE.match(author + "#0"):
            raise ValueError(f"authority {authority!r} / stream {stream!r} do not make a valid IVORN ({author}#id)")
        if role != "auto" and role not in ROLES:
            raise ValueError(f"role {role!r} is not 'auto' or one of {', '.join(ROLES)}")
        self.author_ivorn, self.prefix = author, author + "#"
        self.public_url = public_url.rstrip("/")
        self.role = role
        self.history = history if history is not None else MemoryHistory()
        self.max_previous_rows = max_previous_rows
        self._date = _DateCache(clock or time.time)
        self._local = threading.local()  # skeletons are filled in place: each thread gets its own

    # ------------------------------------------------------------------------------------------------ API

    def __call__(self, alert: Alert) -> Event:
        """The alert's VOEvent, citing the object's previous one (:meth:`prepare`, then :meth:`link`)."""
        return self.link(self.prepare(alert))

    convert = __call__

    def prepare(self, alert: Alert) -> Event:
        """The alert's VOEvent without Citations: a pure function of the alert, so it can run anywhere (a worker
        process); :meth:`link` adds what only the gateway's history knows."""
        profile = PROFILES.get(alert.survey)
        if profile is None:
            raise AlertError(alert.source, alert.position, f"unknown survey {alert.survey!r}")
        # AlertError: malformed, no usable position or time. The radius as written (7 significant digits): the view
        # says what the packet says
        view = fields.view(alert, self.author_ivorn, lambda det: float(fmt_float(error_radius(det, profile))))
        ivorn = f"{self.prefix}{view.alert_id}"
        role = self.role if self.role != "auto" else ("test" if alert.simulated else "observation")
        try:
            values = _Values(alert, view, profile, ivorn, role, self.max_previous_rows)
            xml = self._build(values)
            while len(xml) + CITATION_ROOM >= MAX_EVENT_BYTES and values.previous:
                # over budget (huge free-text fields?): shorten the light-curve table until it fits
                values.previous = values.previous[len(values.previous) * 3 // 4 + 1:]
                xml = self._build(values)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # e.g. a field of an unexpected type, or text lxml refuses (control characters are not XML)
            raise AlertError(alert.source, alert.position, fields.malformed(error)) from None
        if len(xml) + CITATION_ROOM >= MAX_EVENT_BYTES:
            raise AlertError(alert.source, alert.position,
                             f"VOEvent too large: {len(xml)} bytes >= {MAX_EVENT_BYTES} even without a light curve")
        return Event(ivorn=ivorn, role=role, received=datetime.fromtimestamp(values.now, timezone.utc),
                     xml=xml, alert=alert, origin=alert.source, view=view)

    def link(self, event: Event) -> Event:
        """``event`` (from :meth:`prepare`) citing the latest VOEvent issued for its object, which it becomes.

        Runs where the history is (the reactor process), in the order the alerts arrived.
        """
        key = event.view.object_key
        cited = self.history.previous(key)
        self.history.remember(key, event.ivorn)
        if cited is None or cited == event.ivorn:  # the same alert again (a replay): never cite yourself
            return event
        # the constructor, not dataclasses.replace: this runs for most alerts, and replace costs several times more
        return Event(event.ivorn, event.role, event.received, cite(event.xml, key, cited), event.alert, event.origin,
                     event.view, event.rows)

    # ------------------------------------------------------------------------------------------- building

    def _skeletons(self) -> dict[tuple, "_Skeleton"]:
        try:
            return self._local.skeletons
        except AttributeError:
            skeletons = self._local.skeletons = {}
            return skeletons

    def _build(self, v: "_Values") -> bytes:
        """Fill the skeleton of the alert's shape with this alert's values and serialize it."""
        skeletons = self._skeletons()
        shape = v.shape()
        s = skeletons.get(shape)
        if s is None:
            if len(skeletons) >= MAX_SKELETONS:
                skeletons.clear()
            s = skeletons[shape] = _Skeleton(v, self.author_ivorn)
        # every value below is set on every use of the skeleton, so nothing of the previous alert remains
        root = s.root
        root.set("ivorn", v.ivorn)
        root.set("role", v.role)
        v.now, s.date.text = self._date.now()
        for element, value in zip(s.params, v.param_values()):
            element.set("value", value)
        for element, kind in zip(s.cutouts, v.cutouts):
            element.set("uri", f"{self.public_url}/cutouts/{v.alert_id}/{kind}.fits")
        s.iso.text = v.iso
        det = v.det
        s.c1.text = repr(det.ra)
        s.c2.text = repr(det.dec)
        s.radius.text = fmt_float(v.radius)
        if v.probability is not None:
            s.why.set("importance", v.probability)
            s.inference.set("probability", v.probability)
        s.name.text = v.key
        s.concept.text = SOLAR_CONCEPT if v.solar else TRANSIENT_CONCEPT
        s.description.text = _summary(v.profile, det, v.alert_id, v.key)
        # serializing to str and encoding is ~15% faster than lxml writing UTF-8 bytes itself
        text = etree.tostring(root, encoding="unicode")
        if s.data is not None:
            # the light-curve table as text: ~450 cells an alert cost more as lxml elements than the rest of the
            # document (the marker is element text, so it cannot stand anywhere else: "<" is always escaped)
            text = text.replace(_DATA_MARK, f"<Data>{_table_rows(v.previous)}</Data>", 1)
        return _DECLARATION + text.encode()


#: what a Citation adds to a packet, at most (two IVORNs and an object key): kept free below MAX_EVENT_BYTES
CITATION_ROOM = 1_500
_ROWS = "vogateway-light-curve-rows"
_DATA_MARK = f"<Data>{_ROWS}</Data>"


def _table_rows(previous) -> str:
    """``<TR><TD>..</TD>..</TR>`` of the light-curve table, values escaped as lxml would."""
    cells = []
    for det in previous:
        cells.append("<TR>")
        for get, fmt in PREVIOUS_FIELDS:
            value = get(det)
            cells.append("<TD></TD>" if value is None else f"<TD>{escape(fmt(value))}</TD>")
        cells.append("</TR>")
    return "".join(cells)


def cite(xml: bytes, key: str, cited: str) -> bytes:
    """A VOEvent built here, with Citations of ``cited`` (the object's previous VOEvent) before its closing
    Description, as VOEvent 2.0 orders them (the root's Description is its last child)."""
    at = xml.rindex(b"<Description>")
    citation = (f'<Citations><EventIVORN cite="followup">{escape(cited)}</EventIVORN><Description>New detection of '
                f'{escape(key)}, earlier announced in {escape(cited)}</Description></Citations>')
    return xml[:at] + citation.encode() + xml[at:]


SOLAR_CONCEPT = "known solar-system object"
TRANSIENT_CONCEPT = "transient or variable source (difference image)"


class _Values:
    """Everything of one alert that goes into its VOEvent, as text, and the shape it gives the document."""

    __slots__ = ("alert", "profile", "det", "alert_id", "key", "ivorn", "role", "iso", "solar", "radius",
                 "trigger", "extra", "object", "n_previous", "n_limits", "previous", "cutouts", "probability", "now")

    def __init__(self, alert, view, profile: SurveyProfile, ivorn, role, rows):
        det = view.detection
        self.alert, self.profile, self.det, self.alert_id, self.key = alert, profile, det, view.alert_id, view.object_key
        self.ivorn, self.role, self.iso = ivorn, role, view.iso_utc
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
        """Values of the skeleton's value-less Params, in document order (see _Skeleton)."""
        values = [str(self.alert_id), self.key, self.alert.schema, self.iso, "true" if self.solar else "false"]
        values += [v for v in self.trigger if v is not None]
        values += [v for v in self.extra if v is not None]
        values += [text for _, text in self.object]
        values += [str(self.n_previous), str(self.n_limits)]
        return values


class _Skeleton:
    """The VOEvent tree of one alert shape, reused for every alert of that shape: only values change.

    ``params`` are the Params whose ``value`` each alert sets, in :meth:`_Values.param_values` order;
    ``date``, ``iso``, ``c1``, ... are the other elements an alert fills in (None when the shape has none).
    """

    def __init__(self, v: _Values, author_ivorn: str):
        profile = v.profile
        sub = _SubElement
        root = self.root = etree.Element(_ROOT_TAG, _ROOT_ATTRS, nsmap=_NSMAP, ivorn="", role="observation")
        named: dict[str, etree._Element] = {}
        params = []

        who = sub(root, "Who")
        sub(who, "AuthorIVORN").text = author_ivorn
        named["date"] = sub(who, "Date")
        sub(who, "Description").text = "Converted from the survey's Avro alert by vogateway"

        what = sub(root, "What")
        for attrs in (_P_ALERT_ID, _P_OBJECT_KEY, _P_SURVEY, _P_SCHEMA, _P_ISO, _P_SSO):
            if attrs is _P_SURVEY:
                sub(what, "Param", {**attrs, "value": v.alert.survey})
            else:
                params.append(sub(what, "Param", attrs))
        trigger = sub(what, "Group", profile.trigger_group)
        params += [sub(trigger, "Param", attrs)
                   for (attrs, _, _), value in zip(profile.trigger_params, v.trigger) if value is not None]
        params += [sub(trigger, "Param", attrs)
                   for (_, attrs, _), value in zip(profile.extra_params, v.extra) if value is not None]
        group = sub(what, "Group", {"name": "object", "type": v.object_type()})
        params += [sub(group, "Param", object_params(name, profile.scale)[0]) for name, _ in v.object]
        params.append(sub(what, "Param", _P_N_PREVIOUS))
        params.append(sub(what, "Param", _P_N_LIMITS))
        if v.previous:
            table = sub(what, "Table", profile.previous_table)
            for attrs in profile.previous_fields:
                sub(table, "Field", attrs)
            named["data"] = data = sub(table, "Data")
            data.text = _ROWS
        cutouts = [sub(what, "Reference", uri="", type=kind, mimetype=_CUTOUT_MIME) for kind in v.cutouts]

        where_when = sub(root, "WhereWhen")
        obs_data = sub(where_when, "ObsDataLocation")
        sub(obs_data, "ObservatoryLocation", profile.observatory)
        location = sub(obs_data, "ObservationLocation")
        sub(location, "AstroCoordSystem", _COORD_SYSTEM)
        coords = sub(location, "AstroCoords", _COORDS)
        named["iso"] = sub(sub(sub(coords, "Time", _TIME), "TimeInstant"), "ISOTime")
        position = sub(coords, "Position2D", _POSITION)
        sub(position, "Name1").text = "RA"
        sub(position, "Name2").text = "Dec"
        value2 = sub(position, "Value2")
        named["c1"] = sub(value2, "C1")
        named["c2"] = sub(value2, "C2")
        named["radius"] = sub(position, "Error2Radius")

        how = sub(root, "How")
        sub(how, "Description").text = profile.how
        for uri in profile.references:
            sub(how, "Reference", uri=uri, type="url")

        named["why"] = why = sub(root, "Why")
        named["inference"] = inference = sub(why, "Inference", relation="identified")
        named["name"] = sub(inference, "Name")
        named["concept"] = sub(inference, "Concept")

        named["description"] = sub(root, "Description")

        self.data = None
        for name, element in named.items():
            setattr(self, name, element)
        self.params = tuple(params)
        self.cutouts = tuple(cutouts)


def error_radius(det, profile: SurveyProfile) -> float:
    """1-sigma position error radius, deg: the larger of ``ra_err``, ``dec_err`` when the alert has them
    (conservative: no cos(dec) factor is assumed), else the survey's documented default."""
    errors = [e for e in (det.ra_err, det.dec_err) if e is not None and e > 0.0]
    return max(errors) if errors else profile.default_error_deg


def _by_time(det) -> float:
    return det.mjd if det.mjd is not None else -math.inf


def _summary(profile: SurveyProfile, det, alert_id, key) -> str:
    text = f"{profile.label} alert {alert_id} on {key}"
    if det.mag is not None:
        text += f": {det.band or '?'} = {det.mag:.2f} mag (difference image)"
    elif det.psf_flux is not None:
        text += f": {det.band or '?'} difference flux {det.psf_flux:.1f} nJy"
    if det.reliability is not None:
        text += f", reliability {det.reliability:.2f}"
    return text


