"""The forward HTTP client logs what happened, not Twisted's per-connection "Starting factory" chatter."""

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web import resource, server

from gateway.forward.common import HTTP


class Echo(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        return b"ok:" + request.content.read()


@pytest_twisted.inlineCallbacks
def test_posting_logs_no_factory_chatter():
    site = server.Site(Echo())
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    http = HTTP(reactor, timeout=10)
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        status, _, body = yield http.post(f"http://127.0.0.1:{port.getHost().port}/hook", b"alert", {})
    finally:
        globalLogPublisher.removeObserver(logged.append)
        yield http.stop()
        yield port.stopListening()
    assert (status, body) == (200, b"ok:alert")
    chatter = [formatEvent(e) for e in logged if "factory" in formatEvent(e).lower()]
    assert chatter == []
