"""The VTP receiver: authors submit VOEvents; each is checked, acked or nak'd with a reason, and routed.

An author connection is admitted if its address (or, on ``tls:`` ports, its client-certificate identity) is in the
author whitelist (default 127.0.0.1/32). Each submission, in order:

1. safely parsed (no DTD, no entities, no network; at most ``max_frame_bytes``): otherwise nak;
2. validated against the VOEvent 2.0 XSD: otherwise nak, with the first problem. Up to ``inline_bytes`` (16 KiB;
   a typical event is 2-5 kB and validates in well under 0.1 ms) on the reactor thread, since handing it to a
   worker thread and back costs the reactor more than validating it; larger ones in a worker thread;
3. a duplicate IVORN (seen by the pipeline, or known to the store via ``has_ivorn``) is acked and not routed again;
4. handed to ``pipeline.ingest_voevent``; the ack is sent only after that Deferred fired, i.e. after every sink
   took the event. A sink failure is a nak ("not accepted"), so the author knows to retry.

Comet closes the connection after one submission; we keep it open for more (authors that close, like
``comet-sendvo``, are fine), and close it after ``idle_timeout`` seconds of silence. Submissions on one connection
are handled one at a time, so replies go out in order. Each nak is logged; acks are counted and logged per
connection with more than one when it closes (one line per event would cost more than the rest of the work at
1,000 events/s; a connection of a single acked event, VTP's normal use, is a debug line).
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from twisted.internet import defer, interfaces, protocol, threads
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from gateway.voevent.parse import event_from_tree
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
        self.pending = 0  # submissions received, not answered yet (the first one is being processed)
        self.lost = False
        self.acked = self.naked = 0
        self._waiting: deque[bytes] = deque()

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
        if self.acked > 1 or self.naked:
            log.info("author {peer} left: {acked} acked, {naked} nak'd", peer=self.peer(), acked=self.acked,
                     naked=self.naked)
        elif self.acked:  # one event per connection is VTP's normal use: a line each would flood the log
            log.debug("author {peer} left: 1 acked", peer=self.peer())

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
        if self.pending == 1:
            self._process(payload)
        else:
            self._waiting.append(payload)

    def _next(self) -> None:
        """The current submission is answered: take the next one waiting, if any."""
        self.pending -= 1
        if self.pending == self.receiver.max_pending - 1 and not self.lost:
            self.transport.resumeProducing()
        if self._waiting:
            self._process(self._waiting.popleft())

    def _reply(self, data: bytes) -> None:
        if not self.lost:
            self.resetTimeout()
            self.transport.write(frame(data))

    def _process(self, payload: bytes) -> None:
        try:
            message = messages.parse_message(payload, self.max_frame_bytes)
            if isinstance(message, messages.Transport):
                raise Rejected(f"expected a VOEvent, got a Transport {message.role} message")
            outcome = self.receiver.submit(message, origin=f"vtp-author:{self.host}")
        except (messages.MessageError, Rejected) as error:
            self._nak("", error)
            self._next()
            return
        outcome.addCallbacks(self._ack, self._failed, callbackArgs=(message.ivorn,), errbackArgs=(message.ivorn,))
        outcome.addBoth(lambda _: self._next())

    def _ack(self, outcome: str, ivorn: str) -> None:
        self.acked += 1
        self._reply(messages.ack(self.receiver.local_ivo, ivorn, self.receiver.clock.seconds()))

    def _failed(self, failure, ivorn: str) -> None:
        if failure.check(Rejected, messages.MessageError):
            self._nak(ivorn, failure.value)
            return
        # a sink failed: the event is not safe, the author should retry
        log.failure("event {ivorn} from {peer} was not accepted by the pipeline", failure, ivorn=ivorn,
                    peer=self.peer())
        self._nak(ivorn, f"not accepted: {failure.value}", logged=True)

    def _nak(self, ivorn: str, reason, logged: bool = False) -> None:
        receiver = self.receiver
        receiver.rejected += 1
        self.naked += 1
        if not logged:
            log.warn("nak to {peer} for {ivorn}: {reason}", peer=self.peer(), ivorn=ivorn or "(no IVORN)",
                     reason=str(reason))
        self._reply(messages.nak(receiver.local_ivo, ivorn, str(reason), receiver.clock.seconds()))


class Receiver(protocol.ServerFactory):
    """Author-facing server factory; feeds ``pipeline``.

    ``validate(root) -> list[str]`` (empty = valid VOEvent 2.0; ``root`` the safely parsed frame) runs on the
    reactor for payloads up to
    ``inline_bytes``, through ``run_blocking`` (default ``deferToThread``) for larger ones;
    ``has_ivorn(ivorn) -> bool | Deferred[bool]`` asks a persistent store about duplicates.
    """

    def __init__(self, pipeline, local_ivo: str, *, clock=None, validate: Optional[Callable] = None,
                 run_blocking: Callable = threads.deferToThread, has_ivorn: Optional[Callable] = None,
                 whitelist: Optional[Whitelist] = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 idle_timeout: float = 20.0, max_pending: int = 16, inline_bytes: int = 16_384):
        from twisted.internet import reactor

        if validate is None:
            from gateway.voevent.validate import validate_tree as validate
        self.pipeline, self.local_ivo = pipeline, local_ivo
        self.clock = clock or reactor
        self.validate, self.run_blocking, self.has_ivorn = validate, run_blocking, has_ivorn
        self.whitelist = whitelist or Whitelist(["127.0.0.1/32"])
        self.max_frame_bytes, self.idle_timeout, self.max_pending = max_frame_bytes, idle_timeout, max_pending
        self.inline_bytes = inline_bytes
        self.accepted = self.duplicates = self.rejected = self.refused = 0

    def buildProtocol(self, addr):
        return ReceiverProtocol(self)

    def submit(self, message: messages.VOEventMessage, origin: str) -> defer.Deferred:
        """Check and route one submitted event. Fires with "accepted" or "duplicate"; fails with Rejected."""
        if len(message.payload) <= self.inline_bytes:
            try:
                return self._checked(self.validate(message.root), message, origin)
            except Exception:
                return defer.fail()
        return self.run_blocking(self.validate, message.root).addCallback(self._checked, message, origin)

    def _checked(self, problems: list, message: messages.VOEventMessage, origin: str) -> defer.Deferred:
        if problems:
            raise Rejected(f"invalid VOEvent 2.0: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                                    if len(problems) > 1 else ""))
        if message.ivorn in self.pipeline.seen:
            return defer.succeed(self._duplicate(message, origin))
        if self.has_ivorn is None:
            return self._route(False, message, origin)
        return defer.maybeDeferred(self.has_ivorn, message.ivorn).addCallback(self._route, message, origin)

    def _route(self, stored: bool, message: messages.VOEventMessage, origin: str) -> defer.Deferred:
        if stored:
            return defer.succeed(self._duplicate(message, origin, "already in the alert DB"))
        try:  # the frame was parsed once, safely, by messages.parse_message: build the Event from that tree
            event = event_from_tree(message.root, message.payload, origin)
        except ValueError as error:  # e.g. an unknown role: counted with the pipeline's rejects, and nak'd
            self.pipeline.refuse(origin, str(error))
            return defer.fail(Rejected(str(error)))
        return self.pipeline.ingest_event(event).addCallback(self._routed, message, origin)

    def _duplicate(self, message: messages.VOEventMessage, origin: str, why: str = "seen already") -> str:
        """Count and log a submission acked but not routed again (the author may not know it sent it twice)."""
        self.duplicates += 1
        log.info("duplicate {ivorn} from {origin} ({why}): acked, not routed again", ivorn=message.ivorn,
                 origin=origin, why=why)
        return "duplicate, not routed again"

    def _routed(self, event, message: messages.VOEventMessage, origin: str) -> str:
        if event is None:
            if message.ivorn in self.pipeline.seen:  # routed meanwhile by another connection: a duplicate
                return self._duplicate(message, origin, "routed meanwhile from another connection")
            raise Rejected("rejected by the VOEvent parser (see the gateway log)")
        self.accepted += 1
        return "accepted"
