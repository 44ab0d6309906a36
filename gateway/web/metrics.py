"""``/metrics``: the gateway's counts in the Prometheus text format, from a registry of its own (several gateways
may run in one process: tests do).

Most values are read from the parts' own state when scraped (pipeline counters, the broker's subscribers and
their buffers, route workers, sources), so nothing on the hot path pays for them; the outbox's depth and age are
read from the alert DB on a reader thread per scrape. Only the latencies are observed as they happen:
arrival -> broadcast (the broker's flush), arrival -> queryable (the store's commit) and TAP query durations.
"""

from __future__ import annotations

from typing import Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from gateway import __version__
from gateway.event import Event
from gateway.forward.outbox.store import backlog
from gateway.web.common import Reply, text_response

log = Logger()

#: seconds; arrival -> broadcast is milliseconds when all is well, seconds under a burst
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class GatewayMetrics:
    """The registry of one gateway. ``parts`` is the gateway (``service.Gateway``): its ``pipeline``, ``store``,
    ``broker``, ``forwarding``, ``sources``, ``database``, ``recent`` and ``started`` are read when scraped."""

    def __init__(self, parts, clock):
        self.parts, self.clock = parts, clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.broadcast_latency = Histogram(
            "vogateway_broadcast_latency_seconds", "From an event's arrival to its broadcast to the VTP subscribers",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queryable_latency = Histogram(
            "vogateway_queryable_latency_seconds", "From an event's arrival to the commit that makes it queryable "
            "over TAP", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tap_seconds = Histogram("vogateway_tap_query_seconds", "TAP queries (sync and async) and how long they "
                                     "ran, by outcome", ["outcome"], buckets=TAP_BUCKETS, registry=self.registry)
        self.outbox: dict[str, tuple[int, Optional[float], int]] = {}  # route -> backlog, as last read
        self.registry.register(_StateCollector(self))

    # -- observed as it happens ----------------------------------------------------------------------------------

    def broadcast(self, events: list[Event], now: float) -> None:
        """The broker's flush listener."""
        for event in events:
            self.broadcast_latency.observe(max(0.0, now - event.received.timestamp()))

    def tap_query(self, outcome: str, seconds: float) -> None:
        """The TAP runner's observer (runs in the query's thread: prometheus_client's metrics are thread-safe)."""
        self.tap_seconds.labels(outcome).observe(seconds)

    def timed_store(self, store):
        """``store`` as a router sink that also observes arrival -> queryable when its Deferred fires."""
        return _TimedSink(store, self)

    # -- read when scraped ---------------------------------------------------------------------------------------

    def refresh(self) -> defer.Deferred:
        """Read what lives in the alert DB (the outbox backlog); fires when done, whether it could or not."""
        forwarding = getattr(self.parts, "forwarding", None)
        if forwarding is None:
            return defer.succeed(None)

        def read(found):
            self.outbox = found

        def failed(failure):
            log.warn("metrics: the outbox could not be read ({why}); its last values are shown",
                     why=failure.getErrorMessage())
        return backlog(self.parts.database).addCallbacks(read, failed)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _TimedSink:
    def __init__(self, sink, metrics: GatewayMetrics):
        self.sink, self.metrics = sink, metrics

    def accept(self, event: Event):
        accepted = self.sink.accept(event)
        if accepted is not None:
            accepted.addCallback(self._committed, event)
        return accepted

    def _committed(self, result, event: Event):
        now = self.metrics.clock.seconds()
        self.metrics.queryable_latency.observe(max(0.0, now - event.received.timestamp()))
        return result

    def __getattr__(self, name):  # the store's lookups (has_ivorn, cutout, close) as they are
        return getattr(self.sink, name)


def _counter(name: str, documentation: str, labels=(), values=()) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values:
        family.add_metric(list(label_values), value)
    return family


def _gauge(name: str, documentation: str, labels=(), values=()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values:
        family.add_metric(list(label_values), value)
    return family


def kafka_lags(source) -> dict[tuple[str, int], int]:
    """(topic, partition) -> messages not handled yet: the high watermark minus the position handled (or, for a
    partition with nothing handled since start, the fetch position), where both are known."""
    lags = {}
    for key, high in source.high_watermarks.items():
        position = source.positions.get(key, source.fetch_positions.get(key))
        if position is not None:
            lags[key] = max(0, high - position)
    return lags


class _StateCollector:
    """Turns the parts' own counters into metric families, at scrape time."""

    def __init__(self, metrics: GatewayMetrics):
        self.metrics = metrics

    def collect(self):
        parts = self.metrics.parts
        yield _gauge("vogateway_info", "Version of this gateway", ["version"], [((__version__,), 1)])
        yield _gauge("vogateway_uptime_seconds", "Seconds since this gateway started", values=[
            ((), max(0.0, self.metrics.clock.seconds() - parts.started))])
        yield from self._pipeline(parts)
        yield from self._sources(parts)
        yield from self._vtp(getattr(parts, "broker", None))
        yield from self._forward(getattr(parts, "forwarding", None))

    def _pipeline(self, parts):
        stats, store = parts.pipeline.stats, parts.store
        yield _counter("vogateway_alerts_in", "Events that entered routing (decoded or parsed, not duplicates), "
                       "by source", ["source"], [((s,), n) for s, n in sorted(parts.recent.by_source.items())])
        yield _counter("vogateway_rejects", "Packets refused (undecodable, unknown schema, bad VOEvent...), by "
                       "reason", ["reason"], [((why,), n) for why, n in sorted(stats.rejected.items())])
        yield _counter("vogateway_duplicates", "Events dropped as already routed (same IVORN)",
                       values=[((), stats.duplicates)])
        out = [(("store",), store.stored)]
        broker = getattr(parts, "broker", None)
        if broker is not None:
            out.append((("vtp",), broker.deliveries))
        forwarding = getattr(parts, "forwarding", None)
        for name, worker in sorted((forwarding.workers if forwarding else {}).items()):
            out.append(((f"forward:{name}",), worker.stats.get("delivered", 0)))
        yield _counter("vogateway_alerts_out", "Events each sink took: stored, sent to VTP subscribers (one per "
                       "subscriber), delivered by a forward route", ["sink"], out)
        yield _counter("vogateway_store_failures", "Events the alert DB could not store", values=[((), store.failed)])

    def _sources(self, parts):
        files, kafka_received, positions, lags = [], [], [], []
        for source in parts.sources:
            if hasattr(source, "files_read"):
                files.append(((", ".join(str(p) for p in source.paths),), source.files_read))
            if hasattr(source, "positions"):
                topics = ",".join(source.topics)
                kafka_received.append(((topics,), source.received))
                positions += [((topic, str(partition)), offset)
                              for (topic, partition), offset in sorted(source.positions.items())]
                lags += [((topic, str(partition)), lag) for (topic, partition), lag in sorted(kafka_lags(source).items())]
        yield _counter("vogateway_source_files_read", "Input files read to the end, by file source", ["paths"], files)
        yield _counter("vogateway_kafka_messages", "Kafka messages received, by source", ["topics"], kafka_received)
        yield _gauge("vogateway_kafka_position", "Next offset to read, as far as the pipeline has handled them "
                     "(committed shortly after)", ["topic", "partition"], positions)
        yield _gauge("vogateway_kafka_lag", "Messages in the partition not handled yet (high watermark minus "
                     "position, as the consumer last saw them)", ["topic", "partition"], lags)

    def _vtp(self, broker):
        if broker is None:
            return
        subscribers = sorted(broker.subscribers, key=lambda s: s.peer())
        yield _gauge("vogateway_vtp_subscribers", "VTP subscribers connected", values=[((), len(subscribers))])
        for name, attribute, text in (("buffer_frames", "queued_frames", "Frames waiting in the send buffer"),
                                      ("buffer_bytes", "queued_bytes", "Bytes waiting in the send buffer")):
            yield _gauge(f"vogateway_vtp_subscriber_{name}", f"{text}, by subscriber", ["peer"],
                         [((s.peer(),), getattr(s, attribute)) for s in subscribers])
        yield _gauge("vogateway_vtp_subscriber_unacked", "Events sent and not acked yet, by subscriber", ["peer"],
                     [((s.peer(),), len(s.outstanding)) for s in subscribers])
        departed = broker.departed
        for name, attribute, text in (("sent", "sent", "Events sent to subscribers"),
                                      ("acks", "acked", "Acks received for events sent"),
                                      ("naks", "naked", "Naks received for events sent"),
                                      ("missed", "missed", "Events sent or queued that were never acked")):
            total = departed[attribute] + sum(getattr(s, attribute) for s in subscribers)
            yield _counter(f"vogateway_vtp_{name}", f"{text} (all subscribers, past and present)",
                           values=[((), total)])
        yield _counter("vogateway_vtp_events", "Events handed to the VTP broker", values=[((), broker.events)])
        yield _counter("vogateway_vtp_subscribers_dropped", "Subscribers disconnected, by why", ["why"],
                       [(("slow",), broker.dropped_slow), (("silent",), broker.dropped_silent),
                        (("refused",), broker.refused)])

    def _forward(self, forwarding):
        if forwarding is None:
            return
        now, backlog_ = self.metrics.clock.seconds(), self.metrics.outbox
        names = sorted(forwarding.workers)
        yield _gauge("vogateway_outbox_depth", "Forwards waiting in the outbox (pending or being sent), by route",
                     ["route"], [((n,), backlog_.get(n, (0, None, 0))[0]) for n in names])
        yield _gauge("vogateway_outbox_age_seconds", "Age of the oldest forward waiting in the outbox (0: none), "
                     "by route", ["route"],
                     [((n,), max(0.0, now - oldest) if (oldest := backlog_.get(n, (0, None, 0))[1]) else 0.0)
                      for n in names])
        yield _gauge("vogateway_outbox_failed", "Forwards that failed for good (vogateway outbox retry), by route",
                     ["route"], [((n,), backlog_.get(n, (0, None, 0))[2]) for n in names])
        yield _counter("vogateway_forward_attempts", "Delivery attempts by route and outcome", ["route", "outcome"],
                       [((n, kind), count) for n in names
                        for kind, count in sorted(forwarding.workers[n].stats.items())])


class MetricsResource(resource.Resource):
    """GET /metrics: the Prometheus text format, version 0.0.4."""

    isLeaf = True

    def __init__(self, metrics: GatewayMetrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request):
        reply = Reply(request)

        def answer(_):
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
            reply.send(self.metrics.text())

        self.metrics.refresh().addCallback(answer).addErrback(
            lambda failure: log.failure("metrics", failure) or reply.send(
                text_response(request, 500, "the metrics could not be made; the gateway's log says why")))
        return server.NOT_DONE_YET
