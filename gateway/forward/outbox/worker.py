"""Sending one route's rows: a token bucket for the route's rate, and the worker that claims due rows, delivers
them (bounded concurrency), records the outcomes, and backs off and probes while the endpoint is down."""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

from twisted.internet import defer
from twisted.logger import Logger

from gateway.forward.outbox.items import Item, Outcome, retry
from gateway.forward.outbox.store import Outbox

log = Logger()


class TokenBucket:
    """``rate`` per second with bursts of up to ``burst``; rate 0 means no cap."""

    def __init__(self, rate: float, burst: Optional[float], clock):
        self.rate, self.clock = rate, clock
        self.capacity = max(1.0, burst if burst else rate)
        self.tokens = self.capacity
        self.stamp = clock.seconds()

    def available(self) -> int:
        if not self.rate:
            return 1 << 30
        now = self.clock.seconds()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # tolerate rounding: 10 x 0.1 s at 10/s is one token, not 0.99999..., which would ask to wait ~1e-17 s
        # and so pump again at once, over and over, until the clock moves
        return int(self.tokens + 1e-9)

    def take(self, n: int) -> None:
        if self.rate:
            self.tokens -= n

    def wait(self) -> float:
        """Seconds until one token is there."""
        return 0.0 if not self.rate else max(0.0, (1.0 - self.tokens) / self.rate)


