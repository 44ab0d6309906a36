"""The worker pool: the same events as building in-process, in arrival order, and a dead worker loses nothing."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from gateway.alerts.files import DirectorySource
from gateway.alerts.packets import BlockChanged, Packet, container_packets, decode_packet
from gateway.alerts.schemas import SchemaLibrary
from gateway.pipeline import Pipeline, Router
from gateway.pool import WorkerDied, WorkerPool, WorkerSettings
from gateway.resources import SAMPLES
from gateway.voevent.build import Converter
from gateway.voevent.parse import parse_event

IDENTITY = ("vogateway.local", "alerts", "http://127.0.0.1:8080")


class Sink:
    def __init__(self):
        self.events = []

    def accept(self, event):
        self.events.append(event)


def sample_packets() -> list[Packet]:
    return [p for path in sorted(SAMPLES.rglob("*.avro")) for p in container_packets(path)]


def comparable(events):
    """What must not depend on where an event was built (Who/Date and received are the build time)."""
    return [(e.ivorn, e.role, _undated(e.xml), e.view.object_key, e.view.mjd_tai) for e in events]


def _undated(xml: bytes) -> bytes:
    start = xml.index(b"<Date>")
    return xml[:start] + xml[xml.index(b"</Date>", start):]


@pytest.fixture
def pool():
    workers = WorkerPool(WorkerSettings(*IDENTITY, raw_fields=frozenset({"diaSource"})), 2, reactor, batch_size=3)
    yield workers
    pytest_twisted.blockon(workers.stop())


def run_pipeline(packets, pool=None):
    converter = Converter(*IDENTITY)
    library = SchemaLibrary()
    sink = Sink()
    pipeline = Pipeline(converter, parse_event, Router([sink]), decode=lambda p: decode_packet(p, library),
                        pool=pool, link=converter.link)
    return pipeline, sink, defer.gatherResults([pipeline.ingest_packet(p) for p in packets])


@pytest_twisted.inlineCallbacks
def test_pooled_events_equal_events_built_in_process_in_the_same_order(pool):
    packets = sample_packets() * 2  # the second round: duplicates, and every object cited
    yield pool.start()
    here, here_sink, done_here = run_pipeline(packets)
    yield done_here
    pooled, pooled_sink, done_pooled = run_pipeline(packets, pool)
    yield done_pooled
    assert pool.batches > 2  # the work really went out in several batches, to two workers
    assert comparable(pooled_sink.events) == comparable(here_sink.events)
    assert pooled.stats.summary() == here.stats.summary()
    assert any(b"<Citations>" in e.xml for e in pooled_sink.events)
    # only the fields the filters need cross back; the store's rows were made in the worker
    rubin = next(e for e in pooled_sink.events if e.view.survey == "rubin")
    assert set(rubin.alert.record) == {"diaSource"} and rubin.rows.diasource and rubin.view.detection.extra == {}


@pytest_twisted.inlineCallbacks
def test_results_come_back_in_submission_order_whichever_worker_is_first(pool):
    packets = sample_packets()
    yield pool.start()
    results = []
    deferreds = [pool.submit(p).addCallback(lambda items, i=i: results.append(i)) for i, p in enumerate(packets)]
    yield defer.gatherResults(deferreds)
    assert results == list(range(len(packets)))


@pytest_twisted.inlineCallbacks
def test_a_killed_worker_fails_its_batches_and_the_pool_starts_again(pool):
    yield pool.start()
    victim = next(iter(pool._executor._processes))
    packets = sample_packets()
    waiting = [pool.submit(p) for p in packets]
    os.kill(victim, signal.SIGKILL)
    outcomes = yield defer.DeferredList(waiting, consumeErrors=True)
    failed = [o for ok, o in outcomes if not ok]
    assert failed and all(f.check(WorkerDied) for f in failed)
    # what was not built is not lost: the source did not commit it, and the pool builds it again
    again = yield defer.gatherResults([pool.submit(p) for p in packets])
    assert sum(len(items) for items in again) == sum(p.count for p in packets)
    assert pool.deaths == 1


@pytest_twisted.inlineCallbacks
def test_a_directory_source_feeds_the_pool_blocks_not_alerts(pool, tmp_path):
    yield pool.start()
    converter = Converter(*IDENTITY)
    sink = Sink()
    pipeline = Pipeline(converter, parse_event, Router([sink]), pool=pool, link=converter.link)
    source = DirectorySource([SAMPLES], pipeline, tmp_path / "state")
    source.startService()
    yield source.finished
    source.stopService()
    expected = sum(p.count for p in sample_packets())
    assert len(sink.events) + pipeline.stats.rejected_total == expected
    assert len(sink.events) == len({e.ivorn for e in sink.events}) > 100


@pytest_twisted.inlineCallbacks
def test_a_block_whose_file_changed_fails_alone_and_the_pool_goes_on(pool, tmp_path):
    """Workers read blocks by reference: a file rewritten after slicing fails its packets (the source reads the
    file again), never decodes the other bytes, and kills no worker."""
    yield pool.start()
    path = tmp_path / "alerts.avro"
    path.write_bytes((SAMPLES / "rubin" / "11.1" / "simulated.avro").read_bytes())
    packets = list(container_packets(path, by_reference=True))
    good = yield pool.submit(packets[0])
    assert good and good[0].ivorn
    path.write_bytes(b"Obj\x01" + b"\x00" * (path.stat().st_size - 4))  # same file, other bytes
    outcome = yield defer.DeferredList([pool.submit(packets[0])], consumeErrors=True)
    [(ok, failure)] = outcome
    assert not ok and failure.check(BlockChanged), failure
    assert "changed while its alerts were read" in failure.getErrorMessage()
    assert pool.deaths == 0
    again = yield pool.submit(sample_packets()[0])
    assert again


def test_a_worker_keeps_no_file_open_between_batches(tmp_path):
    """A file deleted once read must give its space back: the worker closes what it read a batch from."""
    from gateway.alerts import packets as packets_module
    from gateway.pool.work import Worker

    path = tmp_path / "alerts.avro"
    path.write_bytes((SAMPLES / "rubin" / "11.1" / "simulated.avro").read_bytes())
    worker = Worker(WorkerSettings(*IDENTITY))
    built = worker.build(list(container_packets(path, by_reference=True)))
    assert built and all(items for items in built)
    assert packets_module._open_blocks == {}
    assert not [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve())]


@pytest_twisted.inlineCallbacks
def test_with_a_pack_directory_the_workers_write_the_cutouts_and_only_their_places_come_back(tmp_path):
    from gateway.alerts import fields
    from gateway.store.packs import CutoutPacks

    settings = WorkerSettings(*IDENTITY, cutout_dir=str(tmp_path / "packs"))
    workers = WorkerPool(settings, 2, reactor, batch_size=2)
    try:
        packets = [p for p in sample_packets() if p.source.endswith("11.1/simulated.avro")]
        built = yield defer.gatherResults([workers.submit(p) for p in packets])
    finally:
        yield workers.stop()
    events = [e for items in built for e in items]
    library = SchemaLibrary()
    shipped = {(fields.alert_id(a), kind): content for p in packets for a in decode_packet(p, library)
               for kind, content in fields.cutouts(a).items()}
    assert events and shipped
    assert all(e.rows.cutout == [] for e in events)
    located = [row for e in events for row in e.rows.cutout_pack]
    assert len(located) == len(shipped)
    reader = CutoutPacks(tmp_path / "packs")
    assert {(row[0], row[1]): reader.read(*row[2:]) for row in located} == shipped
    assert len({row[2] for row in located}) <= 2  # at most a pack per worker
