"""The router's sink of the forward routes: matching events are queued in the outbox."""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

from twisted.internet import defer

from gateway.event import Event
from gateway.filters import Facts
from gateway.forward.outbox.items import Prepared
from gateway.forward.outbox.store import Outbox


class ForwardSink:
    """The router's sink: each event is matched against every route's filter; matching ones are queued.

    ``accept`` returns None when no route wants the event (nothing to wait for), else a Deferred that fires when
    the rows are committed to the outbox. A route whose destination cannot prepare the event gets a failed row
    (visible in ``vogateway outbox``) rather than failing the pipeline.
    """

    def __init__(self, routes, outbox: Outbox):
        self.routes, self.outbox = list(routes), outbox
        self.selected = defaultdict(int)

    def accept(self, event: Event) -> Optional[defer.Deferred]:
        facts = Facts(event)
        rows = []
        for route in self.routes:
            if not route.filter.matches(facts):
                continue
            try:
                prepared = route.destination.prepare(event, facts, route.name)
            except Exception as error:  # a destination bug or an alert it cannot express: recorded, not fatal
                prepared = Prepared(f"{route.name}:{event.ivorn}", b"", failed=f"cannot prepare: {error}")
            if prepared is None:
                continue
            self.selected[route.name] += 1
            rows.append((route.name, route.destination.kind, prepared, event))
        if not rows:
            return None
        return self.outbox.enqueue(rows)
