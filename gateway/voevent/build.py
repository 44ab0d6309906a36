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

Speed: every attribute dict that does not depend on the alert is built once at import; times are converted
with a leap-second table (:mod:`gateway.voevent.times`), not astropy.time; nothing is deep-copied.

Size: a VOEvent stays under :data:`MAX_EVENT_BYTES` (Comet's VTP frame cap): the light curve is summarised as
the last :data:`MAX_PREVIOUS_ROWS` previous detections plus counts, never dumped.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Callable, Optional, Protocol

from lxml import etree

from gateway.alerts import Alert, AlertError
from gateway.alerts import fields
from gateway.event import ROLES, Event
from gateway.voevent import rubin, ztf
from gateway.voevent.parse import IVORN_RE
from gateway.voevent.spec import BOOL, INT, PREVIOUS_FIELDS, SurveyProfile, fmt_float, object_params, param_attrs
from gateway.voevent.times import mjd_to_utc_iso

VOEVENT_NS = "http://www.ivoa.net/xml/VOEvent/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: VOEvents must stay below this size, bytes (Comet refuses VTP frames of 99,999 bytes and more)
MAX_EVENT_BYTES = 99_999
#: How many of the latest previous detections a VOEvent lists (the rest are only counted)
MAX_PREVIOUS_ROWS = 30

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
_CITE = {"cite": "followup"}
_CUTOUT_MIME = "application/fits"

# Params of the What section that are not about the detection itself
_P_ALERT_ID = param_attrs("alert_id", "meta.id", None, INT)
_P_OBJECT_KEY = param_attrs("object_key", "meta.id", None, None)
_P_SURVEY = param_attrs("survey", "meta.note", None, None)
_P_SCHEMA = param_attrs("schema_version", "meta.version", None, None)
_P_N_PREVIOUS = param_attrs("n_previous", "meta.number", None, INT)
_P_N_LIMITS = param_attrs("n_upper_limits", "meta.number", None, INT)
_P_SSO = param_attrs("solar_system", "meta.code", None, BOOL)
_P_POS_ERR = param_attrs("position_error_origin", "meta.code", None, None)
_P_ISO = param_attrs("observation_time_utc", "time.epoch", None, None)
_P_N_ROWS = param_attrs("n_rows", "meta.number", None, INT)


class History(Protocol):
    """Which VOEvent was last issued for an object, so a new alert on it can cite that one.

    Implemented in memory here (:class:`MemoryHistory`) and over the alert DB by the store. Called from the
    converting thread for every alert: ``previous`` must be quick.
    """

    def previous(self, object_key: str) -> Optional[str]:
        """The IVORN of the latest VOEvent issued for ``object_key``, or None."""

    def remember(self, object_key: str, ivorn: str) -> None:
        """Record ``ivorn`` as the latest VOEvent issued for ``object_key``."""


class MemoryHistory:
    """:class:`History` in memory, bounded: the least recently used objects are forgotten first."""

    def __init__(self, max_objects: int = 100_000):
        self.max_objects = max_objects
        self._latest: OrderedDict[str, str] = OrderedDict()

    def previous(self, object_key: str) -> Optional[str]:
        ivorn = self._latest.get(object_key)
        if ivorn is not None:
            self._latest.move_to_end(object_key)
        return ivorn

    def remember(self, object_key: str, ivorn: str) -> None:
        self._latest[object_key] = ivorn
        self._latest.move_to_end(object_key)
        if len(self._latest) > self.max_objects:
            self._latest.popitem(last=False)

    def __len__(self) -> int:
        return len(self._latest)


class _DateCache:
    """Who/Date text for "now" (UTC, whole seconds), formatted once per second."""

    def __init__(self, clock: Callable[[], float]):
        self.clock, self.second, self.text = clock, None, ""

    def now(self) -> tuple[float, str]:
        t = self.clock()
        second = int(t)
        if second != self.second:
            self.second = second
            self.text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
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

    # ------------------------------------------------------------------------------------------------ API

    def __call__(self, alert: Alert) -> Event:
        profile = PROFILES.get(alert.survey)
        if profile is None:
            raise AlertError(alert.source, alert.position, f"unknown survey {alert.survey!r}")
        try:
            det = fields.detection(alert)
            alert_id = fields.alert_id(alert)
            key = fields.object_key(alert)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise AlertError(alert.source, alert.position, f"malformed alert: {error!r}") from None
        ra, dec = det.ra, det.dec
        if ra is None or dec is None:
            raise AlertError(alert.source, alert.position, "no usable position: ra/dec missing or NaN")
        if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
            raise AlertError(alert.source, alert.position, f"position out of range: ra={ra!r}, dec={dec!r} deg")
        mjd = det.mjd
        if mjd is None or not isinstance(mjd, (int, float)) or not math.isfinite(mjd):
            raise AlertError(alert.source, alert.position, f"no usable time: MJD {mjd!r}")
        iso = mjd_to_utc_iso(mjd, det.time_scale)

        ivorn = f"{self.prefix}{alert_id}"
        role = self.role if self.role != "auto" else ("test" if alert.simulated else "observation")
        cited = self.history.previous(key)
        if cited == ivorn:  # the same alert again (a replay): never cite yourself
            cited = None

        rows = self.max_previous_rows
        xml = self._build(alert, profile, det, alert_id, key, ivorn, role, iso, cited, rows)
        while len(xml) >= MAX_EVENT_BYTES and rows:
            rows //= 4  # over budget (huge free-text fields?): shorten the light-curve table until it fits
            xml = self._build(alert, profile, det, alert_id, key, ivorn, role, iso, cited, rows)
        if len(xml) >= MAX_EVENT_BYTES:
            raise AlertError(alert.source, alert.position,
                             f"VOEvent too large: {len(xml)} bytes >= {MAX_EVENT_BYTES} even without a light curve")
        self.history.remember(key, ivorn)
        return Event(ivorn=ivorn, role=role, received=datetime.fromtimestamp(self._date.now()[0], timezone.utc),
                     xml=xml, alert=alert, origin=alert.source)

    convert = __call__

    # ------------------------------------------------------------------------------------------- building

    def _build(self, alert, profile: SurveyProfile, det, alert_id, key, ivorn, role, iso, cited, rows) -> bytes:
        root = etree.Element(_ROOT_TAG, _ROOT_ATTRS, nsmap=_NSMAP, ivorn=ivorn, role=role)
        _, date = self._date.now()

        who = _SubElement(root, "Who")
        _SubElement(who, "AuthorIVORN").text = self.author_ivorn
        _SubElement(who, "Date").text = date
        _SubElement(who, "Description").text = "Converted from the survey's Avro alert by vogateway"

        what = _SubElement(root, "What")
        self._what(what, alert, profile, det, alert_id, key, iso, rows)
        self._where_when(root, profile, det, iso)

        how = _SubElement(root, "How")
        _SubElement(how, "Description").text = profile.how
        for uri in profile.references:
            _SubElement(how, "Reference", uri=uri, type="url")

        self._why(root, alert, det, key)

        if cited is not None:
            citations = _SubElement(root, "Citations")
            _SubElement(citations, "EventIVORN", _CITE).text = cited
            _SubElement(citations, "Description").text = f"New detection of {key}, earlier announced in {cited}"

        _SubElement(root, "Description").text = _summary(profile, det, alert_id, key)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def _what(self, what, alert, profile: SurveyProfile, det, alert_id, key, iso, rows):
        sub = _SubElement
        sub(what, "Param", {**_P_ALERT_ID, "value": str(alert_id)})
        sub(what, "Param", {**_P_OBJECT_KEY, "value": key})
        sub(what, "Param", {**_P_SURVEY, "value": alert.survey})
        sub(what, "Param", {**_P_SCHEMA, "value": alert.schema})
        sub(what, "Param", {**_P_ISO, "value": iso})
        sub(what, "Param", {**_P_SSO, "value": "true" if fields.is_solar_system(alert) else "false"})

        trigger = sub(what, "Group", profile.trigger_group)
        for attrs, get, fmt in profile.trigger_params:
            value = get(det)
            if value is not None:
                sub(trigger, "Param", {**attrs, "value": fmt(value)})
        extra, missing = det.extra, profile.missing
        for field_name, attrs, fmt in profile.extra_params:
            value = extra.get(field_name)
            if value is not None and value == value and value not in missing:  # skip null, NaN, sentinels
                sub(trigger, "Param", {**attrs, "value": fmt(value)})

        summary = fields.object_summary(alert)
        group = sub(what, "Group", profile.object_group(key))
        for name, value in summary.items():
            if value is None:
                continue
            attrs = object_params(name, profile.time_scale_suffix)
            if attrs is not None:
                sub(group, "Param", {**attrs[0], "value": attrs[1](value)})

        n_previous = fields.n_previous(alert)
        sub(what, "Param", {**_P_N_PREVIOUS, "value": str(n_previous)})
        sub(what, "Param", {**_P_N_LIMITS, "value": str(len(fields.upper_limits(alert)))})
        if n_previous and rows:
            self._previous_table(what, alert, profile, rows)

        for kind in fields.cutouts(alert):
            sub(what, "Reference", uri=f"{self.public_url}/cutouts/{alert_id}/{kind}.fits", type=kind,
                mimetype=_CUTOUT_MIME)

    @staticmethod
    def _previous_table(what, alert, profile: SurveyProfile, rows: int):
        """The latest ``rows`` previous detections, newest last, as a Table (the rest only counted)."""
        previous = fields.previous_detections(alert)
        previous.sort(key=_by_time)
        shown = previous[-rows:]
        sub = _SubElement
        table = sub(what, "Table", profile.previous_table)
        sub(table, "Param", {**_P_N_ROWS, "value": str(len(shown))})
        for attrs in profile.previous_fields:
            sub(table, "Field", attrs)
        data = sub(table, "Data")
        for det in shown:
            tr = sub(data, "TR")
            for get, fmt in PREVIOUS_FIELDS:
                value = get(det)
                sub(tr, "TD").text = "" if value is None else fmt(value)

    @staticmethod
    def _where_when(root, profile: SurveyProfile, det, iso: str):
        sub = _SubElement
        where_when = sub(root, "WhereWhen")
        obs_data = sub(where_when, "ObsDataLocation")
        sub(obs_data, "ObservatoryLocation", profile.observatory)
        location = sub(obs_data, "ObservationLocation")
        sub(location, "AstroCoordSystem", _COORD_SYSTEM)
        coords = sub(location, "AstroCoords", _COORDS)
        instant = sub(sub(coords, "Time", _TIME), "TimeInstant")
        sub(instant, "ISOTime").text = iso
        position = sub(coords, "Position2D", _POSITION)
        sub(position, "Name1").text = "RA"
        sub(position, "Name2").text = "Dec"
        value2 = sub(position, "Value2")
        sub(value2, "C1").text = repr(det.ra)
        sub(value2, "C2").text = repr(det.dec)
        sub(position, "Error2Radius").text = fmt_float(error_radius(det, profile))

    @staticmethod
    def _why(root, alert, det, key: str):
        reliability = det.reliability
        solar = fields.is_solar_system(alert)
        concept = "known solar-system object" if solar else "transient or variable source (difference image)"
        if reliability is not None and 0.0 <= reliability <= 1.0:
            probability = "%.3f" % reliability
            why = _SubElement(root, "Why", importance=probability)
            inference = _SubElement(why, "Inference", probability=probability, relation="identified")
        else:
            why = _SubElement(root, "Why")
            inference = _SubElement(why, "Inference")
        _SubElement(inference, "Name").text = key
        _SubElement(inference, "Concept").text = concept


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


#: What a Pipeline's ``convert`` argument is: any callable Alert -> Event
convert_type = Callable[[Alert], Event]