class RouteWorker:
    """Sends one route's due rows: at most ``concurrency`` at once, at most ``rate`` per second, pausing the whole
    route when the endpoint says it is rate limited. Wakes when rows are queued (``poke``) or come due.

    An endpoint that fails ``trip`` attempts in a row is taken as down: the route pauses (growing backoff with
    jitter) and then sends one row at a time as a probe until one gets through, so an outage costs a few probes
    rather than an attempt of every queued row (which would spend their ``max_attempts`` on the outage).
    """

    def __init__(self, route, outbox: Outbox, clock=None, concurrency: int = 4, rate: float = 0.0,
                 max_attempts: int = 20, lease: float = 60.0, trip: int = 5):
        if clock is None:  # the reactor only when none is given: importing it installs the default one
            from twisted.internet import reactor as clock
        self.route, self.outbox, self.clock = route, outbox, clock
        self.name, self.destination = route.name, route.destination
        self.concurrency, self.max_attempts, self.lease = concurrency, max_attempts, lease
        self._in_flight_ids: set[int] = set()
        self.bucket = TokenBucket(rate, None, clock)
        self.in_flight = 0
        self.paused_until = 0.0
        self.trip = trip
        self.failing = 0  # attempts failed in a row (the endpoint's trouble, not one item's)
        self.down_since: Optional[float] = None
        self.running = False
        self._claiming = False
        self._timer = None
        self._pending_records: set[defer.Deferred] = set()
        self._stopping: list[defer.Deferred] = []
        self.stats = defaultdict(int)

    def start(self) -> None:
        self.running = True
        self.poke()

    def stop(self, grace: float = 5.0) -> defer.Deferred:
        """Stop claiming; fires when the deliveries in flight have finished and been recorded, or after ``grace``
        seconds (those still out then stay leased in the outbox, and are sent again, as uncertain, later)."""
        self.running = False
        self._cancel_timer()
        if self._idle():
            return defer.succeed(None)
        d = defer.Deferred()
        self._stopping.append(d)
        give_up = self.clock.callLater(grace, self._stopped)
        d.addBoth(lambda result: (give_up.active() and give_up.cancel(), result)[1])
        return d

    def _idle(self) -> bool:
        return not self.in_flight and not self._pending_records

    def _stopped(self) -> None:
        waiting, self._stopping = self._stopping, []
        if waiting and not self._idle():
            log.info("route {route}: stopped with {n} deliveries still out; they stay leased and are sent again "
                     "(as uncertain) later", route=self.name, n=self.in_flight)
        for d in waiting:
            d.callback(None)

    def poke(self, delay: float = 0.0) -> None:
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, delay), self._pump)

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _pump(self) -> None:
        self._timer = None
        if not self.running or self._claiming:
            return
        now = self.clock.seconds()
        if self.paused_until > now:
            self.poke(self.paused_until - now)
            return
        free = (self.concurrency if self.down_since is None else 1) - self.in_flight  # down: one probe at a time
        if free <= 0:
            return  # a finishing delivery pokes again
        tokens = self.bucket.available()
        if tokens <= 0:
            self.poke(self.bucket.wait())
            return
        limit = min(free, tokens, self.outbox.max_batch)
        self._claiming = True
        claimed = self.outbox.claim(self.name, limit, self.lease)
        claimed.addCallbacks(self._claimed, self._claim_failed, callbackArgs=(limit,))

    def _claim_failed(self, failure):
        self._claiming = False
        log.failure("outbox claim for route {route} failed; retrying in 5 s", failure, route=self.name)
        self.poke(5.0)

    def _claimed(self, result, limit) -> None:
        self._claiming = False
        items, next_due = result
        self.bucket.take(len(items))
        for item in items:
            if item.id not in self._in_flight_ids:  # (a lease that ran out under a slow attempt of ours)
                self._deliver(item)
        if not self.running:
            return
        if len(items) >= limit:
            self.poke()
        elif next_due is not None:
            self.poke(max(0.0, next_due - self.clock.seconds()))

    def _health(self, outcome: Outcome) -> None:
        """Count failures in a row; trip to probing when the endpoint looks down, and back when it answers."""
        now = self.clock.seconds()
        if outcome.kind == "retry":
            self.failing += 1
            if self.failing < self.trip:
                return
            wait = self.outbox.backoff(self.failing - self.trip + 1)
            self.paused_until = max(self.paused_until, now + wait)
            if self.down_since is None:
                self.down_since = now
                log.warn("route {route}: endpoint down ({n} attempts failed in a row, last: {detail}); probing "
                         "with one row at a time, backing off", route=self.name, n=self.failing,
                         detail=outcome.detail)
        elif outcome.kind != "throttled":  # it answered: up
            if self.down_since is not None:
                log.info("route {route}: endpoint is back after {s:.0f} s", route=self.name, s=now - self.down_since)
            self.failing, self.down_since = 0, None

    def _deliver(self, item: Item) -> None:
        self.in_flight += 1
        self._in_flight_ids.add(item.id)
        try:
            d = defer.maybeDeferred(self.destination.deliver, item)
        except Exception as error:  # noqa: BLE001  (maybeDeferred already catches; belt and braces)
            d = defer.fail(error)

        def unexpected(failure):
            # the destination did not say what happened: the endpoint may or may not have the item
            log.warn("route {route}: delivery of {key} failed unexpectedly: {error}", route=self.name, key=item.key,
                     error=failure.getErrorMessage())
            return retry(f"unexpected error: {failure.getErrorMessage()}", uncertain=True)

        d.addErrback(unexpected)
        d.addCallback(self._finished, item)

    def _finished(self, outcome: Outcome, item: Item) -> None:
        self.in_flight -= 1
        self._in_flight_ids.discard(item.id)
        self.stats[outcome.kind] += 1
        if outcome.pause:
            self.paused_until = max(self.paused_until, self.clock.seconds() + outcome.pause)
        if outcome.kind == "throttled":
            wait = max(0.0, outcome.after or 1.0)
            self.paused_until = max(self.paused_until, self.clock.seconds() + wait)
            log.info("route {route}: endpoint rate limit, pausing {wait:.1f} s", route=self.name, wait=wait)
        elif outcome.kind in ("retry", "failed"):
            log.warn("route {route}: {kind} {key} (attempt {n}): {detail}", route=self.name, kind=outcome.kind,
                     key=item.key, n=item.attempts, detail=outcome.detail)
        self._health(outcome)
        hook = getattr(self.destination, "on_result", None)
        d = self.outbox.record(item, outcome, self.max_attempts, hook)
        self._pending_records.add(d)

        def recorded(_):
            self._pending_records.discard(d)
            if self._stopping and self._idle():
                self._stopped()
            self.poke()
        d.addBoth(recorded)
