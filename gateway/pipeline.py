"""The pipeline, top to bottom: alerts -> VOEvent -> router -> sinks.

Sources call :meth:`Pipeline.ingest_packet` (undecoded Avro: built in the worker pool when there is one),
:meth:`Pipeline.ingest_alert` (decoded Avro) or :meth:`Pipeline.ingest_voevent` (XML that arrived over VTP or
Kafka). Each returns a Deferred that fires once every sink has accepted the event(s); a source commits its
position (Kafka offset, file checkpoint, VTP ack) only then.

``recheck=True`` (a file read again after a crash cut its first reading short; a Kafka partition's first messages
after it is assigned) also asks the store (``stored``)
before routing each event: what the store committed then is counted as a duplicate, not broadcast again. Only
those files pay for the question; everything else is deduplicated in memory.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from gateway.alerts import Alert, AlertError
from gateway.alerts.packets import Packet
from gateway.errors import in_words
from gateway.event import Event

if TYPE_CHECKING:
    from gateway.pool import WorkerPool

log = Logger()


class Sink(Protocol):
    """Anything that takes events: ``accept`` returns None or a Deferred that fires when the event is safe."""

    def accept(self, event: Event) -> Optional[defer.Deferred]: ...


class SeenIvorns:
    """A bounded, expiring memory of IVORNs already routed (dedup until the store remembers for us)."""

    def __init__(self, capacity: int = 100_000, ttl: float = 86_400.0, clock=None):
        from twisted.internet import reactor

        self._clock = clock or reactor
        self._capacity, self._ttl = capacity, ttl
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, ivorn: str) -> bool:
        """Remember ``ivorn``; False if it was already there (and not expired)."""
        now = self._clock.seconds()
        while self._seen:
            oldest, when = next(iter(self._seen.items()))
            if now - when <= self._ttl and len(self._seen) < self._capacity:
                break
            self._seen.popitem(last=False)
        if ivorn in self._seen:
            return False
        self._seen[ivorn] = now
        return True

    def forget(self, ivorn: str) -> None:
        self._seen.pop(ivorn, None)

    def __contains__(self, ivorn: str) -> bool:
        when = self._seen.get(ivorn)
        return when is not None and self._clock.seconds() - when <= self._ttl

    def __len__(self) -> int:
        return len(self._seen)


class Router:
    """Hands every event to every sink; fires when all of them accepted it."""

    def __init__(self, sinks=()):
        self.sinks: list[Sink] = list(sinks)

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def publish(self, event: Event) -> defer.Deferred:
        """Fires with ``event`` once every sink accepted it; fails with the first failure of a sink."""
        waiting = []
        for sink in self.sinks:
            try:
                accepted = sink.accept(event)
            except Exception:  # a sink bug fails this event, as a failed Deferred would
                accepted = defer.fail()
            if accepted is not None:  # None: nothing to wait for
                waiting.append(accepted)
        if len(waiting) == 1:  # the usual case, the alert DB alone: no DeferredList per event
            return waiting[0].addCallback(lambda _: event)
        return _all(waiting).addCallback(lambda _: event)


class Stats:
    """What the pipeline did, for logs and the CLI summary."""

    def __init__(self):
        self.converted = 0
        self.duplicates = 0
        self.rejected: dict[str, int] = {}

    def refuse(self, origin: str, reason: str) -> None:
        """Count and log a packet a source refused itself (e.g. a VOEvent of an unknown role)."""
        self.reject(AlertError(origin, None, reason))

    def reject(self, error: AlertError) -> None:
        """Count a rejection under its kind: the reason up to the first colon ("unknown schema id", ...)."""
        kind = error.reason.split(":")[0]
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        text = f"{self.converted} converted, {self.duplicates} duplicates, {self.rejected_total} rejected"
        if self.rejected:
            text += " (" + "; ".join(f"{n} × {why}" for why, n in sorted(self.rejected.items())) + ")"
        return text


class Pipeline:
    """Decoded alerts and incoming VOEvents become Events, deduplicated by IVORN, and go to the router.

    ``convert`` turns an :class:`Alert` into an :class:`Event` (``voevent.build.Converter``); ``parse``
    turns VOEvent bytes into an Event (``voevent.parse.parse_event``).
    """

    def __init__(self, convert: Callable[[Alert], Event], parse: Callable[..., Event], router: Router,
                 seen: Optional[SeenIvorns] = None, decode: Optional[Callable[[Packet], list]] = None,
                 pool: Optional[WorkerPool] = None, link: Optional[Callable[[Event], Event]] = None,
                 stored: Optional[Callable[[str], object]] = None):
        """``decode``: packet -> its alerts and AlertErrors, to build packets here; ``pool`` builds them in worker
        processes instead, and ``link`` (``Converter.link``: Citations) finishes what the pool prepared.
        ``stored(ivorn) -> bool | Deferred[bool]`` (the store's ``has_ivorn``) answers rechecks."""
        self.convert, self.parse, self.router = convert, parse, router
        self.seen = seen if seen is not None else SeenIvorns()
        self.decode, self.pool, self.link, self.stored = decode, pool, link, stored
        self.stats = Stats()
        self._checks: deque[list] = deque()  # rechecked events waiting for the store's answer or their turn
        self._draining = False

    def ingest_alert(self, alert: Alert, recheck: bool = False) -> defer.Deferred:
        """Convert and route one alert. Fires with the Event (None if rejected or a duplicate)."""
        try:
            event = self.convert(alert)
        except AlertError as error:
            return defer.succeed(self.reject(error))
        except Exception as error:  # a converter bug must not stop the stream; it is counted and logged
            reason = f"conversion failed: {in_words(error)} (a gateway bug; please report it)"
            return defer.succeed(self.reject(AlertError(alert.source, alert.position, reason)))
        return self._route(event, recheck)

    def ingest_packet(self, packet: Packet, recheck: bool = False) -> defer.Deferred:
        """Decode, build and route the alerts of one packet, in the order packets came. Fires when all are routed
        (with the number of events routed); fails when a sink or the worker pool failed them."""
        if self.pool is None:
            routed = [defer.succeed(self.reject(item)) if isinstance(item, AlertError)
                      else self.ingest_alert(item, recheck) for item in self.decode(packet)]
            return _all(routed)
        return self.pool.submit(packet).addCallback(self._route_prepared, recheck)

    def _route_prepared(self, items: list, recheck: bool = False) -> defer.Deferred:
        routed = []
        for item in items:
            if isinstance(item, AlertError):
                self.reject(item)
                continue
            try:
                event = self.link(item)
            except AlertError as error:
                self.reject(error)
                continue
            routed.append(self._route(event, recheck))
        return _all(routed)

    def ingest_voevent(self, xml: bytes, origin: str, recheck: bool = False) -> defer.Deferred:
        """Parse (safely) and route one VOEvent that arrived as XML. Fires with the Event or None."""
        try:
            event = self.parse(xml, origin=origin)
        except AlertError as error:
            return defer.succeed(self.reject(error))
        except ValueError as error:
            return defer.succeed(self.reject(AlertError(origin, None, str(error))))
        return self._route(event, recheck)

    def ingest_event(self, event: Event) -> defer.Deferred:
        """Route an Event a source built itself (the VTP receiver, which has parsed the XML already)."""
        return self._route(event)

    def reject(self, error: AlertError) -> None:
        """Count and log a packet that could not be decoded, converted or parsed."""
        self.stats.reject(error)
        log.warn("rejected {error}", error=str(error))

    def _route(self, event: Event, recheck: bool = False) -> defer.Deferred:
        if not self.seen.add(event.ivorn):
            self._duplicate(event)
            return defer.succeed(None)
        if recheck and self.stored is not None:
            return self._route_unless_stored(event)
        if self._checks:  # rechecked events before it still wait for the store: it waits its turn behind them
            entry = self._in_line(event, known=False)
            self._drain_checks()
            return entry[2]
        return self._publish(event)

    def _in_line(self, event: Event, known: Optional[bool]) -> list:
        """Queue ``event`` behind the rechecked events before it: [event, what the store says of it (None: not
        answered yet), its outcome (fired in its turn, by :meth:`_drain_checks`)]."""
        entry = [event, known, defer.Deferred()]
        self._checks.append(entry)
        return entry

    def _duplicate(self, event: Event, where: str = "") -> None:
        self.stats.duplicates += 1
        log.debug("duplicate {ivorn} from {origin}{where}, not routed again", ivorn=event.ivorn, origin=event.origin,
                  where=where)

    def _route_unless_stored(self, event: Event) -> defer.Deferred:
        """Ask the store about ``event`` (at once), and route it, if the store does not have it, in its turn: after
        every rechecked event before it, so the order of arrival is kept whatever order the answers come in."""
        entry = self._in_line(event, known=None)

        def unknown(failure):  # better sent twice than lost: route it, and say why
            log.warn("cannot ask the alert DB about {ivorn} ({why}); routing it", ivorn=event.ivorn,
                     why=failure.getErrorMessage())
            return False

        def answered(known):
            entry[1] = bool(known)
            self._drain_checks()

        defer.maybeDeferred(self.stored, event.ivorn).addErrback(unknown).addCallback(answered)
        return entry[2]

    def _drain_checks(self) -> None:
        if self._draining:  # a callback below led here again: the loop that is running takes it
            return
        self._draining = True
        try:
            while self._checks and self._checks[0][1] is not None:
                event, known, outcome = self._checks.popleft()
                if known:
                    self._duplicate(event, " (in the alert DB)")
                    outcome.callback(None)
                else:
                    self._publish(event).chainDeferred(outcome)
        finally:
            self._draining = False

    def _publish(self, event: Event) -> defer.Deferred:
        self.stats.converted += 1

        def forget(failure):
            # a sink failed: the source will not commit, so the event may come again and must not be a "duplicate"
            self.seen.forget(event.ivorn)
            return failure

        return self.router.publish(event).addErrback(forget)


def _all(routed: list) -> defer.Deferred:
    """Fires with how many of ``routed`` became events once all fired; fails with the first failure."""
    if len(routed) == 1:  # a packet of one alert (a Kafka message, most container blocks of rich alerts)
        return routed[0].addCallback(lambda event: int(event is not None))
    done = defer.gatherResults(routed, consumeErrors=True)
    done.addCallback(lambda events: sum(1 for e in events if e is not None))
    return done.addErrback(lambda failure: failure.value.subFailure if failure.check(defer.FirstError) else failure)
