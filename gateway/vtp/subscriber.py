"""The VTP subscriber client: connect to a remote broker, take its events into the pipeline, ack each.

Answers ``authenticate`` with our IVO and the XPath filters we want applied upstream (Comet's ``--filter``),
echoes ``iamalive``, and acks each event by IVORN once ``pipeline.ingest_voevent`` fired, i.e. once every sink
took it (the pipeline deduplicates by IVORN, so the gateway can subscribe to several brokers carrying the same
events; an event we cannot use is logged and counted by the pipeline, and acked: it is handled). When a sink
failed (the alert DB is down) the event is *not* safe here, and we nak it with the reason instead of claiming it.
A broker silent for ``alive_timeout`` seconds (Comet: 120) is dropped; :func:`subscriber_service` reconnects with
exponential backoff and jitter.
"""

from __future__ import annotations

import random

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from gateway.vtp import messages
from gateway.vtp.framing import DEFAULT_MAX_FRAME_BYTES, FrameProtocol, frame
from gateway.vtp.tls import TLSFiles, vtp_client_endpoint

log = Logger()


class SubscriberProtocol(FrameProtocol, TimeoutMixin):
    """One connection to a remote broker."""

    def __init__(self, factory: "SubscriberFactory"):
        super().__init__()
        self.factory = factory
        self.max_frame_bytes = factory.max_frame_bytes
        self.callLater = factory.clock.callLater
        self.pending = 0
        self.lost = False
        self.received = self.naked = 0

    def connectionMade(self):
        log.info("subscribed to {remote} ({peer})", remote=self.factory.remote, peer=self.peer())
        self.setTimeout(self.factory.alive_timeout)

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost = True
        self.setTimeout(None)
        super().connectionLost(reason)
        log.info("connection to {remote} lost after {n} events", remote=self.factory.remote, n=self.received)

    def timeoutConnection(self):
        log.warn("nothing from {remote} for {timeout} s; reconnecting", remote=self.factory.remote,
                 timeout=self.factory.alive_timeout)
        self.transport.abortConnection()

    def _send(self, data: bytes) -> None:
        if not self.lost:
            self.transport.write(frame(data))

    def frameReceived(self, payload: bytes) -> None:
        self.resetTimeout()
        factory = self.factory
        message = messages.parse_or_warn(payload, self.max_frame_bytes, "message", factory.remote)
        if message is None:
            return
        now = factory.clock.seconds()
        if isinstance(message, messages.VOEventMessage):
            self.received += 1
            self._ingest(message)
        elif message.role == "iamalive":
            self._send(messages.iamalive_response(factory.local_ivo, message.origin, now))
        elif message.role == "authenticate":
            self._send(messages.authenticate_response(factory.local_ivo, message.origin, factory.filters, now))
        else:
            log.debug("{role} from {remote} ignored", role=message.role, remote=factory.remote)

    def _ingest(self, message: messages.VOEventMessage) -> None:
        self.pending += 1
        if self.pending == self.factory.max_pending:
            self.transport.pauseProducing()  # the pipeline is slow: let the broker's buffer take the strain

        def answer(result):
            self.pending -= 1
            if self.pending == self.factory.max_pending - 1 and not self.lost:
                self.transport.resumeProducing()
            now = self.factory.clock.seconds()
            if isinstance(result, Failure):
                # not safe here (a sink failed): say so, rather than let the broker believe we have it
                self.naked += 1
                log.warn("event {ivorn} from {remote} not accepted ({why}): nak'd", ivorn=message.ivorn,
                         remote=self.factory.remote, why=result.getErrorMessage())
                self._send(messages.nak(self.factory.local_ivo, message.ivorn,
                                        f"not accepted: {result.getErrorMessage()}", now))
            else:
                self._send(messages.ack(self.factory.local_ivo, message.ivorn, now))

        self.factory.pipeline.ingest_voevent(message.payload, self.factory.origin).addBoth(answer)


class SubscriberFactory(protocol.Factory):
    """Builds :class:`SubscriberProtocol` for one remote; times in seconds."""

    def __init__(self, remote: str, pipeline, local_ivo: str, filters=(), *, clock=None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, alive_timeout: float = 120.0, max_pending: int = 100):
        from twisted.internet import reactor

        self.remote, self.pipeline, self.local_ivo = remote, pipeline, local_ivo
        self.filters = [f for f in filters if f]
        self.clock = clock or reactor
        self.max_frame_bytes, self.alive_timeout, self.max_pending = max_frame_bytes, alive_timeout, max_pending
        self.origin = f"vtp:{remote}"

    def buildProtocol(self, addr):
        return SubscriberProtocol(self)


def subscriber_service(reactor, remote: str, pipeline, local_ivo: str, filters=(), *, tls: TLSFiles = TLSFiles(),
                       max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, alive_timeout: float = 120.0,
                       max_delay: float = 60.0) -> ClientService:
    """A service that stays subscribed to ``remote`` (``HOST:PORT``, ``tls:HOST:PORT`` or an endpoint string),
    reconnecting after 1 s, then ×2 each failure up to ``max_delay`` s, with random jitter of up to 1 s."""
    factory = SubscriberFactory(remote, pipeline, local_ivo, filters, clock=reactor, max_frame_bytes=max_frame_bytes,
                                alive_timeout=alive_timeout)
    service = ClientService(vtp_client_endpoint(reactor, remote, tls), factory,
                            retryPolicy=backoffPolicy(initialDelay=1.0, maxDelay=max_delay, factor=2.0,
                                                      jitter=random.random),
                            clock=reactor)
    service.setName(f"vtp-remote {remote}")
    service.factory = factory
    return service
