"""TNS-style forwards: an AT (discovery) report for each new object, the way the TNS bot API takes it.

- The report is POSTed to ``<url>/set/bulk-report`` as form fields ``api_key`` and ``data`` (the JSON
  ``{"at_report": {"0": {...}}}``, checked against ``schemas/tns/at-report.schema.json``), with the ``tns_marker``
  User-Agent. The reply's ``data.report_id`` is stored in the outbox row.
- The reply is then polled at ``<url>/get/bulk-report-reply`` (``api_key``, ``report_id``): 404 means not processed
  yet; 200 carries feedback with the object name (codes 100 "new object" and 101 "already exists" both name
  it); 400 is a rejection. The name goes to ``tns_report`` and to ``diaobject.tns_name`` (so TAP shows it).
- An object is reported once, ever: the outbox key is ``tns:<objectid>`` and ``tns_report`` (objectid primary
  key) records every object queued, whichever route queued it.
- After an attempt that may have reached TNS (a timeout, a dropped connection, a 5xx, a garbage reply, or a
  gateway killed mid-request) the next attempt first searches TNS by our internal name (``<url>/get/search``);
  if the object is there, its name is taken and nothing is sent again.
- HTTP 429 pauses the route for ``x-rate-limit-reset`` seconds (else ``Retry-After``); a 200 saying
  ``x-rate-limit-remaining: 0`` pauses it too, before the next request is refused.
- The API key is sent in the form body only and is never logged nor stored in the outbox.

The report: ``discovery_datetime`` is the object's first detection as the survey counts it (Rubin
``diaObject.firstDiaSourceMjdTai`` from 8.0, ZTF ``jdstarthist``), not the earliest point the packet happens to
carry (that only when the survey gives none). Photometry: Rubin difference fluxes (nJy) become AB magnitudes
(31.4 - 2.5 log10 f); ZTF ``magpsf`` is used as shipped; each point with its 5-sigma ``limiting_flux`` and its
``exptime`` where known. Detections with a non-positive flux are left out; times are UTC. ``non_detection`` is
the last upper limit before discovery (ZTF's, Rubin's forced photometry below 5 sigma or its non-detection
limits), else an archival remark. Filter and instrument ids default per survey (ZTF, Rubin: :data:`FILTERS`,
:data:`INSTRUMENTS`); a route's ``filters`` and ``instrument`` replace them.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.errors import in_words
from gateway.event import Event
from gateway.forward import outbox
from gateway.forward.common import (
    HTTP,
    classify,
    dumps,
    form,
    header,
    internal_name,
    short,
    validation_errors,
    wait_seconds,
)
from gateway.alerts import fields
from gateway.times import mjd_to_utc_iso, to_tai
from gateway.view import View

log = Logger()

REPORT_SCHEMA = ("tns", "at-report.schema.json")
#: TNS flux unit id of AB magnitudes
AB_MAG = "1"
#: TNS filter ids of ZTF's g, r, i (TNS values list)
ZTF_FILTERS = {"g": "110", "r": "111", "i": "112"}
#: TNS instrument id of the ZTF camera
ZTF_INSTRUMENT = "196"
#: TNS filter ids of LSSTCam's u g r i z y and the instrument id of Rubin/LSSTCam, as Lasair's TNS reporting
#: notes give them (lasairvras.github.io/lvra-doc/tns.html, 2025): check against the TNS values list, and set a
#: route's ``filters``/``instrument`` if TNS changes them
RUBIN_FILTERS = {"u": "160", "g": "161", "r": "162", "i": "163", "z": "164", "y": "165"}
RUBIN_INSTRUMENT = "287"
#: default filter ids and instrument id per survey
FILTERS = {"ztf": ZTF_FILTERS, "rubin": RUBIN_FILTERS}
INSTRUMENTS = {"ztf": ZTF_INSTRUMENT, "rubin": RUBIN_INSTRUMENT}


def tns_time(mjd: float, scale: str) -> str:
    """'YYYY-MM-DD HH:MM:SS.fff' (UTC), the TNS date format."""
    return mjd_to_utc_iso(mjd, scale).replace("T", " ")


def _discovery(view: View, earliest) -> tuple[float, str]:
    """(MJD, scale) of the object's first detection: the survey's own count (``first_mjd`` of the object summary)
    when it gives one no later than the earliest detection shipped, else that earliest detection."""
    first, scale = view.summary.get("first_mjd"), view.summary.get("time_scale")
    if isinstance(first, (int, float)) and scale in ("tai", "utc") \
            and to_tai(first, scale) <= to_tai(earliest.mjd, earliest.time_scale):
        return float(first), scale
    return earliest.mjd, earliest.time_scale


class ReportError(ValueError):
    """An alert that cannot become an AT report (no positive detection, unknown filter, ...)."""


class TNS:
    """AT reports for one TNS endpoint (``url``: the API base, e.g. ``https://sandbox.wis-tns.org/api``)."""

    kind = "tns"

    def __init__(self, url: str, api_key: str, bot_id: int, bot_name: str, reporting_group_id: str,
                 discovery_data_source_id: str, reporter: str, reactor=None, timeout: float = 30.0,
                 poll_interval: float = 30.0, at_type: str = "1", filters: Optional[dict] = None,
                 instrument: str = "", remarks: str = "", search_wait: float = 0.0):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.user_agent = 'tns_marker{"tns_id":%d,"type":"bot","name":"%s"}' % (int(bot_id), bot_name)
        self.group, self.source, self.reporter = str(reporting_group_id), str(discovery_data_source_id), reporter
        self.at_type, self.remarks = str(at_type), remarks
        self.filters = {str(k): str(v) for k, v in (filters or {}).items()}
        self.instrument = str(instrument)
        self.poll_interval, self.search_wait = poll_interval, search_wait
        self.http = HTTP(reactor, timeout)
        self.reactor = reactor

    def __repr__(self):  # never the key
        return f"TNS({self.url!r}, bot={self.user_agent!r})"

    # -- the report -----------------------------------------------------------------------------------------

    def _filter_id(self, survey: str, band: Optional[str]) -> str:
        table = self.filters or FILTERS.get(survey, {})
        if band is None or band not in table:
            raise ReportError(f"no TNS filter id for band {band!r} of {survey} (set the route's filters table)")
        return table[band]

    def _instrument_id(self, survey: str) -> str:
        value = self.instrument or INSTRUMENTS.get(survey, "")
        if not value:
            raise ReportError(f"no TNS instrument id for {survey} (set the route's instrument)")
        return value

    def report(self, view: View) -> dict[str, Any]:
        """The bulk-report ``data`` for one alert's view."""
        survey = view.survey
        trigger = view.detection
        detections = [d for d in (*view.previous, trigger) if d.mag is not None and not d.is_negative]
        if not detections:
            raise ReportError("no detection with a positive flux to report")
        detections.sort(key=lambda d: d.mjd)
        instrument = self._instrument_id(survey)
        points = {}
        for index, det in enumerate(detections):
            point = {"obsdate": tns_time(det.mjd, det.time_scale), "flux": round(det.mag, 3),
                     "flux_units": AB_MAG, "filter_value": self._filter_id(survey, det.band),
                     "instrument_value": instrument, "observer": "Robot",
                     "comments": "difference-image PSF photometry" + (" from flux in nJy" if survey == "rubin" else "")}
            if det.mag_err is not None:
                point["flux_error"] = round(det.mag_err, 3)
            limit, exptime = fields.limiting_mag(det), fields.exposure_time(det)
            if limit is not None:
                point["limiting_flux"] = round(limit, 3)
            if exptime is not None:
                point["exptime"] = round(exptime, 3)
            points[str(index)] = point
        if trigger.ra is None or trigger.dec is None:
            raise ReportError("the alert has no position")
        err_arcsec = max([e for e in (trigger.ra_err, trigger.dec_err) if e is not None], default=None)
        coordinate = {"units": "arcsec"}
        ra = {"value": round(trigger.ra, 7), **coordinate}
        dec = {"value": round(trigger.dec, 7), **coordinate}
        if err_arcsec is not None:
            ra["error"] = dec["error"] = round(err_arcsec * 3600.0, 3)
        discovery, scale = _discovery(view, detections[0])
        entry = {
            "ra": ra, "dec": dec, "reporting_group_id": self.group, "discovery_data_source_id": self.source,
            "reporter": self.reporter, "discovery_datetime": tns_time(discovery, scale),
            "at_type": self.at_type, "internal_name": internal_name(view),
            "remarks": self.remarks or f"reported by vogateway from {survey} alert {view.alert_id}",
            "non_detection": self._non_detection(view, to_tai(discovery, scale), instrument),
            "photometry": {"photometry_group": points},
        }
        return {"at_report": {"0": entry}}

    def _non_detection(self, view: View, discovery_tai: float, instrument: str) -> dict[str, Any]:
        """The last upper limit before discovery, or the archival remark TNS takes when there is none."""
        limits = [u for u in view.upper_limits if u.limiting_mag is not None and to_tai(u.mjd, u.scale) < discovery_tai]
        if not limits:
            return {"archiveid": "0", "archival_remarks": "no earlier non-detection in the alert"}
        last = max(limits, key=lambda u: to_tai(u.mjd, u.scale))
        return {"obsdate": tns_time(last.mjd, last.scale), "limiting_flux": round(last.limiting_mag, 3),
                "flux_units": AB_MAG, "filter_value": self._filter_id(view.survey, last.band),
                "instrument_value": instrument}

    def prepare(self, event: Event, facts, route: str) -> Optional[outbox.Prepared]:
        if event.alert is None or facts.view.detection is None:
            return None  # a VOEvent from elsewhere: not ours to report
        objectid = facts.view.object_key
        key = f"tns:{objectid}"
        try:
            data = self.report(facts.view)
        except ReportError as error:
            return outbox.Prepared(key, b"", objectid=objectid, once_per_object=True, failed=str(error))
        return outbox.Prepared(key, dumps(data), {"internal_name": data["at_report"]["0"]["internal_name"]},
                               objectid=objectid, once_per_object=True)

    # -- delivery ---------------------------------------------------------------------------------------------

    def _post(self, path: str, fields: dict[str, str]) -> defer.Deferred:
        """POST form fields (how the TNS API takes them) to ``<url>/<path>``; fires with (code, headers, body)."""
        body, headers = form(fields)
        return self.http.post(f"{self.url}/{path}", body, {**headers, "User-Agent": [self.user_agent]})

    def deliver(self, item: outbox.Item) -> defer.Deferred:
        if item.stage == "poll":
            return self._poll(item)
        return self._send(item)

    @defer.inlineCallbacks
    def _send(self, item: outbox.Item):
        try:
            data = json.loads(item.payload)
        except ValueError as error:
            return outbox.failed(f"stored report is not JSON: {error}")
        problems = validation_errors(data, *REPORT_SCHEMA)
        if problems:
            return outbox.failed("report does not follow schemas/tns/at-report.schema.json: " + "; ".join(problems[:5]))
        if item.uncertain:
            found = yield self._search(item)
            if isinstance(found, outbox.Outcome):
                return found
        try:
            code, headers, body = yield self._post(
                "set/bulk-report", {"api_key": self._api_key, "data": item.payload.decode()})
        except Exception:
            return classify(Failure(), "TNS bulk-report")
        pause = _quota_pause(headers)
        if code == 429:
            return outbox.throttled(wait_seconds(headers), "TNS: 429 too many requests")
        if code in (401, 403):
            return outbox.failed(f"TNS refused the bot (HTTP {code}): check api_key, bot_id, bot_name")
        if code >= 500:
            return outbox.retry(f"TNS: HTTP {code}: {short(body)}", uncertain=True)
        if code != 200:
            return outbox.failed(f"TNS rejected the report (HTTP {code}): {short(body)}")
        report_id = _dig(_json(body), "data", "report_id")
        if report_id in (None, ""):
            return outbox.retry(f"TNS: unusable reply (no report_id): {short(body)}", uncertain=True)
        log.info("TNS accepted the report of {objectid}: report id {report_id}", objectid=item.objectid,
                 report_id=report_id)
        return outbox.Outcome("submitted", result=str(report_id), after=self.poll_interval, pause=pause)

    @defer.inlineCallbacks
    def _search(self, item: outbox.Item):
        """After an uncertain attempt: is our object on TNS already? An Outcome if so (or if we cannot tell)."""
        name = item.meta.get("internal_name")
        if not name:
            return None
        query = dumps({"internal_name": name}).decode()
        try:
            code, headers, body = yield self._post("get/search", {"api_key": self._api_key, "data": query})
        except Exception as error:
            return outbox.retry(f"TNS search before resending: {in_words(error)}", uncertain=True)
        if code == 429:
            return outbox.throttled(wait_seconds(headers), "TNS: 429 too many requests (search)")
        if code != 200:
            return outbox.retry(f"TNS search before resending: HTTP {code}", uncertain=True)
        reply = _dig(_json(body), "data", "reply")
        if not isinstance(reply, list):
            return outbox.retry(f"TNS search before resending: unusable reply {short(body)}", uncertain=True)
        for entry in reply:
            if isinstance(entry, dict) and entry.get("objname"):
                prefix = entry.get("prefix") or ""
                log.info("{objectid} is on TNS already as {name}: not reported again", objectid=item.objectid,
                         name=f"{prefix} {entry['objname']}".strip())
                return outbox.delivered(str(entry["objname"]))
        return None

    @defer.inlineCallbacks
    def _poll(self, item: outbox.Item):
        try:
            code, headers, body = yield self._post(
                "get/bulk-report-reply", {"api_key": self._api_key, "report_id": item.result})
        except Exception:
            outcome = classify(Failure(), "TNS bulk-report-reply")
            return outbox.poll_again(self.poll_interval, outcome.detail)  # polling again is always safe
        pause = _quota_pause(headers)
        if code == 429:
            return outbox.throttled(wait_seconds(headers), "TNS: 429 too many requests (reply)")
        if code == 404:
            return outbox.Outcome("poll", "report not processed yet", after=self.poll_interval, pause=pause)
        if code == 400:
            return outbox.failed(f"TNS rejected report {item.result}: {short(body, 500)}")
        if code != 200:
            return outbox.poll_again(self.poll_interval, f"TNS reply poll: HTTP {code}")
        feedback = _json(body)
        name = _find_objname(feedback)
        if name:
            return outbox.Outcome("delivered", result=name, pause=pause)
        if feedback is None:
            return outbox.poll_again(self.poll_interval, f"TNS reply poll: unusable reply {short(body)}")
        return outbox.failed(f"TNS processed report {item.result} without naming the object: {short(body, 500)}")

    # -- bookkeeping in the DB (runs in the writer transaction that records the outcome) ----------------------

    @staticmethod
    def on_result(conn, database, item: outbox.Item, outcome: outbox.Outcome) -> None:
        if not item.objectid:
            return
        p = database.placeholder
        table = database.table(outbox.TNS_TABLE)
        now = time.time()
        if outcome.kind == "delivered":
            conn.execute(f"UPDATE {table} SET status = 'named', tns_name = {p}, report_id = COALESCE({p}, report_id), "
                         f"updated = {p} WHERE objectid = {p}",
                         (outcome.result, item.result or None, now, item.objectid))
            # the object row is the store's; it may not exist yet (then the store's upsert will not know the name,
            # but tns_report does)
            conn.execute(f"UPDATE {database.table('diaobject')} SET tns_name = {p} WHERE objectid = {p}",
                         (outcome.result, item.objectid))
        elif outcome.kind == "submitted":
            conn.execute(f"UPDATE {table} SET status = 'submitted', report_id = {p}, updated = {p} "
                         f"WHERE objectid = {p}", (outcome.result, now, item.objectid))
        elif outcome.kind == "failed":
            conn.execute(f"UPDATE {table} SET status = 'failed', updated = {p} WHERE objectid = {p}",
                         (now, item.objectid))

    def stop(self):
        return self.http.stop()


def _quota_pause(headers) -> Optional[float]:
    """TNS says how many requests are left in its window; at zero, wait for the reset before the next one."""
    remaining = header(headers, "x-rate-limit-remaining")
    if remaining is not None and remaining.strip() == "0":
        return wait_seconds(headers)
    return None


def _json(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _dig(value, *keys):
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _find_objname(value, depth: int = 0) -> Optional[str]:
    """The ``objname`` in a bulk-report reply's feedback, wherever the feedback code nests it."""
    if depth > 8:
        return None
    if isinstance(value, dict):
        name = value.get("objname")
        if isinstance(name, str) and name:
            return name
        value = list(value.values())
    if isinstance(value, list):
        for entry in value:
            found = _find_objname(entry, depth + 1)
            if found:
                return found
    return None
