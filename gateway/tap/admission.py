"""Admission of sync queries: a bound on how many run at once, overall and per client address, and a bounded
queue in front, so that a few clients with slow queries cannot take every thread and starve the others.

A query is admitted at once when a slot is free; else it waits in a FIFO queue of at most ``max_queued``; a client
already at ``max_per_client`` (running and waiting) and a full queue are answered 503 with Retry-After at once. Time
spent waiting counts in the query's time limit (``sync_timeout``): a client never waits longer than that in all.
Runs in the reactor thread only.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Optional

from twisted.internet import defer

from gateway.tap.errors import QueryError


class Ticket:
    """One sync query's place: ``ready`` fires (with the ticket) when it may run, for ``remaining`` seconds."""

    def __init__(self, client: str, arrived: float, timeout: float):
        self.client = client
        self.arrived = arrived
        self.timeout = timeout
        self.started: Optional[float] = None
        self.ready: defer.Deferred = defer.Deferred()
        self.expiry = None  # DelayedCall failing the ticket when it waited all of its time

    @property
    def remaining(self) -> float:
        """Seconds of the time limit left once it started (the wait is taken off)."""
        return self.timeout - ((self.started or self.arrived) - self.arrived)


class SyncAdmission:
    """Admits sync queries: at most ``max_running`` at once and ``max_per_client`` per client address (running and
    waiting), at most ``max_queued`` waiting; ``timeout``: the sync time limit, which the wait counts in."""

    def __init__(self, reactor, max_running: int, max_per_client: int, max_queued: int, timeout: float):
        self.reactor = reactor
        self.max_running, self.max_per_client, self.max_queued = max_running, max_per_client, max_queued
        self.timeout = timeout
        self.running: list[Ticket] = []
        self.queue: deque[Ticket] = deque()
        self.per_client: Counter = Counter()

    def enter(self, client: str) -> Ticket:
        """A ticket for a query from ``client`` (its address); QueryError 503 when the client or the queue is
        at its limit."""
        if self.per_client[client] >= self.max_per_client:
            raise QueryError(f"this client already has {self.per_client[client]} sync queries running or waiting, "
                             f"the most one address may have at once ([tap] sync_max_per_client); wait for them "
                             "to finish or run the query as an async job", 503, self.retry_after())
        ticket = Ticket(client, self.reactor.seconds(), self.timeout)
        if len(self.running) < self.max_running and not self.queue:
            self._start(ticket)
        elif len(self.queue) < self.max_queued:
            self.queue.append(ticket)
            self.per_client[client] += 1
            ticket.expiry = self.reactor.callLater(self.timeout, self._expired, ticket)
        else:
            raise QueryError(f"the service is busy: {len(self.running)} sync queries are running and "
                             f"{len(self.queue)} waiting, the most it takes ([tap] sync_max_running, "
                             "sync_max_queued); try again later or run the query as an async job", 503,
                             self.retry_after())
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """The query of ``ticket`` ended, or its client went away: free its place and admit the next."""
        if ticket in self.running:
            self.running.remove(ticket)
        elif ticket in self.queue:
            self.queue.remove(ticket)
            self._stop_expiry(ticket)
        else:
            return
        self.per_client[ticket.client] -= 1
        if self.per_client[ticket.client] <= 0:
            del self.per_client[ticket.client]
        while self.queue and len(self.running) < self.max_running:
            waiting = self.queue.popleft()
            self._stop_expiry(waiting)
            self.per_client[waiting.client] -= 1  # _start counts it again
            self._start(waiting)

    def retry_after(self) -> int:
        """Seconds until a slot is sure to be free: when the running query nearest its time limit reaches it."""
        now = self.reactor.seconds()
        ends = [t.started + t.remaining for t in self.running if t.started is not None]
        return max(1, math.ceil(min(ends) - now)) if ends else 1

    def _start(self, ticket: Ticket) -> None:
        ticket.started = self.reactor.seconds()
        self.running.append(ticket)
        self.per_client[ticket.client] += 1
        ticket.ready.callback(ticket)

    @staticmethod
    def _stop_expiry(ticket: Ticket) -> None:
        if ticket.expiry is not None and ticket.expiry.active():
            ticket.expiry.cancel()
        ticket.expiry = None

    def _expired(self, ticket: Ticket) -> None:
        ticket.expiry = None
        if ticket not in self.queue:
            return
        self.queue.remove(ticket)
        self.per_client[ticket.client] -= 1
        if self.per_client[ticket.client] <= 0:
            del self.per_client[ticket.client]
        ticket.ready.errback(QueryError(
            f"the query waited its whole time limit of {self.timeout:g} s ([tap] sync_timeout, which counts the "
            "wait) for one of the busy sync slots and was not run; try again later or run it as an async job",
            503, self.retry_after()))
