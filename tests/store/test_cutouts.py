"""GET /cutouts/<alertId>/<kind>.fits over real HTTP on loopback: FITS bytes with the right content type, clear
404s for unknown alerts, kinds and paths."""

import gzip

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web import server
from twisted.web.client import Agent, readBody

from gateway.alerts import fields
from gateway.alerts.files import iter_inputs
from gateway.config import load
from gateway.convert import make_converter
from gateway.resources import SAMPLES
from gateway.store import Database, Store
from gateway.store.rows import MAX_CUTOUT_BYTES, fits_bytes
from gateway.web import Cutouts


@pytest_twisted.inlineCallbacks
def test_cutouts_are_served_as_fits(tmp_path):
    convert = make_converter(load())
    events = [convert(a) for a in iter_inputs([str(SAMPLES)]) if not isinstance(a, Exception)]
    database = Database(f"sqlite:///{tmp_path / 'alerts.db'}", reactor)
    store = Store(database)
    yield defer.gatherResults([store.accept(e) for e in events])
    port = reactor.listenTCP(0, server.Site(Cutouts(store)), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    agent = Agent(reactor)

    @defer.inlineCallbacks
    def get(path):
        response = yield agent.request(b"GET", (base + path).encode())
        body = yield readBody(response)
        return response.code, response.headers.getRawHeaders(b"content-type", [b""])[0], body

    try:
        for survey in ("ztf", "rubin"):
            alert = next((e.alert for e in events if e.alert.survey == survey and fields.cutouts(e.alert)), None)
            if alert is None:
                continue
            kind, content = next(iter(fields.cutouts(alert).items()))
            code, ctype, body = yield get(f"/{fields.alert_id(alert)}/{kind}.fits")
            assert (code, ctype) == (200, b"application/fits")
            assert body == fits_bytes(content) and body.startswith(b"SIMPLE")
        code, _, body = yield get("/1/science.fits")
        assert code == 404 and b"alert 1 has no science cutout" in body
        code, _, body = yield get("/1/thumbnail.fits")
        assert code == 404 and b"kind one of difference, science, template" in body
        code, _, body = yield get("/../../etc/passwd")
        assert code == 404
        # a stored cutout that unpacks to gigabytes is refused, and the server goes on answering
        bomb = gzip.compress(b"\0" * (MAX_CUTOUT_BYTES + 1))
        yield database.write(lambda conn: conn.execute("INSERT INTO cutout VALUES (?, ?, ?)", (7, "science", bomb)))
        code, _, body = yield get("/7/science.fits")
        assert code == 500 and b"cannot be served: cutout unpacks to more than" in body
        code, _, _ = yield get(f"/{fields.alert_id(alert)}/{kind}.fits")
        assert code == 200
    finally:
        yield port.stopListening()
        yield store.close()
