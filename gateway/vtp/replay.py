"""Replay: send stored events again to one connected subscriber, paced by its acks.

The events are the very VOEvents sent before, with the same IVORNs: a subscriber that has one already drops it
(VTP subscribers deduplicate by IVORN; Comet's event DB does, and so does our subscriber client). Replay never
changes what the broker sends live: live events keep flowing to the subscriber alongside.

:class:`SubscriberReplay` reads pages from ``fetch(since, until, after, limit)`` (the store's
``Store.events_received``: items with ``ivorn``, ``received``, ``xml``; ``after`` is the (received, ivorn) of
the last item of the previous page), applies the subscriber's own filters and its rule (cap included), and hands
the admitted events to :meth:`BrokerProtocol.deliver`. It keeps at most ``window`` replayed events unacked and
sends nothing while the subscriber's transport is paused or its queue holds frames, so a replay of any length
stays within the slow-subscriber bounds of ``gateway/vtp/broker.py`` instead of getting the subscriber dropped.
Events are parsed only when the subscriber filters.

:func:`replay_on_subscribe` makes the broker's ``on_subscribe`` hook: every subscriber, once it has answered
``authenticate`` (so its filters are known), gets the events received in the last ``seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.filters import Facts
from gateway.times import format_iso
from gateway.voevent.parse import VOEventError, event_from_tree, safe_fromstring
from gateway.vtp.broker import NO_FILTER, BrokerProtocol, Selection
from gateway.vtp.framing import frame

log = Logger()

PAGE = 200  # events read per page
WINDOW = 100  # replayed events a subscriber may have unacked
POLL = 0.02  # s between checks while the subscriber catches up


@dataclass
class ReplayOutcome:
    """What one replay did: events read from the store, sent, left out by the subscriber's filters or cap, and
    unreadable; ``complete`` False when the subscriber left first."""

    read: int = 0
    sent: int = 0
    filtered: int = 0
    unreadable: int = 0
    complete: bool = True

    def summary(self) -> str:
        return (f"{self.read} read, {self.sent} sent, {self.filtered} filtered out, {self.unreadable} unreadable"
                + ("" if self.complete else "; the subscriber left before the end"))


class _Sent:
    """What :class:`Selection` needs of an event: its IVORN."""

    __slots__ = ("ivorn",)

    def __init__(self, ivorn: str):
        self.ivorn = ivorn


class SubscriberReplay:
    """One replay of the stored events received in [``since``, ``until``) (naive-UTC ISO text, None: open) to
    ``subscriber``; :meth:`run` fires with a :class:`ReplayOutcome`. ``progress(outcome)`` is called after each
    chunk."""

    def __init__(self, subscriber: BrokerProtocol, fetch: Callable, since: Optional[str], until: Optional[str],
                 clock, window: int = WINDOW, page: int = PAGE, limit: int = 0,
                 progress: Optional[Callable[[ReplayOutcome], None]] = None):
        self.subscriber, self.fetch, self.since, self.until = subscriber, fetch, since, until
        # within the subscriber's bound on unacked events, so replayed ones never push live ones out as missed
        window = min(window, max(1, subscriber.broker.buffer_events // 2))
        self.clock, self.window, self.page, self.limit = clock, max(1, window), page, limit
        self.progress = progress
        self.outcome = ReplayOutcome()

    @defer.inlineCallbacks
    def run(self):
        after, outcome = None, self.outcome
        while True:
            size = self.page if not self.limit else min(self.page, self.limit - outcome.read)
            if size <= 0:
                break
            items = yield self.fetch(self.since, self.until, after, size)
            if not items:
                break
            after = (items[-1].received, items[-1].ivorn)
            outcome.read += len(items)
            for start in range(0, len(items), self.window):
                chunk = items[start:start + self.window]
                ready = yield self._room(len(chunk))
                if not ready:
                    outcome.complete = False
                    return outcome
                self._send(chunk)
                if self.progress is not None:
                    self.progress(outcome)
        return outcome

    def _room(self, count: int) -> defer.Deferred:
        """Fires True once the subscriber can take ``count`` more replayed events, False if it has left."""
        subscriber = self.subscriber

        def ready() -> Optional[bool]:
            if not subscriber.active:
                return False
            if subscriber.paused or subscriber.queue:
                return None
            if len(subscriber.outstanding) + count > max(self.window, count):
                return None
            return True

        state = ready()
        if state is not None:
            return defer.succeed(state)
        done = defer.Deferred()

        def check():
            state = ready()
            if state is None:
                return
            loop.stop()
            done.callback(state)

        loop = task.LoopingCall(check)
        loop.clock = self.clock
        loop.start(POLL, now=False)
        return done

    def _send(self, chunk: list) -> None:
        subscriber, outcome = self.subscriber, self.outcome
        filtering = subscriber.filter_key != NO_FILTER
        items = []
        for item in chunk:
            if filtering:
                try:
                    root = safe_fromstring(item.xml, subscriber.max_frame_bytes)
                    event = event_from_tree(root, item.xml, origin="replay")
                except VOEventError as error:
                    outcome.unreadable += 1
                    log.warn("replay: stored event {ivorn} is not sent: {error}", ivorn=item.ivorn, error=str(error))
                    continue
                if not subscriber.admits(root, Facts(event)):
                    outcome.filtered += 1
                    continue
            items.append((_Sent(item.ivorn), frame(item.xml)))
        before = subscriber.sent
        subscriber.deliver(Selection(items, self.clock.seconds()), len(items))
        sent = subscriber.sent - before
        outcome.sent += sent
        outcome.filtered += len(items) - sent  # capped by the subscriber's rule


def since_seconds_ago(clock, seconds: float) -> str:
    """The naive-UTC ISO text (as the store keeps ``received``) of ``seconds`` before the clock's now."""
    return format_iso(clock.seconds() - seconds, zone="")


def replay_on_subscribe(fetch: Callable, seconds: float, clock, limit: int = 0) -> Callable[[BrokerProtocol], None]:
    """The broker's ``on_subscribe``: replay the last ``seconds`` of stored events (at most ``limit``; 0: all) to
    each subscriber as it subscribes, and log what was done."""

    def on_subscribe(subscriber: BrokerProtocol) -> None:
        replay = SubscriberReplay(subscriber, fetch, since_seconds_ago(clock, seconds), None, clock, limit=limit)

        def done(outcome: ReplayOutcome):
            log.info("replay to subscriber {peer} ({ivo}) of the last {seconds:g} s: {summary}",
                     peer=subscriber.peer(), ivo=subscriber.remote_ivo or "no IVO", seconds=seconds,
                     summary=outcome.summary())

        def failed(failure):
            log.warn("replay to subscriber {peer} stopped: {why}", peer=subscriber.peer(),
                     why=failure.getErrorMessage())

        replay.run().addCallbacks(done, failed)

    return on_subscribe
