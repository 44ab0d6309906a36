"""The VTP receiver: authors submit VOEvents; each is checked, acked or nak'd with a reason, and routed.

An author connection is admitted if its address (or, on ``tls:`` ports, its client-certificate identity) is in the
author whitelist (default 127.0.0.1/32). Each submission, in order:

1. safely parsed (no DTD, no entities, no network; at most ``max_frame_bytes``): otherwise nak;
2. validated against the VOEvent 2.0 XSD in a worker thread: otherwise nak, with the first problem;
3. a duplicate IVORN (seen by the pipeline, or known to the store via ``has_ivorn``) is acked and not routed again;
4. handed to ``pipeline.ingest_voevent``; the ack is sent only after that Deferred fired, i.e. after every sink
   took the event. A sink failure is a nak ("not accepted"), so the author knows to retry.

Comet closes the connection after one submission; we keep it open for more (authors that close, like
``comet-sendvo``, are fine), and close it after ``idle_timeout`` seconds of silence.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet import defer, interfaces, protocol, threads
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from gateway.vtp import messages
from gateway.vtp.access import Whitelist
from gateway.vtp.framing import DEFAULT_MAX_FRAME_BYTES, FrameProtocol, frame
from gateway.vtp.tls import is_tls, peer_identity

log = Logger()


class Rejected(Exception):
    """A submission we nak; the message is the reason sent to the author."""


@implementer(interfaces.IHandshakeListener)
class ReceiverProtocol(FrameProtocol, TimeoutMixin):
    """One author connection."""

    def __init__(self, receiver: "Receiver"):
        super().__init__()
        self.receiver = receiver
        self.max_frame_bytes = receiver.max_frame_bytes
        self.callLater = receiver.clock.callLater  # TimeoutMixin's timer, on the injected clock
        self.host = ""
        self.admitted = False
        self.pending = 0
        self.lost = False
        self._chain = defer.succeed(None)

    def connectionMade(self):
        self.host = getattr(self.transport.getPeer(), "host", "")
        self.setTimeout(self.receiver.idle_timeout)
        if not is_tls(self.transport):
            self._admit(None)

    def handshakeCompleted(self):
        self._admit(peer_identity(self.transport))

    def _admit(self, identity: Optional[str]) -> None:
        if not self.receiver.whitelist.allows(self.host, identity):
            log.warn("submission from {peer} refused: not in the author whitelist", peer=self.peer())
            self.receiver.refused += 1
            self.transport.abortConnection()
            return
        self.admitted = True

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost = True
        self.setTimeout(None)
        super().connectionLost(reason)

    def timeoutConnection(self):
        log.info("author {peer} silent for {timeout} s; closing", peer=self.peer(), timeout=self.receiver.idle_timeout)
        self.transport.abortConnection()

    def frameReceived(self, payload: bytes) -> None:
        if not self.admitted:
            return
        self.resetTimeout()
        self.pending += 1
        if self.pending >= self.receiver.max_pending:
            self.transport.pauseProducing()  # stop reading: the author waits for its acks anyway
        # one submission at a time per connection, so acks go out in order
        self._chain.addBoth(lambda _: self._process(payload)).addBoth(self._done)

    def _done(self, _):
        self.pending -= 1
        if self.pending == self.receiver.max_pending - 1 and not self.lost:
            self.transport.resumeProducing()

    def _reply(self, data: bytes) -> None:
        if not self.lost:
            self.resetTimeout()
            self.transport.write(frame(data))

    @defer.inlineCallbacks
    def _process(self, payload: bytes):
        receiver = self.receiver
        ivorn = ""
        try:
            message = messages.parse_message(payload, self.max_frame_bytes)
            if isinstance(message, messages.Transport):
                raise Rejected(f"expected a VOEvent, got a Transport {message.role} message")
            ivorn = message.ivorn
            outcome = yield receiver.submit(message, origin=f"vtp-author:{self.host}")
        except (messages.MessageError, Rejected) as error:
            receiver.rejected += 1
            log.warn("nak to {peer} for {ivorn}: {reason}", peer=self.peer(), ivorn=ivorn or "(no IVORN)",
                     reason=str(error))
            self._reply(messages.nak(receiver.local_ivo, ivorn, str(error), receiver.clock.seconds()))
            return
        except Exception as error:  # a sink failed: the event is not safe, the author should retry
            receiver.rejected += 1
            log.failure("event {ivorn} from {peer} was not accepted by the pipeline", ivorn=ivorn, peer=self.peer())
            self._reply(messages.nak(receiver.local_ivo, ivorn, f"not accepted: {error}", receiver.clock.seconds()))
            return
        log.info("ack to {peer} for {ivorn} ({outcome})", peer=self.peer(), ivorn=ivorn, outcome=outcome)
        self._reply(messages.ack(receiver.local_ivo, ivorn, receiver.clock.seconds()))


class Receiver(protocol.ServerFactory):
    """Author-facing server factory; feeds ``pipeline``.

    ``validate(xml) -> list[str]`` (empty = valid VOEvent 2.0) runs through ``run_blocking`` (default
    ``deferToThread``); ``has_ivorn(ivorn) -> bool | Deferred[bool]`` asks a persistent store about duplicates.
    """

    def __init__(self, pipeline, local_ivo: str, *, clock=None, validate: Optional[Callable] = None,
                 run_blocking: Callable = threads.deferToThread, has_ivorn: Optional[Callable] = None,
                 whitelist: Optional[Whitelist] = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 idle_timeout: float = 20.0, max_pending: int = 16):
        from twisted.internet import reactor

        if validate is None:
            from gateway.voevent.validate import validate
        self.pipeline, self.local_ivo = pipeline, local_ivo
        self.clock = clock or reactor
        self.validate, self.run_blocking, self.has_ivorn = validate, run_blocking, has_ivorn
        self.whitelist = whitelist or Whitelist(["127.0.0.1/32"])
        self.max_frame_bytes, self.idle_timeout, self.max_pending = max_frame_bytes, idle_timeout, max_pending
        self.accepted = self.duplicates = self.rejected = self.refused = 0

    def buildProtocol(self, addr):
        return ReceiverProtocol(self)

    @defer.inlineCallbacks
    def submit(self, message: messages.VOEventMessage, origin: str):
        """Check and route one submitted event. Fires with "accepted" or "duplicate"; fails with Rejected."""
        problems = yield self.run_blocking(self.validate, message.payload)
        if problems:
            raise Rejected(f"invalid VOEvent 2.0: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                                    if len(problems) > 1 else ""))
        if message.ivorn in self.pipeline.seen or (self.has_ivorn is not None
                                                   and (yield defer.maybeDeferred(self.has_ivorn, message.ivorn))):
            self.duplicates += 1
            return "duplicate, not routed again"
        event = yield self.pipeline.ingest_voevent(message.payload, origin)
        if event is None:
            if message.ivorn in self.pipeline.seen:  # routed meanwhile by another connection: a duplicate
                self.duplicates += 1
                return "duplicate, not routed again"
            raise Rejected("rejected by the VOEvent parser (see the gateway log)")
        self.accepted += 1
        return "accepted"
