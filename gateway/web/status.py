"""The status page at ``/``: one HTML page, readable without JavaScript, that a small script
(``static/status.js``) keeps current from ``/status.json``.

Both are made from one snapshot (:meth:`StatusData.snapshot`): tables as rows of cells, where a cell is text,
``{"text", "href"}`` (a link) or ``{"img", "alt", "href"}`` (an image), and the sky map as projected points. The
page writes every cell through ``html.escape``; the script only through ``textContent`` and attributes, never
as markup: alert fields and peer names are untrusted text.
"""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path
from urllib.parse import quote

from twisted.web import resource, server

from gateway import __version__
from gateway.web.common import Reply, text_response
from gateway.web.health import source_problems
from gateway.web.metrics import kafka_lags
from gateway.web.skymap import BAND_COLOURS, GALACTIC_PLANE, GRATICULE, HEIGHT, WIDTH, band_colour, project

STATIC = Path(__file__).resolve().parent / "static"
#: how often the page's script asks for /status.json (ms)
REFRESH_MS = 2000

TABLES = {
    "sources": ("Sources", ("source", "kind", "position", "detail")),
    "subscribers": ("VTP subscribers", ("peer", "filters", "sent", "acked", "nak'd", "missed", "unacked",
                                        "buffered")),
    "routes": ("Forward routes and outbox", ("route", "kind", "waiting", "oldest (s)", "failed", "delivered",
                                              "in flight", "state")),
    "alerts": ("Latest alerts", ("received (UTC)", "alert", "object", "band", "mag", "ra, dec (deg)", "VOEvent",
                                 "TAP", "cutouts")),
}


def wants_html(request) -> bool:
    """A browser asks for text/html; curl sends ``*/*`` or ``text/plain`` and gets the text index."""
    accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
    return "text/html" in accept


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _number(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


class StatusData:
    """Reads the gateway's parts (as the metrics do) into one snapshot for the page and its script."""

    def __init__(self, gateway, clock):
        self.gateway, self.clock = gateway, clock

    def snapshot(self) -> dict:
        gateway = self.gateway
        problems = source_problems(gateway.sources)
        return {
            "version": __version__,
            "health": "ok" if not problems else "degraded: " + "; ".join(problems),
            "uptime": round(self.clock.seconds() - gateway.started),
            "pipeline": gateway.pipeline.stats.summary(),
            "stored": gateway.store.stored,
            "tables": {"sources": self._sources(), "subscribers": self._subscribers(), "routes": self._routes(),
                       "alerts": self._alerts()},
            "sky": [[*project(ra, dec), band] for _, ra, dec, band in gateway.recent.sky()],
        }

    def _sources(self) -> list:
        rows = []
        for source in self.gateway.sources:
            if hasattr(source, "positions"):  # Kafka
                lags = kafka_lags(source)
                offsets = ", ".join(f"{t}[{p}] @ {o}" + (f", lag {lags[t, p]}" if (t, p) in lags else "")
                                    for (t, p), o in sorted(source.positions.items())) or "none yet"
                owned = ", ".join(f"{t}[{p}]" for t, p in source.assignment) or "no partitions assigned"
                rows.append([", ".join(source.topics), "kafka", offsets,
                             f"{source.received} messages; {owned}"])
            else:
                done = len(source.checkpoints.finished()) if hasattr(source, "checkpoints") else 0
                watching = "watching" if getattr(source, "watch", False) else "once"
                rows.append([", ".join(str(p) for p in getattr(source, "paths", ())), "files",
                             f"{getattr(source, 'files_read', 0)} files read", f"{done} done in all; {watching}"])
        for name, count in sorted(self.gateway.recent.by_source.items()):
            if not name.startswith(("files", "kafka://")):  # VTP peers and authors
                rows.append([name, "vtp", f"{count} events", ""])
        return rows

    def _subscribers(self) -> list:
        broker = self.gateway.broker
        if broker is None:
            return []
        rows = []
        for s in sorted(broker.subscribers, key=lambda s: s.peer()):
            xpaths, (rule_xpath, rule_expression) = s.filter_key
            filters = "; ".join([*xpaths, *(f"rule: {text}" for text in (rule_xpath, rule_expression) if text)])
            rows.append([s.peer() + (f" ({s.remote_ivo})" if s.remote_ivo else ""), filters or "everything",
                         str(s.sent), str(s.acked), str(s.naked), str(s.missed), str(len(s.outstanding)),
                         f"{s.queued_frames} frames, {s.queued_bytes} bytes"])
        return rows

    def _routes(self) -> list:
        forwarding = self.gateway.forwarding
        if forwarding is None:
            return []
        now, backlog = self.clock.seconds(), self.gateway.metrics.outbox
        rows = []
        for name, worker in sorted(forwarding.workers.items()):
            waiting, oldest, failed = backlog.get(name, (0, None, 0))
            state = "down since " + _when(worker.down_since) if worker.down_since else "up"
            rows.append([name, worker.route.kind, str(waiting), _number(now - oldest, 0) if oldest else "",
                         str(failed), str(worker.stats.get("delivered", 0)), str(worker.in_flight), state])
        return rows

    def _alerts(self) -> list:
        rows = []
        for seen in self.gateway.recent.latest:
            ivorn = quote(seen.ivorn, safe="")
            tap = ("/tap/sync?REQUEST=doQuery&LANG=ADQL&FORMAT=votable&QUERY="
                   + quote(f"SELECT * FROM gateway.alert WHERE ivorn = '{seen.ivorn.replace(chr(39), chr(39) * 2)}'"))
            images = [{"img": f"/cutouts/{alert}/{kind}.png", "alt": kind, "href": f"/cutouts/{alert}/{kind}.fits"}
                      for alert, kind in seen.cutouts]
            position = "" if seen.ra is None else f"{seen.ra:.5f}, {seen.dec:+.5f}"
            rows.append([_when(seen.received), str(seen.alert_id or ""), seen.object_key or "", seen.band or "",
                         _number(seen.mag), position, {"text": seen.ivorn, "href": f"/voevent?ivorn={ivorn}"},
                         {"text": "row", "href": tap}, images])
        return rows

    def resource(self) -> resource.Resource:
        return _StatusJSON(self)


class _StatusJSON(resource.Resource):
    """GET /status.json: the snapshot, after reading the outbox backlog from the alert DB."""

    isLeaf = True

    def __init__(self, data: StatusData):
        super().__init__()
        self.data = data

    def render_GET(self, request):
        reply = Reply(request)

        def answer(_):
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            reply.send(json.dumps(self.data.snapshot(), separators=(",", ":")).encode())

        self.data.gateway.metrics.refresh().addCallback(answer)
        return server.NOT_DONE_YET


class RecentVOEvent(resource.Resource):
    """GET /voevent?ivorn=...: the XML of one of the latest events (older ones: query TAP's gateway.voevent)."""

    isLeaf = True

    def __init__(self, recent):
        super().__init__()
        self.recent = recent

    def render_GET(self, request):
        ivorn = (request.args.get(b"ivorn") or [b""])[0].decode("utf-8", "replace")
        xml = self.recent.voevent(ivorn) if ivorn else None
        if xml is None:
            return text_response(request, 404, f"{ivorn or 'no ivorn given'}: not among the latest "
                                               f"{self.recent.latest.maxlen} events; query gateway.voevent over TAP")
        request.setHeader(b"content-type", b"application/xml")
        return xml


# -- the page ----------------------------------------------------------------------------------------------------

def _cell(cell) -> str:
    if isinstance(cell, list):
        return "".join(_cell(item) for item in cell)
    if isinstance(cell, dict) and "img" in cell:
        return (f'<a href="{escape(cell["href"])}"><img class="stamp" src="{escape(cell["img"])}" '
                f'alt="{escape(cell["alt"])}" title="{escape(cell["alt"])}" width="63" height="63"></a>')
    if isinstance(cell, dict):
        return f'<a href="{escape(cell["href"])}">{escape(cell["text"])}</a>'
    return escape(str(cell))


def _table(name: str, rows: list) -> str:
    title, head = TABLES[name]
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<section><h2>{escape(title)} <span class="count" id="{name}-count">{len(rows)}</span></h2>'
            f'<table id="{name}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></section>')


