"""Memory does not grow with the size of an input: a file three times larger peaks within 20 % of a smaller one.

Both files are larger than every bound on the way (alerts in flight, the store's batch), the alerts are rich
(65 kB of cutouts each, a light curve), and everything real runs: the directory source, the pipeline, the
VOEvent builder, the SQLite store. tracemalloc counts what Python allocates in every thread of this process.

The memories that are meant to grow with the stream up to a bound (IVORNs seen, each object's latest VOEvent for
Citations, detection ids stored: sized for 100,000s of objects in production) are given small bounds here, so
that the measurement sees anything else that would grow.
"""

from __future__ import annotations

import os
import tracemalloc

import pytest_twisted
from alertdata import LIBRARY, first_record, rubin_files
from twisted.internet import defer

from gateway.alerts.decode import write_container
from gateway.alerts.files import DirectorySource
from gateway.pipeline import Pipeline, Router, SeenIvorns
from gateway.store import Database, Store
from gateway.store.writers import RecentIds
from gateway.voevent.build import Converter
from gateway.voevent.history import MemoryHistory
from gateway.voevent.parse import parse_event

IN_FLIGHT, BATCH, CACHED = 20, 50, 100


def rich_alerts(path, count: int) -> None:
    record, _ = first_record(rubin_files()["11.1"])
    source = record["diaSource"]
    records = []
    for n in range(count):
        history = [dict(source, diaSourceId=10**12 + n * 100 + k, midpointMjdTai=source["midpointMjdTai"] - k)
                   for k in range(1, 31)]
        records.append(dict(record, diaSourceId=10**13 + n, diaSource=dict(source, diaSourceId=10**13 + n),
                            prvDiaSources=history, cutoutDifference=os.urandom(21_000),
                            cutoutScience=os.urandom(21_000), cutoutTemplate=os.urandom(21_000)))
    write_container(path, records, LIBRARY.by_version("rubin", "11.1"))


@defer.inlineCallbacks
def peak_while_reading(tmp_path, count: int):
    folder = tmp_path / f"in-{count}"
    folder.mkdir()
    rich_alerts(folder / "visit.avro", count)
    database = Database(f"sqlite:///{tmp_path / f'alerts-{count}.db'}")
    database.start()
    store = Store(database, max_batch=BATCH)
    store.writer.recent = RecentIds(CACHED)
    converter = Converter("vogateway.local", "alerts", "http://127.0.0.1:8080", history=MemoryHistory(CACHED))
    pipeline = Pipeline(converter, parse_event, Router([store]), SeenIvorns(capacity=CACHED))
    source = DirectorySource([folder], pipeline, tmp_path / f"state-{count}", max_in_flight=IN_FLIGHT)
    tracemalloc.start()
    try:
        source.startService()
        yield source.finished
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        source.stopService()
        yield store.close()
    assert pipeline.stats.converted == count and store.stored == count
    return peak


@pytest_twisted.inlineCallbacks
def test_a_three_times_larger_file_peaks_within_20_percent(tmp_path):
    yield peak_while_reading(tmp_path, 20)  # what happens once (schemas parsed, skeletons built) is not growth
    small = yield peak_while_reading(tmp_path, 150)
    large = yield peak_while_reading(tmp_path, 450)
    # the large file alone is 30 MB of cutouts: holding it, or its events, would show at once
    assert large < 1.2 * small, f"peak {large / 1e6:.1f} MB for 450 alerts vs {small / 1e6:.1f} MB for 150"
    assert large < 20e6
