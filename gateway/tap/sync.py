"""``/sync``: a query run in a worker thread of the sync pool, its result streamed to the client as it is read.

:class:`RequestSink` is the back-pressure: the worker blocks while the client's connection is paused, and a client
that reads nothing for ``stall_timeout`` seconds is dropped (its query thread and read transaction are freed).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from twisted.internet import threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from gateway.tap.query import Cancel, QueryError, QuerySpec
from gateway.tap.request import TapResource, read_params, resolve_uploads, send_error, single
from gateway.tap.uws import check_lang

if TYPE_CHECKING:
    from gateway.tap.resource import TapService

log = Logger()

#: seconds a blocked worker waits before it looks again whether the client went away
_RECHECK = 1.0


@implementer(IPushProducer)
class RequestSink:
    """Feeds a twisted.web request from a worker thread with back-pressure: the thread blocks in ``write``
    while the transport is paused or ``max_chunks`` chunks are queued for the reactor. The transport staying
    paused for ``stall_timeout`` seconds (timed by ``reactor``) drops the client."""

    def __init__(self, request, reactor, cancel: Cancel, stall_timeout: float, max_chunks: int = 4):
        self.request = request
        self.reactor = reactor
        self.cancel = cancel
        self.stall_timeout = stall_timeout
        self.started = False
        self.gone = False  # the client went away or was dropped: nothing more is written
        self._slots = threading.Semaphore(max_chunks)
        self._running = threading.Event()
        self._running.set()
        self._stall = None  # the DelayedCall that drops a client paused for too long
        request.notifyFinish().addErrback(lambda _: self.stopProducing())

    # IPushProducer (reactor thread)
    def pauseProducing(self):
        self._running.clear()
        if self._stall is None:
            self._stall = self.reactor.callLater(self.stall_timeout, self._stalled)

    def resumeProducing(self):
        self._stop_stall_timer()
        self._running.set()

    def stopProducing(self):
        self._stop_stall_timer()
        self.gone = True
        self.cancel.cancel()
        self._running.set()

    def _stop_stall_timer(self):
        if self._stall is not None:
            if self._stall.active():
                self._stall.cancel()
            self._stall = None

    def _stalled(self):
        self._stall = None
        log.info("TAP client read nothing for {s:.0f} s; dropping it", s=self.stall_timeout)
        self.stopProducing()
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    # called from the worker thread
    def start(self, content_type: str) -> None:
        self.started = True

        def begin():
            if self.gone:
                return
            self.request.setResponseCode(200)
            self.request.setHeader(b"content-type", content_type.encode("latin-1"))
            self.request.registerProducer(self, True)
        self.reactor.callFromThread(begin)

    def write(self, data: bytes) -> None:
        if not data:
            return
        while not self.gone and not (self._running.wait(_RECHECK) and self._slots.acquire(timeout=_RECHECK)):
            pass
        if self.gone:
            return

        def deliver():
            self._slots.release()
            if not self.gone:
                self.request.write(data)
        self.reactor.callFromThread(deliver)

    def finish(self) -> None:
        def end():
            self._stop_stall_timer()
            if self.gone:
                return
            self.request.unregisterProducer()
            self.request.finish()
        self.reactor.callFromThread(end)


class SyncResource(TapResource):
    isLeaf = True

    def __init__(self, service: TapService):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        return self.render_POST(request)

    def render_POST(self, request):
        service = self.service
        params, parts = read_params(request)
        values = single(params)
        check_lang(values)
        spec = QuerySpec(values["query"], values.get("responseformat") or values.get("format"),
                         service.runner.parse_maxrec(values.get("maxrec")),
                         resolve_uploads(values.get("upload"), parts), service.base(request) + "/links")
        ticket = service.sync_admission.enter(client_address(request))  # QueryError 503 when at a limit
        cancel = Cancel()
        sink = RequestSink(request, service.reactor, cancel, service.settings.stall_timeout)
        # the place is free once the response is out or the client has gone (while waiting too), and at the
        # latest when the query's thread is done: a client's next query must not find its previous one counted
        request.notifyFinish().addBoth(lambda _: service.sync_admission.leave(ticket))

        def run(ticket):
            d = threads.deferToThreadPool(service.reactor, service.sync_pool, service.runner.run, spec, sink, cancel,
                                          ticket.remaining, ticket.timeout - ticket.remaining)
            d.addBoth(lambda result: (service.sync_admission.leave(ticket), result)[1])
            return d

        def failed(failure):
            if sink.started or sink.gone:
                if not failure.check(QueryError):
                    log.failure("sync query failed after the response started", failure)
                return
            if failure.check(QueryError):
                error = failure.value
                body = send_error(request, error.message, error.status, error.retry_after)
            else:
                log.failure("sync query failed", failure)
                body = send_error(request, f"internal error: {failure.getErrorMessage()}", 500)
            request.write(body)
            request.finish()
        ticket.ready.addCallback(run).addErrback(failed)
        return NOT_DONE_YET


def client_address(request) -> str:
    """The address a request came from (what the per-client limit counts)."""
    return getattr(request.getClientAddress(), "host", None) or "unknown"
