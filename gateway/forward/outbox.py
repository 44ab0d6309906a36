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
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from gateway.event import Event
from gateway.filters import Facts
from gateway.store.db import DatabaseClosed

log = Logger()

TABLE = "forward_outbox"
TNS_TABLE = "tns_report"
#: rows with a NULL payload send the event's VOEvent: the store's ``voevent`` row, or, for an event the store has
#: not written (yet) when its rows are queued, a copy kept here (once however many routes queued it)
PAYLOAD_TABLE = "forward_payload"
STATUSES = ("pending", "sending", "sent", "failed", "dropped")


def sqlite_ddl() -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, route TEXT NOT NULL, kind TEXT NOT NULL,
            ivorn TEXT, objectid TEXT, payload BLOB, meta TEXT, status TEXT NOT NULL, stage TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, lease_until REAL,
            uncertain INTEGER NOT NULL DEFAULT 0, result TEXT, last_error TEXT, created REAL NOT NULL,
            updated REAL NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (route, status, next_attempt)",
        f"""CREATE TABLE IF NOT EXISTS {TNS_TABLE} (
            objectid TEXT PRIMARY KEY, route TEXT, ivorn TEXT, report_id TEXT, tns_name TEXT, status TEXT NOT NULL,
            created REAL NOT NULL, updated REAL NOT NULL)""",
        f"CREATE TABLE IF NOT EXISTS {PAYLOAD_TABLE} (ivorn TEXT PRIMARY KEY, xml BLOB NOT NULL, created REAL NOT NULL)",
    ]


