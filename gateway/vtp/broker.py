"""The VTP broker: subscribers connect, every routed Event goes to every subscriber whose filters admit it.

The :class:`Broker` is both a pipeline sink (``accept(event)``) and the server factory for subscriber connections.
On connect (after the TLS handshake, on ``tls:`` ports) a peer is checked against the subscriber whitelist and sent
``authenticate``; its reply may carry XPath filters (``Meta/Param name="xpath-filter"``, as Comet's ``--filter``
sends), which are installed for it. A server-side :class:`~gateway.vtp.access.Rule` matched by network or TLS
identity adds a filter and a cap of N events per window. Each event is framed once and parsed at most once
(only if some subscriber filters); filters are evaluated on the reactor: events are size-limited and XPath on them
takes microseconds.

Acks are matched to IVORNs. An event not acked within ``ack_timeout`` (default twice ``iamalive_interval``), nak'd,
or still unacked or queued when the subscriber leaves, counts as *missed* for that subscriber (Comet counts acks
and loses the rest silently). A nak is logged with its reason; unlike Comet the subscriber is not dropped for it.

Every ``iamalive_interval`` seconds (Comet: 60) each subscriber is sent iamalive; one that has not answered the
previous one by the next tick is dropped.

Slow-subscriber policy: **disconnect and log**. Each subscriber has a bounded send buffer: Twisted's transport
buffer (its producer is paused above ~64 KiB) plus our queue of at most ``buffer_events`` frames and
``buffer_bytes`` bytes. A subscriber that lets the queue overflow is disconnected at once (abort, discarding what
is queued), logged, and the queued events are counted as missed. So one stalled reader never holds up the others
or grows memory beyond those bounds; it can reconnect and carry on.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Optional

from twisted.internet import interfaces, protocol, task
from twisted.logger import Logger
from zope.interface import implementer

from gateway.event import Event
from gateway.vtp import messages
from gateway.vtp.access import Whitelist, admits, compile_xpath, rule_for
from gateway.vtp.framing import COMET_MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES, FrameProtocol, frame
from gateway.vtp.tls import is_tls, peer_identity

log = Logger()

DEFAULT_BUFFER_BYTES = 4_000_000
DEFAULT_BUFFER_EVENTS = 1_000


@implementer(interfaces.IPushProducer, interfaces.IHandshakeListener)
class BrokerProtocol(FrameProtocol):
    """One subscriber connection, seen from the broker."""

    def __init__(self, broker: "Broker"):
        super().__init__()
        self.broker = broker
        self.max_frame_bytes = broker.max_frame_bytes
        self.host, self.identity, self.remote_ivo = "", None, ""
        self.filters: list = []  # compiled XPath filters the subscriber asked for
        self.rule, self.cap = None, None
        self.active = False
        self.paused = False
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.outstanding: OrderedDict[str, float] = OrderedDict()  # IVORN -> when sent (s)
        self.awaiting_alive = False
        self.sent = self.acked = self.naked = self.missed = self.filtered = self.capped = 0

    # -- connection ------------------------------------------------------------------------------------------

    def connectionMade(self):
        self.host = getattr(self.transport.getPeer(), "host", "")
        if not is_tls(self.transport):
            self._admit(None)

    def handshakeCompleted(self):
        self._admit(peer_identity(self.transport))

    def _admit(self, identity: Optional[str]) -> None:
        broker = self.broker
        if not broker.whitelist.allows(self.host, identity):
            log.warn("subscriber {peer} refused: not in the subscriber whitelist", peer=self.peer())
            broker.refused += 1
            self.transport.abortConnection()
            return
        self.identity = identity
        self.rule = rule_for(broker.rules, self.host, identity)
        if self.rule is not None:
            self.cap = self.rule.limiter(broker.clock)
        self.transport.registerProducer(self, True)
        self.active = True
        broker.subscribers.add(self)
        log.info("subscriber {peer} connected{who}{rule}", peer=self.peer(),
                 who=f" as {identity}" if identity else "", rule=f" (rule {self.rule})" if self.rule else "")
        self._send(frame(messages.authenticate(broker.local_ivo, broker.clock.seconds())))

    def connectionLost(self, reason=protocol.connectionDone):
        super().connectionLost(reason)
        if not self.active:
            return
        self.active = False
        self.broker.subscribers.discard(self)
        self.missed += len(self.outstanding) + len(self.queue)
        self.outstanding.clear()
        self.queue.clear()
        self.queued_bytes = 0
        log.info("subscriber {peer} left: {summary}", peer=self.peer(), summary=self.summary())

    def summary(self) -> str:
        return (f"sent {self.sent}, acked {self.acked}, nak'd {self.naked}, missed {self.missed}, "
                f"filtered {self.filtered}, capped {self.capped}")

    # -- sending, with the bounded buffer ----------------------------------------------------------------------

    @property
    def needs_tree(self) -> bool:
        return bool(self.filters) or (self.rule is not None and self.rule.filter != "")

    def offer(self, ivorn: str, data: bytes, root) -> None:
        """Send one framed event if this subscriber's filters, rule and cap admit it."""
        if self.filters and (root is None or not any(admits(xpath, root) for xpath in self.filters)):
            self.filtered += 1
            return
        if self.rule is not None and self.rule.filter and (root is None or not self.rule.admits(root)):
            self.filtered += 1
            return
        if self.cap is not None and not self.cap.allow():
            self.capped += 1
            return
        self.outstanding[ivorn] = self.broker.clock.seconds()
        if len(self.outstanding) > self.broker.buffer_events:  # never acked and never timed out yet: bounded
            self.outstanding.popitem(last=False)
            self.missed += 1
        self.sent += 1
        self._send(data)

    def _send(self, data: bytes) -> None:
        if not self.active:
            return
        if self.paused or self.queue:
            self.queue.append(data)
            self.queued_bytes += len(data)
            if len(self.queue) > self.broker.buffer_events or self.queued_bytes > self.broker.buffer_bytes:
                self._drop_slow()
            return
        self.transport.write(data)

    def _drop_slow(self) -> None:
        log.warn("subscriber {peer} is not reading: {events} frames ({size} bytes) waiting; disconnecting it "
                 "(slow-subscriber policy)", peer=self.peer(), events=len(self.queue), size=self.queued_bytes)
        self.broker.dropped_slow += 1
        self.transport.abortConnection()
        self.connectionLost()  # forget it now; abortConnection reports the loss only on the next reactor turn

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self.queue and not self.paused and self.active:
            data = self.queue.popleft()
            self.queued_bytes -= len(data)
            self.transport.write(data)

    def stopProducing(self):
        self.paused = True

    # -- what the subscriber says ----------------------------------------------------------------------------

    def _acked(self, ivorn: str) -> None:
        if self.outstanding.pop(ivorn, None) is not None:
            self.acked += 1
        else:
            log.debug("ack from {peer} for {ivorn}, which was not outstanding", peer=self.peer(), ivorn=ivorn)

    def frameReceived(self, payload: bytes) -> None:
        ivorn = messages.quick_ack_origin(payload)  # acks are one per delivery: the hot path
        if ivorn is not None:
            self._acked(ivorn)
            return
        try:
            message = messages.parse_message(payload, self.max_frame_bytes)
        except messages.MessageError as error:
            log.warn("unusable message from subscriber {peer}: {error}", peer=self.peer(), error=str(error))
            return
        if isinstance(message, messages.VOEventMessage):
            log.warn("subscriber {peer} sent a VOEvent ({ivorn}); subscribers don't publish, ignored",
                     peer=self.peer(), ivorn=message.ivorn)
            return
        if message.role == "iamalive":
            self.awaiting_alive = False
        elif message.role == "ack":
            self._acked(message.origin)
        elif message.role == "nak":
            if self.outstanding.pop(message.origin, None) is not None:
                self.naked += 1
                self.missed += 1
            log.warn("subscriber {peer} nak'd {ivorn}: {reason}", peer=self.peer(), ivorn=message.origin,
                     reason=message.result or "no reason given")
        elif message.role == "authenticate":
            self.remote_ivo = message.response
            self.filters = []
            for expression in message.filters:
                try:
                    self.filters.append(compile_xpath(expression))
                except ValueError as error:
                    log.warn("subscriber {peer}: {error}; filter ignored", peer=self.peer(), error=str(error))
            if message.filters:
                log.info("subscriber {peer} ({ivo}) filters on {filters}", peer=self.peer(), ivo=self.remote_ivo,
                         filters=list(message.filters))

    # -- timers ----------------------------------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Called every ``iamalive_interval``: expire old unacked events, drop a silent peer, send iamalive."""
        while self.outstanding:
            ivorn, sent = next(iter(self.outstanding.items()))
            if now - sent < self.broker.ack_timeout:
                break
            self.outstanding.popitem(last=False)
            self.missed += 1
        if self.awaiting_alive:
            log.warn("subscriber {peer} did not answer iamalive within {interval} s; dropping it",
                     peer=self.peer(), interval=self.broker.iamalive_interval)
            self.broker.dropped_silent += 1
            self.transport.abortConnection()
            self.connectionLost()
            return
        self.awaiting_alive = True
        self._send(frame(messages.iamalive(self.broker.local_ivo, now)))


