"""The VTP broker: subscribers connect, every routed Event goes to every subscriber whose filters admit it.

The :class:`Broker` is both a pipeline sink (``accept(event)``) and the server factory for subscriber connections.
On connect (after the TLS handshake, on ``tls:`` ports) a peer is checked against the subscriber whitelist and sent
``authenticate``; its reply may carry XPath filters (``Meta/Param name="xpath-filter"``, as Comet's ``--filter``
sends), which are installed for it. A server-side :class:`~gateway.vtp.access.Rule` matched by network or TLS
identity adds a filter and a cap of N events per window.

Events are sent in batches: ``accept`` queues the framed event and a flush sends everything queued, one write per
subscriber. A flush runs on the next reactor turn, or, if the previous one was less than ``flush_interval``
seconds ago (default 10 ms), that long after it: a lone event goes out at once, a busy stream adds at most
``flush_interval`` of latency and costs one write (and one read, one ack batch, on the subscriber's side) per
subscriber per flush instead of per event. Each event is framed once, parsed at most once (only if some subscriber
filters), and each distinct filter is evaluated once per event, however many subscribers share it; subscribers
that get the same events share one joined buffer. Filters run on the reactor: events are size-limited and XPath on
them takes microseconds.

Acks are matched to IVORNs. An event not acked within ``ack_timeout`` (default twice ``iamalive_interval``), nak'd,
or still unacked or queued when the subscriber leaves, counts as *missed* for that subscriber (Comet counts acks
and loses the rest silently). A nak is logged with its reason; unlike Comet the subscriber is not dropped for it.
There is one ack per delivery, so acks are read in place from the received bytes (:mod:`~gateway.vtp.acks`).

Every ``iamalive_interval`` seconds (Comet: 60) each subscriber is sent iamalive. Idle and trickling connections
are bounded (:mod:`~gateway.vtp.deadlines`): a subscriber must send its first complete message (its authenticate
reply) within ``handshake_timeout`` of connecting, each message within ``frame_timeout`` of its first bytes, and
answer iamalive within ``alive_timeout`` (default: by the next tick); otherwise it is closed, with a log line.

Slow-subscriber policy: **disconnect and log**. Each subscriber has a bounded send buffer: Twisted's transport
buffer (its producer is paused above ~64 KiB) plus our queue of at most ``buffer_events`` frames and
``buffer_bytes`` bytes. A subscriber that lets the queue overflow is disconnected at once (abort, discarding what
is queued), logged, and the queued events are counted as missed. So one stalled reader never holds up the others
or grows memory beyond those bounds; it can reconnect and carry on.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Optional

from twisted.internet import interfaces, protocol, task
from twisted.logger import Logger
from zope.interface import implementer

from gateway.event import Event
from gateway.filters import Facts
from gateway.vtp import messages
from gateway.vtp.access import Whitelist, admits, compile_xpath, rule_for
from gateway.vtp.acks import AckReader
from gateway.vtp.deadlines import Deadlines
from gateway.vtp.framing import COMET_MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES, frame
from gateway.vtp.tls import is_tls, peer_identity

log = Logger()

DEFAULT_BUFFER_BYTES = 4_000_000
DEFAULT_BUFFER_EVENTS = 1_000
DEFAULT_FLUSH_INTERVAL = 0.01  # s
DEFAULT_HANDSHAKE_TIMEOUT = DEFAULT_FRAME_TIMEOUT = 30.0  # s
NO_FILTER = ((), ("", ""))  # the filter key of a subscriber that takes everything


class Selection:
    """The events of one flush that pass one filter key: their IVORNs and their frames joined, built once and
    shared by every subscriber with that key."""

    __slots__ = ("items", "count", "now", "_ivorns", "_data")

    def __init__(self, items: list, now: float):
        self.items, self.count, self.now = items, len(items), now
        self._ivorns = self._data = None

    @property
    def ivorns(self) -> dict:
        if self._ivorns is None:
            self._ivorns = dict.fromkeys((event.ivorn for event, _ in self.items), self.now)
        return self._ivorns

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = b"".join(data for _, data in self.items)
        return self._data


@implementer(interfaces.IPushProducer, interfaces.IHandshakeListener)
class BrokerProtocol(AckReader):
    """One subscriber connection, seen from the broker."""

    def __init__(self, broker: "Broker"):
        super().__init__()
        self.broker = broker
        self.max_frame_bytes = broker.max_frame_bytes
        self.host, self.identity, self.remote_ivo = "", None, ""
        self.filters: list = []  # compiled XPath filters the subscriber asked for
        self.rule, self.cap = None, None
        self.filter_key = NO_FILTER  # (its XPath expressions, its rule's filter): subscribers alike share work
        self.active = False
        self.paused = False
        self.queue: deque[tuple[bytes, int]] = deque()  # (data, how many frames) waiting while paused
        self.queued_bytes = self.queued_frames = 0
        self.deadlines: Optional[Deadlines] = None
        self.subscribed = False  # has answered authenticate (and been handed to on_subscribe)
        self.sent = self.naked = self.missed = self.filtered = self.capped = 0

    # -- connection ------------------------------------------------------------------------------------------

    def connectionMade(self):
        self.host = getattr(self.transport.getPeer(), "host", "")
        broker = self.broker
        self.deadlines = Deadlines(broker.clock, self._expired, broker.handshake_timeout, broker.frame_timeout,
                                   broker.alive_timeout)
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
            self.filter_key = ((), self.rule.key)
        self.transport.registerProducer(self, True)
        self.active = True
        broker.subscribers.add(self)
        log.info("subscriber {peer} connected{who}{rule}", peer=self.peer(),
                 who=f" as {identity}" if identity else "", rule=f" (rule {self.rule})" if self.rule else "")
        self._send(frame(messages.authenticate(broker.local_ivo, broker.clock.seconds())))

    def connectionLost(self, reason=protocol.connectionDone):
        super().connectionLost(reason)
        if self.deadlines is not None:
            self.deadlines.cancel()
        if not self.active:
            return
        self.active = False
        self.broker.subscribers.discard(self)
        self.missed += len(self.outstanding)  # sent or queued, never acked
        self.broker.departed.update(sent=self.sent, acked=self.acked, naked=self.naked, missed=self.missed)
        self.outstanding.clear()
        self.queue.clear()
        self.queued_bytes = self.queued_frames = 0
        log.info("subscriber {peer} left: {summary}", peer=self.peer(), summary=self.summary())

    def summary(self) -> str:
        return (f"sent {self.sent}, acked {self.acked}, nak'd {self.naked}, missed {self.missed}, "
                f"filtered {self.filtered}, capped {self.capped}")

    # -- sending, with the bounded buffer ----------------------------------------------------------------------

    def admits(self, root, facts=None) -> bool:
        """Do this subscriber's own XPath filters (on ``root``, None: unparseable) and its rule (XPath and
        expression; ``facts`` for the latter) pass the event?"""
        if self.filters and (root is None or not any(admits(xpath, root) for xpath in self.filters)):
            return False
        return self.rule is None or self.rule.admits(root, facts)

    def deliver(self, selection: Selection, offered: int) -> None:
        """Send the events of one flush that passed this subscriber's filters (``offered`` events were flushed)."""
        self.filtered += offered - selection.count
        if self.cap is not None:
            items = [item for item in selection.items if self.cap.allow()]
            self.capped += selection.count - len(items)
            if len(items) < selection.count:
                selection = Selection(items, selection.now)
        count = selection.count
        if not count:
            return
        outstanding = self.outstanding
        outstanding.update(selection.ivorns)
        excess = len(outstanding) - self.broker.buffer_events
        if excess > 0:  # never acked and never timed out yet: bounded, the oldest count as missed
            for _ in range(excess):
                outstanding.popitem(last=False)
            self.missed += excess
        self.sent += count
        self.broker.deliveries += count
        self._send(selection.data, count)

    def _send(self, data: bytes, frames: int = 1) -> None:
        if not self.active:
            return
        if self.paused or self.queue:
            self.queue.append((data, frames))
            self.queued_bytes += len(data)
            self.queued_frames += frames
            if self.queued_frames > self.broker.buffer_events or self.queued_bytes > self.broker.buffer_bytes:
                self._drop_slow()
            return
        self.transport.write(data)

    def _drop_slow(self) -> None:
        log.warn("subscriber {peer} is not reading: {events} frames ({size} bytes) waiting; disconnecting it "
                 "(slow-subscriber policy)", peer=self.peer(), events=self.queued_frames, size=self.queued_bytes)
        self.broker.dropped_slow += 1
        self.transport.abortConnection()
        self.connectionLost()  # forget it now; abortConnection reports the loss only on the next reactor turn

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self.queue and not self.paused and self.active:
            data, frames = self.queue.popleft()
            self.queued_bytes -= len(data)
            self.queued_frames -= frames
            self.transport.write(data)

    def stopProducing(self):
        self.paused = True

    # -- what the subscriber says ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.deadlines is not None:
            self.deadlines.read(self.frames_read, len(self._pending))

    def frameReceived(self, payload: bytes) -> None:
        message = messages.parse_or_warn(payload, self.max_frame_bytes, "message", f"subscriber {self.peer()}")
        if message is None:
            return
        if isinstance(message, messages.VOEventMessage):
            log.warn("subscriber {peer} sent a VOEvent ({ivorn}); subscribers don't publish, ignored",
                     peer=self.peer(), ivorn=message.ivorn)
            return
        if message.role == "iamalive":
            self.deadlines.answered_alive()
        elif message.role == "ack":  # one quick_ack_origin could not read
            self._acked(message.origin)
        elif message.role == "nak":
            if self.outstanding.pop(message.origin, None) is not None:
                self.naked += 1
                self.missed += 1
            log.warn("subscriber {peer} nak'd {ivorn}: {reason}", peer=self.peer(), ivorn=message.origin,
                     reason=message.result or "no reason given")
        elif message.role == "authenticate":
            self.remote_ivo = message.response
            self.filters, expressions = [], []
            for expression in message.filters:
                try:
                    self.filters.append(compile_xpath(expression))
                    expressions.append(expression)
                except ValueError as error:
                    log.warn("subscriber {peer}: {error}; filter ignored", peer=self.peer(), error=str(error))
            self.filter_key = (tuple(expressions), self.rule.key if self.rule is not None else ("", ""))
            if message.filters:
                log.info("subscriber {peer} ({ivo}) filters on {filters}", peer=self.peer(), ivo=self.remote_ivo,
                         filters=list(message.filters))
            if self.broker.on_subscribe is not None and not self.subscribed:  # once: filters are known now
                self.subscribed = True
                self.broker.on_subscribe(self)

    # -- timers ----------------------------------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Called every ``iamalive_interval``: expire old unacked events, send iamalive."""
        while self.outstanding:
            ivorn, sent = next(iter(self.outstanding.items()))
            if now - sent < self.broker.ack_timeout:
                break
            self.outstanding.popitem(last=False)
            self.missed += 1
        self._send(frame(messages.iamalive(self.broker.local_ivo, now)))
        self.deadlines.asked_alive()

    def _expired(self, bound: str, why: str) -> None:
        """A bound of :mod:`~gateway.vtp.deadlines` passed: close the connection, say why and which setting."""
        setting = {"first": "handshake_timeout", "frame": "frame_timeout", "alive": "alive_timeout"}[bound]
        log.warn("subscriber {peer} {why}; closing it (vtp.subscriber_{setting})", peer=self.peer(), why=why,
                 setting=setting)
        if bound == "alive":
            self.broker.dropped_silent += 1
        else:
            self.broker.dropped_idle += 1
        self.transport.abortConnection()
        self.connectionLost()  # forget it now; abortConnection reports the loss only on the next reactor turn


