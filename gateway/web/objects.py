"""``/objects/<objectid>``: one object of the alert DB, as JSON or as a small HTML page.

JSON by default; HTML when the request's Accept header prefers ``text/html`` to ``application/json`` (a browser),
or with ``?format=html`` (``?format=json`` forces JSON). Both carry the object row, its light curve (detections,
oldest first), its alerts with links to their cutouts (``/cutouts/<alertid>/<kind>.fits``) and its VOEvents (each
with a link to its XML through TAP: ``/tap/sync?...SELECT xml...``). The HTML page draws the light curve as inline
SVG made here (:mod:`gateway.web.lightcurve`): no script, nothing fetched from elsewhere; every value is escaped.

``?limit=N`` (default and most :data:`MAX_ROWS`): the newest N detections, alerts and events. The query runs in a
reader thread of the store (``Store.object_record``). An unknown object is a 404 with one sentence.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, unquote, urlencode

from twisted.logger import Logger
from twisted.web import resource

from gateway.times import TimeError, format_iso, parse_iso
from gateway.web.common import text_response
from gateway.web.later import respond_later
from gateway.web.lightcurve import light_curve_svg

log = Logger()

MAX_ROWS = 1000
_TIMES = {"updated", "received", "event_time"}


def wants_html(request) -> bool:
    """``?format=`` if given, else the Accept header: HTML only when text/html is preferred to JSON."""
    chosen = request.args.get(b"format", [b""])[-1].decode("ascii", "replace").lower()
    if chosen in ("html", "json"):
        return chosen == "html"
    accept = (request.getHeader("accept") or "").lower()
    quality = {"html": -1.0, "json": -1.0}
    for part in accept.split(","):
        kind, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if kind in ("text/html", "application/xhtml+xml"):
            quality["html"] = max(quality["html"], q)
        elif kind in ("application/json", "*/*", "application/*"):
            quality["json"] = max(quality["json"], q * (1.0 if kind == "application/json" else 0.99))
    return quality["html"] > 0 and quality["html"] > quality["json"]


def _plain(key: str, value: Any) -> Any:
    """A DB value as JSON has it: times as UTC ISO-8601 with Z, NaN as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if key in _TIMES and value is not None:
        try:
            return format_iso(value if isinstance(value, datetime) else parse_iso(str(value)))
        except TimeError:
            return str(value)
    return value


def document(record) -> dict:
    """The JSON document of a :class:`gateway.store.queries.ObjectRecord`."""
    raw = asdict(record)
    doc = {"object": {k: _plain(k, v) for k, v in raw["object"].items()}}
    for part in ("detections", "alerts", "events"):
        doc[part] = [{k: _plain(k, v) for k, v in row.items()} for row in raw[part]]
    for alert in doc["alerts"]:
        alert["cutouts"] = {kind: f"/cutouts/{alert['alertid']}/{kind}.fits" for kind in alert["cutouts"]}
    for event in doc["events"]:
        event["xml"] = voevent_link(event["ivorn"])
    return doc


def voevent_link(ivorn: str) -> str:
    """The TAP sync URL that returns this event's stored XML (a one-cell VOTable)."""
    query = f"SELECT xml FROM gateway.voevent WHERE ivorn = '{ivorn.replace(chr(39), chr(39) * 2)}'"
    return "/tap/sync?" + urlencode({"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": query})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e5 else f"{value:.6f}"
    return escape(str(value))


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(doc: dict) -> str:
    """The object page: summary, light curve (SVG), detections, alerts with cutout links, VOEvents."""
    obj = doc["object"]
    name = escape(str(obj["objectid"]))
    summary = "".join(f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in obj.items())
    alerts = "".join(
        f"<li>{_cell(a['alertid'])} (MJD {_cell(a['mjd'])}): "
        + (", ".join(f'<a href="{escape(url)}">{escape(kind)}</a>' for kind, url in a["cutouts"].items())
           or "no cutouts")
        + "</li>" for a in doc["alerts"])
    events = "".join(f'<li><a href="{escape(e["xml"])}">{escape(e["ivorn"])}</a> {escape(str(e["role"]))} '
                     f'{escape(str(e["event_time"] or ""))}</li>' for e in doc["events"])
    columns = ("mjd", "band", "mag", "mag_err", "psf_flux", "psf_flux_err", "snr", "reliability", "diasourceid")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{name}</title><style>body{{font-family:sans-serif;margin:1em 2em}}table{{border-collapse:collapse}}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>"
        f"<h1>{name}</h1><table class=\"summary\">{summary}</table>"
        f"<h2>Light curve</h2>{light_curve_svg(doc['detections'], str(obj['objectid']))}"
        f"<h2>Detections ({len(doc['detections'])})</h2>{_table(doc['detections'], columns)}"
        f"<h2>Alerts and cutouts ({len(doc['alerts'])})</h2><ul class=\"alerts\">{alerts}</ul>"
        f"<h2>VOEvents ({len(doc['events'])})</h2><ul class=\"events\">{events}</ul>"
        f"<p><a href=\"?format=json\">JSON</a></p></body></html>\n")


class Objects(resource.Resource):
    """``GET /objects/<objectid>[?format=json|html][&limit=N]`` over ``store`` (see the module docstring)."""

    isLeaf = True

    def __init__(self, store):
        super().__init__()
        self.store = store

    def render_GET(self, request):
        objectid = unquote("/".join(p.decode("utf-8", "replace") for p in request.postpath)).strip("/")
        if not objectid:
            return text_response(request, 404, "give an object: /objects/<objectid>, e.g. /objects/ZTF18aaxjdyr or "
                                               "/objects/diaObject:<id>")
        limit_text = request.args.get(b"limit", [b""])[-1].decode("ascii", "replace")
        if limit_text and not limit_text.isdigit():
            return text_response(request, 400, f"limit {limit_text[:20]!r} is not a whole number")
        limit = min(int(limit_text or MAX_ROWS), MAX_ROWS)
        html = wants_html(request)
        request.setHeader(b"vary", b"Accept")

        def found(record):
            if record is None:
                return text_response(request, 404, f"no object {objectid!r} in the alert DB")
            doc = document(record)
            if html:
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
                return html_page(doc).encode()
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(doc, allow_nan=False).encode()

        def unreadable(failure):
            log.failure("object page {objectid}: the alert DB", failure, objectid=objectid)
            return text_response(request, 503, "the alert DB could not be read; try again")

        def broken(failure):
            log.failure("object page {objectid}", failure, objectid=objectid)
            return text_response(request, 500, f"the page of object {objectid!r} could not be made")

        d = self.store.object_record(objectid, limit).addCallbacks(found, unreadable).addErrback(broken)
        return respond_later(request, d)


def object_path(objectid: str) -> str:
    """The path of an object's page."""
    return "/objects/" + quote(objectid, safe=":")