def _sky(points: list) -> str:
    grid = "".join(f'<path class="grid" d="{d}"/>' for d in GRATICULE)
    dots = "".join(f'<circle cx="{x}" cy="{y}" r="3" fill="{band_colour(band)}" data-band="{escape(band)}"/>'
                   for x, y, band in points)
    legend = " ".join(f'<span style="color:{colour}">&#9679; {band}</span>' for band, colour in BAND_COLOURS.items())
    return (f'<section><h2>Sky, last hour (ICRS, Aitoff; galactic plane dashed) '
            f'<span class="count" id="sky-count">{len(points)}</span></h2>'
            f'<svg id="skymap" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="positions of the last hour\'s alerts">{grid}<path class="plane" d="{GALACTIC_PLANE}"/>'
            f'<g id="sky-points">{dots}</g></svg><p class="legend">{legend}</p></section>')


def render_page(snapshot: dict) -> str:
    tables = "".join(_table(name, snapshot["tables"][name]) for name in TABLES)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vogateway status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/status.css"></head>
<body data-refresh="{REFRESH_MS}">
<header><h1>vogateway</h1>
<p>health <b id="health">{escape(snapshot["health"])}</b> &middot; version <span id="version">{escape(snapshot["version"])}</span>
&middot; up <span id="uptime">{snapshot["uptime"]}</span> s &middot; <span id="pipeline">{escape(snapshot["pipeline"])}</span>
&middot; <span id="stored">{snapshot["stored"]}</span> stored</p>
<nav><a href="/tap">TAP</a> <a href="/metrics">metrics</a> <a href="/health">health</a> <a href="/ready">ready</a>
<a href="/status.json">status.json</a></nav></header>
<main>{_sky(snapshot["sky"])}{tables}</main>
<script src="/static/status.js"></script>
</body></html>
"""
