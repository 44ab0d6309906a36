"""The outbox: every forward is a row in the alert DB before the source may commit, and a worker per route sends it.

Rows (table ``forward_outbox``) carry an idempotency ``key`` (unique: ``<route>:<ivorn>``, or ``tns:<objectid>``
for TNS reports), so a replayed event is not queued twice. Their life::

    pending --claim--> sending --delivered--> sent
       ^                  |--retry (backoff with jitter) / rate-limited (the endpoint's wait)--> pending
       |                  |--submitted (TNS: report id stored, reply to be polled)--> pending, stage "poll"
       |                  '--permanent error, or max_attempts used--> failed   (vogateway outbox retry/drop)
       '-- a row left in "sending" by a process that died: claimed again once its lease expired, marked
           ``uncertain``, so a destination that can ask the endpoint (TNS: search by internal name) checks
           before sending again.

Writes go through :class:`gateway.store.db.Database` (one writer thread, each call one committed transaction);
the sink's Deferred fires only after the rows are committed. Rows arriving in the same reactor turn share one
transaction (group commit), which is what keeps forwarding from slowing the pipeline.

The package, in the order a forward goes through it: :mod:`~gateway.forward.outbox.items` (what a destination
prepares and what a delivery comes to), :mod:`~gateway.forward.outbox.sink` (the router's sink, queueing),
:mod:`~gateway.forward.outbox.store` (the tables: enqueue, claim, record, purge, and the operator's tools),
:mod:`~gateway.forward.outbox.worker` (one worker per route: rate, concurrency, backoff while the endpoint is down).
"""

from gateway.forward.outbox.items import (
    Destination,
    Item,
    Outcome,
    Prepared,
    delivered,
    failed,
    poll_again,
    retry,
    submitted,
    throttled,
)
from gateway.forward.outbox.sink import ForwardSink
from gateway.forward.outbox.store import (
    COLUMNS,
    PAYLOAD_TABLE,
    STATUSES,
    TABLE,
    TNS_TABLE,
    Outbox,
    counts,
    create_tables,
    drop_items,
    list_items,
    retry_items,
)
from gateway.forward.outbox.worker import RouteWorker, TokenBucket

__all__ = [
    "COLUMNS", "PAYLOAD_TABLE", "STATUSES", "TABLE", "TNS_TABLE", "Destination", "ForwardSink", "Item", "Outbox",
    "Outcome", "Prepared", "RouteWorker", "TokenBucket", "counts", "create_tables", "delivered", "drop_items",
    "failed", "list_items", "poll_again", "retry", "retry_items", "submitted", "throttled",
]
