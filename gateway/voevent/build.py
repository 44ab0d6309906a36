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
attribute dicts of :mod:`gateway.voevent.spec` (a :class:`gateway.voevent.skeleton.Skeleton`, kept in a
bounded cache per Converter), and for each alert of that shape only its values are set before the tree is
serialized: no attribute is created twice, nothing is copied. The skeleton is indented once, so packets are
written pretty-printed for free. Times are converted
with a leap-second table (:mod:`gateway.times`), not astropy.time. ``scripts/bench/convert.py`` has
the figures.

IVORNs: ``ivo://<authority>/<stream>/<survey>#<issue id>`` (:mod:`gateway.voevent.ivorn`,
``fields.issue_id``); Citations (``followup``, ``supersedes``) are added by :meth:`Converter.link`
(:mod:`gateway.voevent.citations`).

Size: a VOEvent stays under :data:`MAX_EVENT_BYTES` (Comet's VTP frame cap): the light curve is summarised as
the last :data:`MAX_PREVIOUS_ROWS` previous detections plus counts, never dumped.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable, Optional

from lxml import etree

from gateway.alerts import Alert, AlertError, fields
from gateway.event import ROLES, Event
from gateway.times import format_iso
from gateway.voevent import rubin, ztf
from gateway.voevent.citations import CITATION_ROOM, Citer, cite
from gateway.voevent.history import History, MemoryHistory
from gateway.voevent.ivorn import author_ivorn, event_stream, is_event_ivorn
from gateway.voevent.skeleton import (CUTOUT_KINDS, DATA_MARK, SOLAR_CONCEPT, TRANSIENT_CONCEPT, Skeleton, Values,
                                      table_rows)
from gateway.voevent.spec import SurveyProfile, fmt_float

__all__ = ["Converter", "MemoryHistory", "CUTOUT_KINDS", "MAX_EVENT_BYTES", "MAX_PREVIOUS_ROWS", "PROFILES",
           "DEFAULT_AUTHOR_NAME", "error_radius"]

#: VOEvents must stay below this size, bytes (Comet refuses VTP frames of 99,999 bytes and more)
MAX_EVENT_BYTES = 99_999
#: How many of the latest previous detections a VOEvent lists (the rest are only counted)
MAX_PREVIOUS_ROWS = 30
#: Skeletons (one per alert shape) kept per thread; a stream has a handful of shapes per schema version
MAX_SKELETONS = 2048
#: Who/Author/contactName when the config names nobody (config ``gateway.author_name``)
DEFAULT_AUTHOR_NAME = "vogateway operator"

PROFILES: dict[str, SurveyProfile] = {"rubin": rubin.PROFILE, "ztf": ztf.PROFILE}

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_Values = Values  # the name scripts/bench/convert.py knows


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

    - ``authority``, ``stream``: IVORNs are ``ivo://<authority>/<stream>/<survey>#<issue id>`` (one stream per
      survey, so their ids cannot collide); the author is ``ivo://<authority>/<stream>``.
    - ``public_url``: base URL of the gateway's HTTP service; cutouts are referenced as
      ``<public_url>/cutouts/<alertId>/<kind>.fits`` (not embedded).
    - ``role``: "observation", "test", ... or "auto" ("test" for simulated alerts, else "observation").
    - ``history``: a :class:`History` of each object's latest IVORN, for citations (default: a
      :class:`MemoryHistory`).
    - ``clock``: seconds since the epoch, for Who/Date and Event.received (tests pass a fixed clock).
    - ``author_name``, ``author_email``: Who/Author contactName and contactEmail (an empty email is left out);
      shortName is the authority.

    May be called from several threads: the skeletons it fills in place are per thread; :meth:`link` (and the
    default :class:`MemoryHistory`) only from one thread at a time (the reactor's, in ``serve``).
    """

    def __init__(self, authority: str, stream: str, public_url: str, role: str = "auto",
                 history: Optional[History] = None, clock: Optional[Callable[[], float]] = None,
                 max_previous_rows: int = MAX_PREVIOUS_ROWS, author_name: str = DEFAULT_AUTHOR_NAME,
                 author_email: str = ""):
        author = author_ivorn(authority, stream)
        self.prefixes = {survey: event_stream(authority, stream, survey) + "#" for survey in PROFILES}
        if not all(is_event_ivorn(prefix + "0") for prefix in self.prefixes.values()):
            raise ValueError(f"authority {authority!r} / stream {stream!r} do not make a valid IVORN "
                             f"({self.prefixes['rubin']}id)")
        if role != "auto" and role not in ROLES:
            raise ValueError(f"role {role!r} is not 'auto' or one of {', '.join(ROLES)}")
        self.author = {"shortName": authority, "contactName": author_name.strip(), "contactEmail": author_email.strip()}
        for key, text in (("author_name", author_name), ("author_email", author_email)):
            try:
                etree.Element("x").text = text
            except ValueError:
                raise ValueError(f"{key} {text!r} is not text XML can carry (control characters?)") from None
        self.author_ivorn = author
        self.public_url = public_url.rstrip("/")
        self.role = role
        self.history = history if history is not None else MemoryHistory()
        self.citer = Citer(self.history)
        self.max_previous_rows = max_previous_rows
        self._date = _DateCache(clock or time.time)
        self._local = threading.local()  # skeletons are filled in place: each thread gets its own

    # ------------------------------------------------------------------------------------------------ API

    def __call__(self, alert: Alert) -> Event:
        """The alert's VOEvent, with its Citations (:meth:`prepare`, then :meth:`link`)."""
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
        role = self.role if self.role != "auto" else ("test" if alert.simulated else "observation")
        try:
            ivorn = self.prefixes[alert.survey] + fields.issue_id(alert)
            values = Values(alert, view, profile, ivorn, role, self.max_previous_rows)
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
        """``event`` (from :meth:`prepare`) with its Citations: ``supersedes`` an earlier issue of the same
        detection, ``followup`` the latest earlier VOEvent on its object (:mod:`gateway.voevent.citations`).

        Runs where the history is (the reactor process), in the order the alerts arrived. A replay (an IVORN issued
        lately) cites nothing and changes no history.
        """
        view = event.view
        det = view.detection
        source = None if det is None or det.source_id is None else f"{view.survey}:{det.source_id}"
        citations = self.citer.citations(event.ivorn, view.object_key, source)
        if not citations:
            return event
        # the constructor, not dataclasses.replace: this runs for most alerts, and replace costs several times more
        return Event(event.ivorn, event.role, event.received, cite(event.xml, citations, view.object_key, source),
                     event.alert, event.origin, view, event.rows)

    # ------------------------------------------------------------------------------------------- building

    def _skeletons(self) -> dict[tuple, Skeleton]:
        try:
            return self._local.skeletons
        except AttributeError:
            skeletons = self._local.skeletons = {}
            return skeletons

    def _build(self, v: Values) -> bytes:
        """Fill the skeleton of the alert's shape with this alert's values and serialize it."""
        skeletons = self._skeletons()
        shape = v.shape()
        s = skeletons.get(shape)
        if s is None:
            if len(skeletons) >= MAX_SKELETONS:
                skeletons.clear()
            s = skeletons[shape] = Skeleton(v, self.author_ivorn, self.author)
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
        s.time_error.text = v.time_error
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
            text = text.replace(DATA_MARK, f"<Data>{table_rows(v.previous)}", 1)
        return _DECLARATION + text.encode() + b"\n"


def error_radius(det, profile: SurveyProfile) -> float:
    """1-sigma position error radius, deg: the larger of ``ra_err``, ``dec_err`` when the alert has them
    (conservative: no cos(dec) factor is assumed), else the survey's documented default."""
    errors = [e for e in (det.ra_err, det.dec_err) if e is not None and e > 0.0]
    return max(errors) if errors else profile.default_error_deg


def _summary(profile: SurveyProfile, det, alert_id, key) -> str:
    text = f"{profile.label} alert {alert_id} on {key}"
    if det.mag is not None:
        text += f": {det.band or '?'} = {det.mag:.2f} mag (difference image)"
    elif det.psf_flux is not None:
        text += f": {det.band or '?'} difference flux {det.psf_flux:.1f} nJy"
    if det.reliability is not None:
        text += f", reliability {det.reliability:.2f}"
    return text
