#!/usr/bin/env python
"""Benchmark: alert DB insert rate, cone-search latency, VOTable streaming, each against a baseline in the same run.

1. Insert (SQLite and PostgreSQL): ``--detections`` generated alerts written through the store's writer
   (``gateway.store.writers``: immutable tables plus the object upsert; COPY on PostgreSQL) in transactions of
   ``--batch`` alerts. Each alert is shaped like a Rubin alert: its triggering detection (new) and up to
   ``--previous`` earlier detections of the same object (already stored: the writer must skip them), the object
   upsert, and a VOEvent row whose XML is a real bundled event (~6 kB). One new detection per alert, so N alerts
   add N detections. Baseline: the same alert rows alone, bulk-inserted into an unindexed table of the same
   columns (the DB's raw ceiling). Row building from real alerts (``rows_for``) is timed separately.
2. Cone search: random cones (radius ``--radius`` arcsec) on ``diasource`` through the sky index (SQLite R*Tree
   + exact distance; PostgreSQL q3c) centred on stored detections, p50/p99 ms; baseline: the same cone by a full
   scan.
   ``--cone-rows-postgres`` extra rows are COPYed into PostgreSQL first (default 10 M) to measure at that size.
3. VOTable streaming (needs gateway.tap): rows/s of the TAP service's streaming BINARY2 writer against astropy
   writing the same table in memory; peak memory of each.

    .venv/bin/python scripts/bench/store_tap.py [--detections 1000000] [--postgres postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.store import writers  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.store.rows import Rows, rows_for, timestamp  # noqa: E402
from gateway.store.schema import SCHEMA  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def sample_events():
    from gateway.alerts.files import iter_inputs
    from gateway.config import load
    from gateway.convert import make_converter
    from gateway.resources import SAMPLES

    convert = make_converter(load())
    return [convert(a) for a in iter_inputs([str(SAMPLES)]) if not isinstance(a, Exception)]


def generated_batches(n_alerts: int, batch: int, previous: int, xml: str, seed: int = 1):
    """Rows for ``n_alerts`` synthetic alerts, ``batch`` alerts at a time; 10 alerts per object on average."""
    rng = random.Random(seed)
    received = timestamp(__import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    history: dict[int, list[tuple]] = {}
    for start in range(0, n_alerts, batch):
        rows = Rows()
        for i in range(start, min(start + batch, n_alerts)):
            obj = rng.randrange(max(1, n_alerts // 10))
            key = f"diaObject:{obj}"
            earlier = history.setdefault(obj, [])
            if earlier:
                ra, dec = earlier[-1][3] + rng.gauss(0, 1e-5), earlier[-1][4] + rng.gauss(0, 1e-5)
            else:
                ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
            mjd = 61000 + i * 1e-4
            flux = rng.uniform(500, 50000)
            det = (i + 1, key, "rubin", ra, dec, 1e-5, 1e-5, mjd, "griz"[i % 4], flux, flux * 0.05,
                   31.4 - 2.5 * math.log10(flux), 0.05, 20.0, rng.random(), 0, 0, None, i + 1)
            ivorn = f"ivo://bench.local/alerts#{i + 1}"
            rows.alert.append((i + 1, ivorn, "rubin", "7.4", key, i + 1, ra, dec, mjd, received, "bench@0", 1))
            rows.voevent.append((ivorn, "test", "ivo://bench.local/gateway", received, ra, dec, 3e-4, received,
                                 "bench", xml))
            rows.diasource.append(det)
            rows.diasource.extend(earlier[-previous:])
            rows.diaobject.append((key, "rubin", ra, dec, (earlier[0] if earlier else det)[7], mjd, i + 1, ivorn,
                                   received))
            earlier.append(det)
            del earlier[:-previous]
        yield rows


def bench_insert(url: str, n_alerts: int, batch: int, previous: int, xml: str) -> tuple[float, float]:
    """(store alerts/s, raw baseline alerts/s) on a fresh DB at ``url``."""
    db = Database(url)
    writer = writers.Writer(db.backend)
    progress = tqdm(total=n_alerts, unit="alert", desc=f"insert {db.backend}", leave=False) if tqdm else None
    busy = 0.0
    for rows in generated_batches(n_alerts, batch, previous, xml):
        t = time.perf_counter()
        db.run_write(writer.write, rows)
        busy += time.perf_counter() - t
        if progress:
            progress.update(len(rows.alert))
    if progress:
        progress.close()
    store_rate = n_alerts / busy
    # baseline: the alert rows alone into a bare table, bulk
    def baseline(conn, rows):
        if db.kind == "sqlite":
            conn.executemany("INSERT INTO bench_raw VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows.alert)
        else:
            with conn.cursor().copy("COPY bench_raw FROM STDIN") as copy:
                for row in rows.alert:
                    copy.write_row(row)
    db.run_write(lambda conn: conn.execute(
        f"CREATE TABLE bench_raw AS SELECT * FROM {db.table('alert')} WHERE 1 = 0"))
    raw_busy = 0.0
    for rows in generated_batches(min(n_alerts, 200_000), batch, previous, xml, seed=2):
        t = time.perf_counter()
        db.run_write(baseline, rows)
        raw_busy += time.perf_counter() - t
    db.run_write(lambda conn: conn.execute("DROP TABLE bench_raw"))
    db.stop()
    return store_rate, min(n_alerts, 200_000) / raw_busy


def copy_more_detections(url: str, extra: int, start_id: int) -> float:
    """COPY ``extra`` random detections into PostgreSQL's diasource (for a cone search at scale); rows/s."""
    import psycopg

    rng = random.Random(3)
    t = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {SCHEMA}.diasource (diasourceid, objectid, survey, ra, dec, mjd) FROM STDIN") as copy:
            for i in range(extra):
                copy.write_row((start_id + i, "diaObject:bulk", "rubin", rng.uniform(0, 360),
                                math.degrees(math.asin(rng.uniform(-1, 1))), 61000.0))
        conn.commit()
        conn.execute(f"ANALYZE {SCHEMA}.diasource")
    return extra / (time.perf_counter() - t)


