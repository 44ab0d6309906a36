"""Shared pieces of the forward tests: sample events, and local HTTP endpoints that behave like a webhook
receiver and like TNS (accept, rate-limit, fail with 500, hang, answer garbage), on loopback."""

from __future__ import annotations

import json
from collections import deque
from functools import lru_cache

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web import http, resource, server

from gateway import config as configuration
from gateway.convert import make_converter, read_inputs
from gateway.resources import SAMPLES


@lru_cache(maxsize=1)
def sample_events() -> tuple:
    """Every bundled sample alert converted to an Event (Rubin, every schema version, and ZTF)."""
    config = configuration.defaults()
    convert = make_converter(config)
    return tuple(convert(a) for a in read_inputs(config, [str(SAMPLES)]) if not isinstance(a, Exception))


def events(survey=None, schema=None) -> list:
    return [e for e in sample_events() if (survey is None or e.alert.survey == survey)
            and (schema is None or e.alert.schema == schema)]


def until(condition, timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> defer.Deferred:
    """Fires when ``condition()`` is true, polling on the reactor; fails after ``timeout`` s."""
    from twisted.internet import task

    d = defer.Deferred()
    start = reactor.seconds()

    def check():
        try:
            value = condition()
        except Exception as error:  # noqa: BLE001
            loop.stop()
            d.errback(error)
            return
        if value:
            loop.stop()
            d.callback(value)
        elif reactor.seconds() - start > timeout:
            loop.stop()
            d.errback(AssertionError(f"timed out after {timeout} s waiting for {what}"))

    loop = task.LoopingCall(check)
    loop.start(interval)
    return d


class Scripted(resource.Resource):
    """Answers each request by the next behaviour in ``script`` (then ``default``), recording every request.

    Behaviours: "ok", "429" (x-rate-limit-reset / Retry-After ``reset`` s), "500", "503", "400", "hang" (never
    answers), "garbage" (200 with a body that is not what was asked for), "accept-hang" (takes the request as
    accepted, never answers).
    """

    isLeaf = True

    def __init__(self, default: str = "ok", reset: float = 0.3):
        super().__init__()
        self.script: deque[str] = deque()
        self.default, self.reset = default, reset
        self.requests: list[dict] = []
        self.hanging: list = []

    def behaviour(self) -> str:
        return self.script.popleft() if self.script else self.default

    def record(self, request, behaviour):
        body = request.content.read()
        entry = {"path": request.path.decode(), "headers": {k.decode().lower(): v[0].decode()
                                                            for k, v in request.requestHeaders.getAllRawHeaders()},
                 "body": body, "args": {k.decode(): v[0].decode() for k, v in request.args.items()},
                 "behaviour": behaviour, "time": reactor.seconds()}
        self.requests.append(entry)
        return entry

    def render_POST(self, request):
        behaviour = self.behaviour()
        entry = self.record(request, behaviour)
        if behaviour in ("hang", "accept-hang"):
            self.hanging.append(request)
            if behaviour == "accept-hang":
                self.accepted(entry)
            return server.NOT_DONE_YET
        if behaviour == "429":
            request.setResponseCode(429)
            request.setHeader("x-rate-limit-reset", str(self.reset))
            request.setHeader("Retry-After", str(self.reset))
            return b'{"id_code": 429, "id_message": "Too many requests"}'
        if behaviour in ("500", "503", "400"):
            request.setResponseCode(int(behaviour))
            return b"<html><body>Internal error</body></html>"
        if behaviour == "garbage":
            return b"\x00\xff<html>this is not JSON \x1b[31m"
        return self.answer(request, entry)

    def accepted(self, entry):
        """Hook: the request was accepted (also when the reply never comes)."""

    def answer(self, request, entry) -> bytes:
        self.accepted(entry)
        return b'{"ok": true}'

    @property
    def accepted_requests(self):
        return [r for r in self.requests if r["behaviour"] in ("ok", "accept-hang")]

    def release(self):
        for request in self.hanging:
            if not request.finished and not request._disconnected:
                request.setResponseCode(504)
                request.finish()
        self.hanging.clear()


class FakeTNS(Scripted):
    """Behaves like the TNS bot API: bulk-report, bulk-report-reply (404 until processed), search.

    ``polls_before_processed``: how many reply polls answer 404 first. Objects are named 2026aaa, 2026aab, ...
    by internal name; a second report of the same internal name counts as a duplicate report.
    """

    def __init__(self, api_key: str, polls_before_processed: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.api_key, self.polls_before = api_key, polls_before_processed
        self.reports: list[dict] = []  # every accepted AT report
        self.objects: dict[str, str] = {}  # internal name -> objname
        self.report_objects: dict[str, list[str]] = {}  # report id -> internal names
        self.polls: dict[str, int] = {}

    def _name(self, internal: str) -> str:
        if internal not in self.objects:
            n = len(self.objects)
            self.objects[internal] = "2026" + "".join(chr(97 + (n // 26 ** k) % 26) for k in (2, 1, 0))
        return self.objects[internal]

    def render_POST(self, request):
        path = request.path.decode()
        if request.args.get(b"api_key", [b""])[0].decode() != self.api_key:
            self.record(request, "unauthorized")
            request.setResponseCode(401)
            return b'{"id_code": 401, "id_message": "Unauthorized"}'
        if not request.getHeader("user-agent", ).startswith("tns_marker{"):
            self.record(request, "no marker")
            request.setResponseCode(403)
            return b'{"id_code": 403}'
        if path.endswith("/get/search") or path.endswith("/get/bulk-report-reply"):
            entry = self.record(request, "query")
            return self.answer(request, entry)
        return super().render_POST(request)

    def accepted(self, entry):
        if not entry["path"].endswith("/set/bulk-report"):
            return
        data = json.loads(entry["args"]["data"])
        report_id = str(1000 + len(self.reports))
        names = []
        for report in data["at_report"].values():
            self.reports.append(report)
            names.append(report["internal_name"])
            self._name(report["internal_name"])
        self.report_objects[report_id] = names
        entry["report_id"] = report_id

    def answer(self, request, entry) -> bytes:
        path = entry["path"]
        if path.endswith("/set/bulk-report"):
            self.accepted(entry)
            request.setHeader("x-rate-limit-remaining", "5")
            return json.dumps({"id_code": 200, "id_message": "OK", "data": {"report_id": entry["report_id"]}}).encode()
        if path.endswith("/get/bulk-report-reply"):
            report_id = entry["args"].get("report_id", "")
            if report_id not in self.report_objects:
                request.setResponseCode(400)
                return b'{"id_code": 400, "data": {"feedback": "no such report"}}'
            self.polls[report_id] = self.polls.get(report_id, 0) + 1
            if self.polls[report_id] <= self.polls_before:
                request.setResponseCode(404)
                return b'{"id_code": 404, "id_message": "Not Found"}'
            feedback = [{"100": {"objname": self.objects[n], "message": "Transient object was inserted."}}
                        for n in self.report_objects[report_id]]
            return json.dumps({"id_code": 200, "data": {"feedback": {"at_report": feedback}}}).encode()
        if path.endswith("/get/search"):
            query = json.loads(entry["args"].get("data", "{}"))
            name = self.objects.get(query.get("internal_name", ""))
            reply = [{"objname": name, "prefix": "AT"}] if name else []
            return json.dumps({"id_code": 200, "data": {"reply": reply}}).encode()
        request.setResponseCode(404)
        return b"{}"

    def reports_of(self, internal: str) -> int:
        return sum(1 for r in self.reports if r["internal_name"] == internal)


@defer.inlineCallbacks
def serve(res: resource.Resource):
    """Listen on a free loopback port; fires with (port object, base URL)."""
    site = server.Site(res)
    site.noisy = False
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    return port, f"http://127.0.0.1:{port.getHost().port}"


class _OneReplyChannel(http.HTTPChannel):
    """Serves one request per connection, as an HTTP/1.0 server does, but answers ``HTTP/1.1`` without
    ``Connection: close``, so the client pools the connection. ``close="after-reply"``: hangs up as soon as the
    reply is written; ``"on-next-request"``: when the client sends more on it (what a client sees when the
    server's close crossed its next request, made certain rather than left to timing)."""

    served = False

    def requestDone(self, request):
        super().requestDone(request)
        self.served = True
        if self.factory.close == "after-reply":
            self.transport.loseConnection()

    def dataReceived(self, data):
        if self.served:
            self.factory.hangups += 1
            self.transport.loseConnection()
            return
        super().dataReceived(data)


class OneReplySite(server.Site):
    """A Site whose connections each carry one reply (see :class:`_OneReplyChannel`); ``hangups`` counts the
    requests it hung up on."""

    protocol = _OneReplyChannel

    def __init__(self, res, close: str = "on-next-request"):
        super().__init__(res)
        self.close, self.hangups, self.noisy = close, 0, False


@defer.inlineCallbacks
def serve_one_reply(res: resource.Resource, close: str = "on-next-request"):
    """Like :func:`serve`, each connection closed after one reply; fires with (port, base URL, site)."""
    site = OneReplySite(res, close)
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    return port, f"http://127.0.0.1:{port.getHost().port}", site


def rubin_event(schema: str = "11.1", index: int = 0, **changes):
    """A bundled Rubin alert of ``schema`` with top-level record fields replaced (``diaSource`` and ``diaObject``
    are updated rather than replaced), converted afresh."""
    import copy
    from dataclasses import replace

    alert = events("rubin", schema)[index].alert
    record = copy.deepcopy(alert.record)
    for name, value in changes.items():
        if name in ("diaSource", "diaObject") and isinstance(value, dict):
            record[name] = {**(record.get(name) or {}), **value}
        else:
            record[name] = value
    return make_converter(configuration.defaults())(replace(alert, record=record))