class Broker(protocol.ServerFactory):
    """Pipeline sink and subscriber-facing server factory. Times in seconds; sizes in bytes.

    ``whitelist``: :class:`~gateway.vtp.access.Whitelist` of subscribers (default: everyone);
    ``rules``: server-side :class:`~gateway.vtp.access.Rule` list; ``clock``: reactor or ``task.Clock``;
    ``on_subscribe(subscriber)``: called once per subscriber when it answers authenticate (replay on subscribe,
    :mod:`gateway.vtp.replay`).
    """

    def __init__(self, local_ivo: str, *, clock=None, iamalive_interval: float = 60.0,
                 ack_timeout: Optional[float] = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, buffer_events: int = DEFAULT_BUFFER_EVENTS,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL, whitelist: Optional[Whitelist] = None, rules=(),
                 handshake_timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
                 frame_timeout: Optional[float] = DEFAULT_FRAME_TIMEOUT, alive_timeout: Optional[float] = None,
                 on_subscribe=None):
        from twisted.internet import reactor

        self.local_ivo = local_ivo
        self.clock = clock or reactor
        self.iamalive_interval = iamalive_interval
        self.ack_timeout = ack_timeout if ack_timeout is not None else 2 * iamalive_interval
        self.handshake_timeout, self.frame_timeout = handshake_timeout, frame_timeout
        self.alive_timeout = alive_timeout if alive_timeout is not None else iamalive_interval
        self.max_frame_bytes = max_frame_bytes
        self.buffer_bytes, self.buffer_events = buffer_bytes, buffer_events
        self.flush_interval = flush_interval
        self.whitelist = whitelist or Whitelist(["0.0.0.0/0", "::/0"])
        self.rules = list(rules)
        self.on_subscribe = on_subscribe
        self.subscribers: set[BrokerProtocol] = set()
        self.events = self.deliveries = self.refused = self.dropped_slow = self.dropped_silent = self.dropped_idle = 0
        self.too_large = self.over_comet_cap = 0
        self.departed: Counter = Counter()  # sent, acked, naked, missed of the subscribers that left (for totals)
        self.flush_listeners: list = []  # called with (the events sent, when) after each flush: for metrics
        self._loop: Optional[task.LoopingCall] = None
        self._batch: list[tuple[Event, bytes]] = []  # accepted, not yet flushed
        self._flush_call = None
        self._last_flush = float("-inf")

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
        self.flush()

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
        self._batch.append((event, frame(payload)))
        if self._flush_call is None:
            delay = self._last_flush + self.flush_interval - self.clock.seconds()
            self._flush_call = self.clock.callLater(max(0.0, delay), self.flush)
        return None

    def flush(self) -> None:
        """Send every accepted event not sent yet (called by the flush timer, and by ``stop``)."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        batch, self._batch = self._batch, []
        self._last_flush = now = self.clock.seconds()
        if not batch:
            return
        selections: dict[tuple, Selection] = {}
        roots = facts = None
        for subscriber in list(self.subscribers):
            key = subscriber.filter_key
            selection = selections.get(key)
            if selection is None:
                if key == NO_FILTER:
                    selection = Selection(batch, now)
                else:
                    if roots is None:
                        roots = [self._tree(event) for event, _ in batch]
                        facts = [Facts(event) for event, _ in batch]
                    selection = Selection([item for item, root, fact in zip(batch, roots, facts)
                                           if subscriber.admits(root, fact)], now)
                selections[key] = selection
            subscriber.deliver(selection, len(batch))
        for listener in self.flush_listeners:
            listener([event for event, _ in batch], now)

    def _tree(self, event: Event):
        try:
            return messages.parse_message(event.xml, self.max_frame_bytes).root
        except messages.MessageError as error:  # routed events were parsed before; this is a bug upstream
            log.error("event {ivorn} cannot be parsed for filtering: {error}", ivorn=event.ivorn, error=str(error))
            return None

    def summary(self) -> str:
        return (f"{len(self.subscribers)} subscribers, {self.events} events, {self.deliveries} deliveries, "
                f"{self.dropped_slow} dropped as slow, {self.dropped_silent} as silent, {self.dropped_idle} as idle, "
                f"{self.refused} refused")