def bench_cones(db: Database, radius_arcsec: float, max_id: int, n: int = 200, scans: int = 3) -> dict:
    rng = random.Random(4)
    radius = radius_arcsec / 3600
    conn = db.reader()
    # centred on stored detections (random ids), so every cone finds at least one row, as a real follow-up does
    ids = [rng.randrange(1, max_id + 1) for _ in range(n)]
    p = db.placeholder
    cones = [row for i in ids for row in
             conn.execute(f"SELECT ra, dec FROM {SCHEMA}.diasource WHERE diasourceid = {p}", (i,)).fetchall()]
    # the backend's own sky-index condition (SQLite: the zone index; PostgreSQL: q3c), as TAP and /scs use it
    from gateway.store.schema import DIASOURCE

    def cone(ra, dec):
        condition, params = db.backend.cone(DIASOURCE, ra, dec, radius)
        return conn.execute(f"SELECT diasourceid, ra, dec FROM {SCHEMA}.diasource WHERE {condition}",
                            params).fetchall()

    if db.kind == "sqlite":
        scan = f"SELECT diasourceid FROM {SCHEMA}.diasource WHERE sky_distance(ra, dec, ?, ?) <= ?"
    else:
        scan = f"SELECT diasourceid FROM {SCHEMA}.diasource WHERE q3c_dist(ra, dec, %s, %s) <= %s"
    times = []
    found = 0
    for ra, dec in cones:
        t = time.perf_counter()
        found += len(cone(ra, dec))
        times.append((time.perf_counter() - t) * 1000)
    scan_times = []
    for ra, dec in cones[:scans]:
        t = time.perf_counter()
        conn.execute(scan, (ra, dec, radius)).fetchall()
        scan_times.append((time.perf_counter() - t) * 1000)
    rows = conn.execute(f"SELECT count(*) FROM {SCHEMA}.diasource").fetchone()[0]
    conn.close()
    times.sort()
    return {"rows": rows, "p50": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))],
            "scan": statistics.median(scan_times), "found": found / len(cones)}


def cone_line(backend: str, radius: float, c: dict, target_ms: float) -> str:
    return (f"{backend} cone r={radius}\" at {c['rows']:,} detections: p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms "
            f"(target < {target_ms:g} ms), {c['found']:.1f} rows per cone; full scan {c['scan']:.0f} ms; "
            f"index speed-up {c['scan'] / c['p50']:,.0f}x")


def bench_rows_for(events, repeat: int = 20) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        for event in events:
            rows_for(event)
    return repeat * len(events) / (time.perf_counter() - t)


def bench_streaming(n_rows: int) -> None:
    try:
        from gateway.tap import (
            votable as tap_votable,  # the TAP service's streaming writer
        )
    except ImportError:
        print("VOTable streaming: gateway.tap is not there; skipped")
        return
    bench = getattr(tap_votable, "benchmark", None)
    if bench is None:
        print("VOTable streaming: gateway.tap.votable has no benchmark(); skipped")
        return
    bench(n_rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detections", type=int, default=1_000_000, help="alerts (= new detections) to insert")
    parser.add_argument("--batch", type=int, default=2000, help="alerts per transaction (the store's max_batch)")
    parser.add_argument("--previous", type=int, default=9, help="earlier detections each alert carries")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="skip the SQLite part")
    parser.add_argument("--radius", type=float, default=10.0, help="cone radius, arcsec")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL (a scratch database is created and dropped); '' to skip")
    parser.add_argument("--cone-rows-postgres", type=int, default=10_000_000,
                        help="total diasource rows in PostgreSQL for the cone search")
    parser.add_argument("--stream-rows", type=int, default=1_000_000, help="rows for the VOTable streaming bench")
    args = parser.parse_args(argv)

    events = sample_events()
    xml = max(events, key=lambda e: len(e.xml)).xml.decode()
    print(f"rows_for (real bundled alerts -> rows): {bench_rows_for(events):,.0f} alerts/s")

    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            rate, raw = bench_insert(url, args.detections, args.batch, args.previous, xml)
            print(f"SQLite insert: {rate:,.0f} alerts/s ({args.detections:,} alerts, {args.detections:,} new "
                  f"detections, {args.previous} repeated each); raw alert-row baseline {raw:,.0f} rows/s; "
                  f"ratio {rate / raw:.2f}")
            db = Database(url)
            c = bench_cones(db, args.radius, args.detections)
            db.stop()
            print(cone_line("SQLite", args.radius, c, target_ms=100))

    if args.postgres:
        import psycopg

        name = f"gwbench_{random.randrange(1 << 30)}"
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url = f"{args.postgres}/{name}"
        try:
            rate, raw = bench_insert(url, args.detections, args.batch, args.previous, xml)
            print(f"PostgreSQL insert: {rate:,.0f} alerts/s (target >= 5,000); raw COPY baseline {raw:,.0f} rows/s; "
                  f"ratio {rate / raw:.2f}")
            extra = max(0, args.cone_rows_postgres - args.detections)
            if extra:
                print(f"PostgreSQL: COPY {extra:,} more detections: "
                      f"{copy_more_detections(url, extra, 10 ** 12):,.0f} rows/s")
            db = Database(url)
            c = bench_cones(db, args.radius, args.detections)
            db.stop()
            print(cone_line("PostgreSQL", args.radius, c, target_ms=50))
        finally:
            with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    bench_streaming(args.stream_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
