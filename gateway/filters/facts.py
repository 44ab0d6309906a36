"""One event as filters see it: the survey-neutral fields, read from the event's view.

The names of :data:`FIELDS` mean the same for Rubin and ZTF alerts and for events that arrived as VOEvent XML
(read from WhereWhen and the Params of the same name: :func:`gateway.voevent.read.view_of_tree`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from gateway.event import Event
from gateway.times import datetime_to_mjd
from gateway.view import View
from gateway.voevent.parse import VOEventError, safe_fromstring, view_of
from gateway.voevent.read import view_of_tree

#: The survey-neutral names, with what they mean (shown by ``vogateway routes fields`` and in errors).
FIELDS = {
    "survey": "rubin or ztf (VOEvent: the survey Param)",
    "schema": "alert schema version, e.g. 7.4, 3.3",
    "simulated": "true for simulated/test alerts",
    "role": "VOEvent role: observation, test, ...",
    "ivorn": "the event's IVORN",
    "origin": "where the event came from (file, kafka://..., vtp://...)",
    "object": "object key: diaObject:<id>, ssObject:<id>, or the ZTF objectId",
    "ra": "right ascension of the detection, deg (ICRS)",
    "dec": "declination of the detection, deg (ICRS)",
    "mjd": "time of the detection, MJD (TAI for Rubin, UTC for ZTF)",
    "age": "days from the detection to when the gateway received the event",
    "band": "filter band: u g r i z y",
    "mag": "difference-image AB magnitude",
    "mag_err": "its uncertainty, mag",
    "flux": "difference-image PSF flux, nJy",
    "flux_err": "its uncertainty, nJy",
    "snr": "signal-to-noise ratio (Rubin)",
    "reliability": "real/bogus score 0-1 (Rubin reliability, ZTF drb or rb)",
    "is_negative": "true when the difference flux is negative",
    "is_dipole": "true when fit as a dipole (Rubin)",
    "trail_length": "trail length, arcsec (Rubin)",
    "solar_system": "true when associated with a known solar-system object",
    "n_detections": "detections of the object so far, as the survey counts them",
    "n_previous": "earlier detections shipped in the alert",
}


class Facts:
    """One event as filters see it: the view, the raw record and, on first use only, the parsed VOEvent.

    Build one per event and evaluate every route's filter on it.
    """

    __slots__ = ("event", "view", "_root")

    def __init__(self, event: Event, root=None):
        """``root``: the event's VOEvent already parsed (safely), if the caller has it."""
        self.event = event
        self._root = root
        self.view = view_of(event, root)

    def get(self, name: str):
        """The value of the neutral field ``name`` (None when the event does not say)."""
        return _NEUTRAL[name](self)

    def record(self) -> Optional[dict]:
        alert = self.event.alert
        return None if alert is None else alert.record

    def root(self):
        """The parsed VOEvent (safely: no DTD, no network), or None if it does not parse."""
        if self._root is None:
            try:
                self._root = safe_fromstring(self.event.xml)
            except VOEventError:
                self._root = False
        return self._root if self._root is not False else None

    def param(self, name: str):
        """A What Param of the VOEvent by name, a number where it reads as one (None when absent)."""
        params = self.view.params
        if not params and self.event.alert is not None:  # an alert's view has no Params: read its VOEvent
            root = self.root()
            params = {} if root is None else view_of_tree(root).params
            self.view = _with_params(self.view, params)
        return params.get(name)


def _with_params(view: View, params: dict) -> View:
    return replace(view, params=params)


def _age(facts: Facts):
    mjd = facts.view.mjd_utc
    return None if mjd is None else datetime_to_mjd(facts.event.received) - mjd


def _attribute(name: str) -> Callable[[Facts], Any]:
    return lambda facts: getattr(facts.view, name)


_NEUTRAL: dict[str, Callable[[Facts], Any]] = {
    "survey": _attribute("survey"),
    "schema": _attribute("schema"),
    "simulated": lambda f: f.view.simulated if f.event.alert is not None else f.event.role == "test",
    "role": lambda f: f.event.role,
    "ivorn": lambda f: f.event.ivorn,
    "origin": lambda f: f.event.origin,
    "object": _attribute("object_key"),
    "ra": _attribute("ra"),
    "dec": _attribute("dec"),
    "mjd": _attribute("mjd"),
    "age": _age,
    "band": _attribute("band"),
    "mag": _attribute("mag"),
    "mag_err": _attribute("mag_err"),
    "flux": _attribute("flux"),
    "flux_err": _attribute("flux_err"),
    "snr": _attribute("snr"),
    "reliability": _attribute("reliability"),
    "is_negative": _attribute("is_negative"),
    "is_dipole": _attribute("is_dipole"),
    "trail_length": _attribute("trail_length"),
    "solar_system": _attribute("solar_system"),
    "n_detections": _attribute("n_detections"),
    "n_previous": _attribute("n_previous"),
}
assert set(_NEUTRAL) == set(FIELDS)
