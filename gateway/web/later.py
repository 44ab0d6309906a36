"""Answering a request from a Deferred (a store query in a reader thread) without writing to a client that left."""

from __future__ import annotations

from twisted.internet import defer
from twisted.web import server


def respond_later(request, body: defer.Deferred):
    """Write the bytes ``body`` fires with and finish ``request``, unless the client has gone meanwhile (its
    query still ends in its thread; only the answer is dropped). Returns NOT_DONE_YET, for ``render_*``."""
    gone = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def write(data: bytes):
        if not gone:
            request.write(data)
            request.finish()

    body.addCallback(write)
    return server.NOT_DONE_YET
