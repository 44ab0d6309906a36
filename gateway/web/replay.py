"""``POST /replay``: replay stored events to the connected VTP subscriber(s) with a given IVO, for
``vogateway replay --subscriber IVO``. Loopback clients only: the HTTP side may listen publicly, the operator's
command runs on the gateway's host.

Form or query fields: ``subscriber`` (the IVO the subscriber answered authenticate with), ``since`` and ``until``
(ISO-8601, UTC when no zone; either may be left out), ``limit`` (at most this many events; 0 or absent: all).

The answer streams one JSON object per line, so the command can show progress: first ``{"subscribers": N,
"total": T}`` (T: stored events in the range), then ``{"read": ..., "sent": ..., "filtered": ...}`` as chunks go
out, last ``{"done": true, "outcomes": [...]}`` (one summary per subscriber connection). A refusal is an HTTP
error with one sentence: 403 from elsewhere than loopback, 400 for a bad field, 404 when no subscriber has that
IVO (the sentence names those connected).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from gateway.times import TimeError, format_iso, parse_iso
from gateway.vtp.replay import SubscriberReplay
from gateway.web.common import text_response

log = Logger()

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def _fields(request) -> dict[str, str]:
    """Query and form fields (the site leaves POST bodies to each resource: TAP parses its own)."""
    fields = {key.decode("utf-8", "replace"): values[-1].decode("utf-8", "replace")
              for key, values in request.args.items() if values}
    if b"urlencoded" in (request.getHeader("content-type") or "").encode():
        body = request.content.read(65536).decode("utf-8", "replace")
        fields.update({key: values[-1] for key, values in parse_qs(body).items()})
    return {key: value.strip() for key, value in fields.items()}


def _time(fields: dict, name: str):
    text = fields.get(name, "")
    return format_iso(parse_iso(text), zone="") if text else None


class ReplayControl(resource.Resource):
    """``POST /replay`` (see the module docstring) over ``broker`` (:class:`gateway.vtp.broker.Broker`) and
    ``store`` (:class:`gateway.store.Store`)."""

    isLeaf = True

    def __init__(self, broker, store, clock):
        super().__init__()
        self.broker, self.store, self.clock = broker, store, clock

    def render_GET(self, request):
        request.setHeader(b"allow", b"POST")
        return text_response(request, 405, "POST /replay with subscriber=IVO and since/until (vogateway replay "
                                           "--subscriber IVO does this)")

    def render_POST(self, request):
        host = getattr(request.getClientAddress(), "host", "")
        if host not in LOOPBACK:
            return text_response(request, 403, "replay is only taken from the gateway's own host (loopback)")
        fields = _fields(request)
        ivo = fields.get("subscriber", "")
        if not ivo:
            return text_response(request, 400, "give subscriber=IVO: the IVO of a connected VTP subscriber")
        try:
            since, until = _time(fields, "since"), _time(fields, "until")
        except TimeError as error:
            return text_response(request, 400, str(error))
        limit_text = fields.get("limit") or "0"
        if not limit_text.isdigit():
            return text_response(request, 400, f"limit {limit_text[:20]!r} is not a whole number")
        subscribers = [s for s in list(self.broker.subscribers) if s.remote_ivo == ivo]
        if not subscribers:
            connected = sorted({s.remote_ivo or "(no IVO)" for s in self.broker.subscribers})
            return text_response(request, 404, f"no subscriber with IVO {ivo!r} is connected"
                                 + (f" (connected: {', '.join(connected)})" if connected else " (none is)"))
        request.setHeader(b"content-type", b"application/x-ndjson")
        self._run(request, subscribers, since, until, int(limit_text))
        return server.NOT_DONE_YET

    @defer.inlineCallbacks
    def _run(self, request, subscribers, since, until, limit):
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def line(value: dict) -> None:
            if not gone:
                request.write((json.dumps(value) + "\n").encode())

        try:
            total = yield self.store.count_received(since, until)
            line({"subscribers": len(subscribers), "total": min(total, limit) if limit else total})
            replays: list[SubscriberReplay] = []

            def progress(_):
                line({key: sum(getattr(r.outcome, key) for r in replays) for key in ("read", "sent", "filtered")})

            replays += [SubscriberReplay(s, self.store.events_received, since, until, self.clock, limit=limit,
                                         progress=progress) for s in subscribers]
            outcomes = yield defer.gatherResults([r.run() for r in replays], consumeErrors=True)
            for subscriber, outcome in zip(subscribers, outcomes):
                log.info("replay to subscriber {peer} ({ivo}) on request: {summary}", peer=subscriber.peer(),
                         ivo=subscriber.remote_ivo, summary=outcome.summary())
            line({"done": True, "outcomes": [asdict(o) for o in outcomes]})
        except Exception:  # a failed read: say so in the stream the command is reading
            log.failure("replay on request")
            line({"done": True, "error": "the alert DB could not be read; try again"})
        if not gone:
            request.finish()