def postgres_ddl(schema: str = "gateway") -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {schema}.{TABLE} (
            id bigserial PRIMARY KEY, key text NOT NULL UNIQUE, route text NOT NULL, kind text NOT NULL,
            ivorn text, objectid text, payload bytea, meta text, status text NOT NULL, stage text NOT NULL,
            attempts integer NOT NULL DEFAULT 0, next_attempt double precision NOT NULL,
            lease_until double precision, uncertain smallint NOT NULL DEFAULT 0, result text, last_error text,
            created double precision NOT NULL, updated double precision NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {schema}.{TABLE} (route, status, next_attempt)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.{TNS_TABLE} (
            objectid text PRIMARY KEY, route text, ivorn text, report_id text, tns_name text, status text NOT NULL,
            created double precision NOT NULL, updated double precision NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.{PAYLOAD_TABLE} (ivorn text PRIMARY KEY, xml bytea NOT NULL,
            created double precision NOT NULL)""",
    ]


def create_tables(database) -> None:
    """Create the outbox tables if missing (synchronously: called once at start)."""
    statements = sqlite_ddl() if database.backend == "sqlite" else postgres_ddl()

    def run(conn):
        for statement in statements:
            conn.execute(statement)
    database.run_write(run)


# ------------------------------------------------------------------------------------------------ the pieces


@dataclass
class Prepared:
    """What a destination wants stored for one event: the bytes to send and what it needs to send them.

    ``once_per_object``: queue only if this object was never queued for a TNS report before (``tns_report``).
    ``failed``: a reason when the event cannot be forwarded at all (stored as a failed row, for the operator).
    """

    key: str
    payload: Optional[bytes]  # None: the event's VOEvent (stored once per event, shared by its routes)
    meta: dict = field(default_factory=dict)
    objectid: Optional[str] = None
    once_per_object: bool = False
    failed: str = ""


@dataclass
class Item:
    """One claimed row, handed to a destination's ``deliver``."""

    id: int
    route: str
    key: str
    ivorn: str
    objectid: Optional[str]
    payload: bytes
    meta: dict
    attempts: int
    stage: str  # "send", or "poll" (TNS: the report was accepted, its reply is awaited)
    result: str
    uncertain: bool


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to. Build with the helpers below."""

    kind: str  # delivered | retry | failed | submitted | poll | throttled
    detail: str = ""
    result: str = ""
    after: Optional[float] = None  # seconds: the endpoint's own wait (throttled, poll), or a retry override
    uncertain: bool = False  # retry after an attempt the endpoint may have accepted
    pause: Optional[float] = None  # seconds the whole route should wait (the endpoint said its quota is used up)


def delivered(result: str = "") -> Outcome:
    return Outcome("delivered", result=result)


def retry(reason: str, uncertain: bool = False, after: Optional[float] = None) -> Outcome:
    return Outcome("retry", reason, after=after, uncertain=uncertain)


def failed(reason: str) -> Outcome:
    return Outcome("failed", reason)


def submitted(result: str, after: float) -> Outcome:
    return Outcome("submitted", result=result, after=after)


def poll_again(after: float, reason: str = "") -> Outcome:
    return Outcome("poll", reason, after=after)


def throttled(after: float, reason: str = "rate limited") -> Outcome:
    return Outcome("throttled", reason, after=after)


class Destination(Protocol):
    """One kind of endpoint. ``prepare`` runs on the reactor in the sink (keep it cheap); ``deliver`` returns a
    Deferred firing with an :class:`Outcome` (it may also fail: that counts as an uncertain retry)."""

    kind: str

    def prepare(self, event: Event, facts, route: str) -> Optional[Prepared]: ...

    def deliver(self, item: Item) -> defer.Deferred: ...


# ------------------------------------------------------------------------------------------------ DB operations


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Outbox:
    """The outbox table and the SQL on it; every method returns a Deferred (runs in the DB writer thread)."""

    def __init__(self, database, clock=None, lease: float = 60.0, retry_base: float = 2.0, retry_max: float = 300.0,
                 max_batch: int = 500):
        if clock is None:
            from twisted.internet import reactor as clock
        self.db, self.clock = database, clock
        self.lease, self.retry_base, self.retry_max, self.max_batch = lease, retry_base, retry_max, max_batch
        self.table = database.table(TABLE)
        self.tns_table = database.table(TNS_TABLE)
        self.payload_table = database.table(PAYLOAD_TABLE)
        self.voevent_table = database.table("voevent")
        self.p = database.placeholder
        self.listeners: list[Callable[[set[str]], None]] = []
        self._last_failure = None
        create_tables(database)

    # -- enqueue (group commit) -----------------------------------------------------------------------------

    def enqueue(self, rows: list[tuple[str, str, Prepared, Event]]) -> defer.Deferred:
        """Queue ``(route, kind, prepared, event)`` rows; fires once they are committed (in the transaction of
        this reactor turn's other writes: the store's batch among them)."""
        queued = self.db.write_item(self._insert, (rows, self.clock.seconds()))
        return queued.addCallbacks(self._notify, self._enqueue_failed)

    def _enqueue_failed(self, failure):
        # every event of a failed transaction gets the same Failure: log it once
        if failure is not self._last_failure:
            self._last_failure = failure
            log.failure("outbox write failed; the sources will not commit past its events", failure)
        return failure

    def _notify(self, routes: set[str]) -> None:
        for listener in self.listeners:
            listener(routes)

    def _insert(self, conn, queued: list[tuple[list, float]]) -> list[set[str]]:
        """Writer thread: the rows of each ``enqueue``; returns, per call, the routes that got new rows."""
        p = self.p
        insert = (f"INSERT INTO {self.table} (key, route, kind, ivorn, objectid, payload, meta, status, stage, "
                  f"attempts, next_attempt, uncertain, last_error, created, updated) "
                  f"VALUES ({', '.join([p] * 15)}) ON CONFLICT (key) DO NOTHING")
        claim_object = (f"INSERT INTO {self.tns_table} (objectid, route, ivorn, status, created, updated) "
                        f"VALUES ({p}, {p}, {p}, 'queued', {p}, {p}) ON CONFLICT (objectid) DO NOTHING")
        values, shared, queued_routes = [], {}, []
        for rows, now in queued:
            routes = set()
            for route, kind, prepared, event in rows:
                if prepared.once_per_object and not prepared.failed:
                    cursor = conn.execute(claim_object, (prepared.objectid, route, event.ivorn, now, now))
                    if cursor.rowcount == 0:
                        continue  # already queued or reported, by this route or another: once, ever
                status = "failed" if prepared.failed else "pending"
                if prepared.payload is None:
                    shared[event.ivorn] = (event.xml, now)
                values.append((prepared.key, route, kind, event.ivorn, prepared.objectid, prepared.payload,
                               _json(prepared.meta) if prepared.meta else None, status, "send", 0, now, 0,
                               prepared.failed or None, now, now))
                routes.add(route)
            queued_routes.append(routes)
        if shared:
            # the store's job usually ran just before in this transaction (the router hands it the event first)
            conn.cursor().executemany(
                f"INSERT INTO {self.payload_table} (ivorn, xml, created) SELECT {p}, {p}, {p} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.voevent_table} WHERE ivorn = {p}) ON CONFLICT (ivorn) DO NOTHING",
                [(i, x, t, i) for i, (x, t) in shared.items()])
        if values:
            conn.cursor().executemany(insert, values)
        return queued_routes

    # -- claim and record ---------------------------------------------------------------------------------------

    def claim(self, route: str, limit: int, lease: Optional[float] = None) -> defer.Deferred:
        """Fires with (items, next due time or None): up to ``limit`` due rows of ``route``, leased to us for
        ``lease`` seconds (longer than any attempt may take: an expired lease means "that process died")."""
        return self.db.write(self._claim, route, limit, self.clock.seconds(), lease or self.lease)

    def _claim(self, conn, route, limit, now, lease):
        p, t = self.p, self.table
        lock = " FOR UPDATE OF o SKIP LOCKED" if self.db.backend == "postgresql" else ""
        # two index range scans on (route, status, next_attempt), not one OR over every row of the route:
        # leases that ran out first (their process died), then pending rows that are due, oldest first
        select = (f"SELECT o.id, o.route, o.key, o.ivorn, o.objectid, o.payload, v.xml, x.xml, o.meta, "
                  f"o.attempts, o.stage, o.result, o.uncertain, o.status FROM {t} o "
                  f"LEFT JOIN {self.voevent_table} v ON o.payload IS NULL AND v.ivorn = o.ivorn "
                  f"LEFT JOIN {self.payload_table} x ON o.payload IS NULL AND v.ivorn IS NULL AND x.ivorn = o.ivorn "
                  f"WHERE o.route = {p} AND ")
        rows = conn.execute(select + f"o.status = 'sending' AND o.lease_until <= {p} ORDER BY o.lease_until, "
                                     f"o.id LIMIT {p}{lock}", (route, now, limit)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(select + f"o.status = 'pending' AND o.next_attempt <= {p} ORDER BY o.next_attempt, "
                                          f"o.id LIMIT {p}{lock}", (route, now, limit - len(rows))).fetchall()
        items = []
        for (id_, route_, key, ivorn, objectid, payload, stored, copied, meta, attempts, stage, result, uncertain,
             status) in rows:
            # a row still "sending" after its lease: its process died mid-delivery; the endpoint may have it
            uncertain = bool(uncertain) or (status == "sending" and stage == "send")
            attempts = attempts + 1 if stage == "send" else attempts
            conn.execute(f"UPDATE {t} SET status = 'sending', lease_until = {p}, attempts = {p}, uncertain = {p}, "
                         f"updated = {p} WHERE id = {p}", (now + lease, attempts, int(uncertain), now, id_))
            payload = next((value for value in (payload, stored, copied) if value is not None), None)
            if isinstance(payload, str):  # the store keeps the VOEvent as text
                payload = payload.encode("utf-8")
            items.append(Item(id_, route_, key, ivorn, objectid, bytes(payload) if payload is not None else b"",
                              json.loads(meta) if meta else {}, attempts, stage, result or "", uncertain))
        next_due = None
        if len(items) < limit:
            # two index lookups (route, status, next_attempt), not a scan of every pending row
            pending = conn.execute(f"SELECT MIN(next_attempt) FROM {t} WHERE route = {p} AND status = 'pending'",
                                   (route,)).fetchone()[0]
            leased = conn.execute(f"SELECT MIN(lease_until) FROM {t} WHERE route = {p} AND status = 'sending'",
                                  (route,)).fetchone()[0]
            due = [when for when in (pending, leased) if when is not None]
            next_due = min(due) if due else None
        return items, next_due

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter (half fixed, half random)."""
        delay = min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def record(self, item: Item, outcome: Outcome, max_attempts: int,
               hook: Optional[Callable] = None) -> defer.Deferred:
        """Store what became of ``item``; results from one reactor turn share a transaction.

        ``hook(conn, database, item, outcome)`` runs inside that transaction (TNS stores the name it got)."""
        return self.db.write_item(self._store_results, (item, outcome, max_attempts, hook, self.clock.seconds())
                                  ).addErrback(self._record_failed, item)

    @staticmethod
    def _record_failed(failure, item: Item) -> None:
        # the row stays leased: it is claimed again (uncertain) once the lease expires
        if failure.check(DatabaseClosed):
            log.info("outbox: {key} finished after the alert DB closed; it stays leased", key=item.key)
        else:
            log.failure("outbox: recording the result of {key} failed", failure, key=item.key)

    def _store_results(self, conn, results) -> list[None]:
        p, t = self.p, self.table
        for item, outcome, max_attempts, hook, now in results:
            kind = outcome.kind
            if kind == "retry" and item.attempts >= max_attempts:
                kind, detail = "failed", f"gave up after {item.attempts} attempts: {outcome.detail}"
            else:
                detail = outcome.detail
            if kind == "delivered":
                conn.execute(f"UPDATE {t} SET status = 'sent', result = {p}, last_error = NULL, lease_until = NULL, "
                             f"uncertain = 0, updated = {p} WHERE id = {p}", (outcome.result or item.result, now, item.id))
            elif kind == "failed":
                conn.execute(f"UPDATE {t} SET status = 'failed', last_error = {p}, lease_until = NULL, updated = {p} "
                             f"WHERE id = {p}", (detail, now, item.id))
            elif kind == "submitted":
                conn.execute(f"UPDATE {t} SET status = 'pending', stage = 'poll', result = {p}, uncertain = 0, "
                             f"last_error = NULL, next_attempt = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (outcome.result, now + (outcome.after or 0.0), now, item.id))
            elif kind in ("poll", "throttled"):
                # not the item's fault: the attempt is given back
                attempts = item.attempts - 1 if (kind == "throttled" and item.stage == "send") else item.attempts
                conn.execute(f"UPDATE {t} SET status = 'pending', attempts = {p}, next_attempt = {p}, "
                             f"last_error = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (max(0, attempts), now + (outcome.after or 0.0), detail or None, now, item.id))
            else:  # retry
                wait = outcome.after if outcome.after is not None else self.backoff(item.attempts)
                conn.execute(f"UPDATE {t} SET status = 'pending', next_attempt = {p}, last_error = {p}, "
                             f"uncertain = {p}, lease_until = NULL, updated = {p} WHERE id = {p}",
                             (now + wait, detail, int(item.uncertain or outcome.uncertain), now, item.id))
            if hook is not None:
                hook(conn, self.db, item, Outcome(kind, detail, outcome.result, outcome.after, outcome.uncertain))
        return [None] * len(results)

    # -- maintenance ------------------------------------------------------------------------------------------

    def purge(self, older_than: float) -> defer.Deferred:
        """Delete rows sent or dropped more than ``older_than`` seconds ago (tns_report keeps the record)."""
        cutoff = self.clock.seconds() - older_than
        p, t, x = self.p, self.table, self.payload_table

        def purge(conn):
            count = conn.execute(f"DELETE FROM {t} WHERE status IN ('sent', 'dropped') AND updated < {p}",
                                 (cutoff,)).rowcount
            conn.execute(f"DELETE FROM {x} WHERE created < {p} AND NOT EXISTS (SELECT 1 FROM {t} o WHERE "
                         f"o.ivorn = {x}.ivorn AND o.status IN ('pending', 'sending', 'failed'))", (cutoff,))
            return count
        return self.db.write(purge)


# ------------------------------------------------------------------------------------------------ the sink


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


# ------------------------------------------------------------------------------------------------ the worker


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
        return int(self.tokens)

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
        if clock is None:
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
        self.outbox.claim(self.name, limit, self.lease).addCallbacks(self._claimed, self._claim_failed, callbackArgs=(limit,))

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


# ------------------------------------------------------------------------------------------------ operator tools


COLUMNS = ("id", "route", "kind", "status", "stage", "attempts", "next_attempt", "uncertain", "key", "ivorn",
           "objectid", "result", "last_error", "created", "updated")


def list_items(database, statuses: Iterable[str] = ("pending", "sending", "failed"), route: Optional[str] = None,
               limit: int = 100) -> list[dict[str, Any]]:
    """Rows of the outbox (synchronously: for the CLI), oldest first."""
    create_tables(database)
    statuses = list(statuses)
    p, t = database.placeholder, database.table(TABLE)
    where = [f"status IN ({', '.join([p] * len(statuses))})"]
    args: list = list(statuses)
    if route:
        where.append(f"route = {p}")
        args.append(route)
    sql = f"SELECT {', '.join(COLUMNS)} FROM {t} WHERE {' AND '.join(where)} ORDER BY id LIMIT {p}"
    return database.run_write(lambda conn: [dict(zip(COLUMNS, row)) for row in conn.execute(sql, (*args, limit))])


def counts(database) -> dict[tuple[str, str], int]:
    """(route, status) -> number of rows."""
    create_tables(database)
    t = database.table(TABLE)
    return database.run_write(lambda conn: {(r, s): n for r, s, n in conn.execute(
        f"SELECT route, status, COUNT(*) FROM {t} GROUP BY route, status ORDER BY route, status")})


def retry_items(database, ids: Iterable[int] = (), all_failed: bool = False, route: Optional[str] = None) -> int:
    """Make failed (or dropped) rows pending again, attempts reset; returns how many."""
    return _set_status(database, ids, all_failed, route, "pending", ("failed", "dropped"))


def drop_items(database, ids: Iterable[int] = (), all_failed: bool = False, route: Optional[str] = None) -> int:
    """Mark pending or failed rows dropped: never sent; returns how many."""
    return _set_status(database, ids, all_failed, route, "dropped", ("pending", "failed"))


def _set_status(database, ids, all_failed, route, status, allowed) -> int:
    import time

    create_tables(database)
    p, t = database.placeholder, database.table(TABLE)
    ids = [int(i) for i in ids]
    where = [f"status IN ({', '.join([p] * len(allowed))})"]
    args: list = list(allowed)
    if ids:
        where.append(f"id IN ({', '.join([p] * len(ids))})")
        args.extend(ids)
    elif all_failed:
        where.append("status = 'failed'")
    else:
        return 0
    if route:
        where.append(f"route = {p}")
        args.append(route)
    now = time.time()
    extra = ", attempts = 0, uncertain = uncertain, last_error = NULL" if status == "pending" else ""

    def run(conn):
        count = conn.execute(f"UPDATE {t} SET status = {p}, next_attempt = {p}, updated = {p}{extra} "
                             f"WHERE {' AND '.join(where)}", (status, now, now, *args)).rowcount
        if status == "pending":  # a TNS report the operator retries is queued again
            conn.execute(f"UPDATE {database.table(TNS_TABLE)} SET status = 'queued', updated = {p} WHERE objectid IN "
                         f"(SELECT objectid FROM {t} WHERE kind = 'tns' AND status = 'pending' AND objectid IS NOT NULL)"
                         f" AND status = 'failed'", (now,))
        return count
    return database.run_write(run)