class Broker(protocol.ServerFactory):
    """Pipeline sink and subscriber-facing server factory. Times in seconds; sizes in bytes.

    ``whitelist``: :class:`~gateway.vtp.access.Whitelist` of subscribers (default: everyone);
    ``rules``: server-side :class:`~gateway.vtp.access.Rule` list; ``clock``: reactor or ``task.Clock``.
    """

    def __init__(self, local_ivo: str, *, clock=None, iamalive_interval: float = 60.0,
                 ack_timeout: Optional[float] = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, buffer_events: int = DEFAULT_BUFFER_EVENTS,
                 whitelist: Optional[Whitelist] = None, rules=()):
        from twisted.internet import reactor

        self.local_ivo = local_ivo
        self.clock = clock or reactor
        self.iamalive_interval = iamalive_interval
        self.ack_timeout = ack_timeout if ack_timeout is not None else 2 * iamalive_interval
        self.max_frame_bytes = max_frame_bytes
        self.buffer_bytes, self.buffer_events = buffer_bytes, buffer_events
        self.whitelist = whitelist or Whitelist(["0.0.0.0/0", "::/0"])
        self.rules = list(rules)
        self.subscribers: set[BrokerProtocol] = set()
        self.events = self.deliveries = self.refused = self.dropped_slow = self.dropped_silent = 0
        self.too_large = self.over_comet_cap = 0
        self._loop: Optional[task.LoopingCall] = None

    def buildProtocol(self, addr):
        return BrokerProtocol(self)

    def startFactory(self):
        self.start()

    def stopFactory(self):
        self.stop()

    def start(self) -> None:
        """Start the iamalive timer (done by the listening port; call it yourself with a StringTransport)."""
        if self._loop is None:
            self._loop = task.LoopingCall(self.heartbeat)
            self._loop.clock = self.clock
            self._loop.start(self.iamalive_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def heartbeat(self) -> None:
        now = self.clock.seconds()
        for subscriber in list(self.subscribers):
            subscriber.heartbeat(now)

    def accept(self, event: Event) -> None:
        """Send ``event`` to every subscriber that admits it. Never blocks, never waits for a subscriber."""
        payload = event.xml
        if len(payload) > self.max_frame_bytes:
            self.too_large += 1
            log.warn("event {ivorn} is {size} bytes, over max_frame_bytes {limit}: not broadcast",
                     ivorn=event.ivorn, size=len(payload), limit=self.max_frame_bytes)
            return None
        if len(payload) > COMET_MAX_FRAME_BYTES:
            self.over_comet_cap += 1
            log.warn("event {ivorn} is {size} bytes: Comet-based subscribers (limit 99,999) will drop it",
                     ivorn=event.ivorn, size=len(payload))
        self.events += 1
        data = frame(payload)
        root, parsed = None, False
        for subscriber in list(self.subscribers):
            if subscriber.needs_tree and not parsed:
                root, parsed = self._tree(event), True
            before = subscriber.sent
            subscriber.offer(event.ivorn, data, root)
            self.deliveries += subscriber.sent - before
        return None

    def _tree(self, event: Event):
        try:
            return messages.parse_message(event.xml, self.max_frame_bytes).root
        except messages.MessageError as error:  # routed events were parsed before; this is a bug upstream
            log.error("event {ivorn} cannot be parsed for filtering: {error}", ivorn=event.ivorn, error=str(error))
            return None

    def summary(self) -> str:
        return (f"{len(self.subscribers)} subscribers, {self.events} events, {self.deliveries} deliveries, "
                f"{self.dropped_slow} dropped as slow, {self.dropped_silent} as silent, {self.refused} refused")
