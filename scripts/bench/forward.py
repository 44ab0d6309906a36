#!/usr/bin/env python
"""Benchmark: pipeline alerts/s with no routes vs with three forward routes, one of them a slow endpoint.

In one run, on the bundled Rubin (8.0+) and ZTF alerts cycled to ``--count`` alerts with fresh ids (so every one
is a new event), fed the way a source feeds the pipeline (at most ``--in-flight`` alerts waiting for their
Deferreds):

(a) no routes: decode is done beforehand; the pipeline converts each alert to a VOEvent and routes it to the
    alert DB (the store sink, as ``vogateway serve`` has it; ``--no-store`` leaves it out);
(b) the same, with the forward sink and three webhook routes on loopback HTTP servers running: one fast
    (``mag < 21``), one that answers after ``--slow`` seconds (everything), one that answers 500 (everything,
    retried with backoff). Every selected forward is committed to the outbox (SQLite) before its Deferred fires.

(a) and (b) alternate ``--repeat`` times, each run on a fresh alert DB (so neither writes into a DB the other
has grown); the best of each counts. Prints both rates and the ratio b/a
(target >= 0.8).

    .venv/bin/python scripts/bench/forward.py [--count 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.web import client, resource, server  # noqa: E402

from gateway import config as configuration  # noqa: E402
from gateway.alerts import Alert  # noqa: E402
from gateway.alerts.files import iter_inputs  # noqa: E402
from gateway.convert import make_converter  # noqa: E402
from gateway.forward.routes import forward_services  # noqa: E402
from gateway.pipeline import Pipeline, Router  # noqa: E402
from gateway.resources import SAMPLES  # noqa: E402
from gateway.service import tune_gc  # noqa: E402
from gateway.store import Store  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.voevent.parse import parse_event  # noqa: E402


class Endpoint(resource.Resource):
    isLeaf = True

    def __init__(self, delay: float = 0.0, code: int = 200):
        super().__init__()
        self.delay, self.code, self.hits = delay, code, 0

    def render_GET(self, request):
        return str(self.hits).encode()

    def render_POST(self, request):
        self.hits += 1
        request.content.read()
        request.setResponseCode(self.code)
        if not self.delay:
            return b"ok"

        def answer():
            if not request.finished and not request._disconnected:
                request.write(b"ok")
                request.finish()
        reactor.callLater(self.delay, answer)
        return server.NOT_DONE_YET


def serve_endpoints(slow: float) -> int:
    """The endpoints' process: fast, slow and failing webhook receivers; prints their ports, serves until killed.
    (In their own process, as real endpoints are, so their CPU is not counted against the gateway's.)"""
    def listen():
        ports = []
        for res in (Endpoint(), Endpoint(delay=slow), Endpoint(code=500)):
            ports.append(reactor.listenTCP(0, server.Site(res), interface="127.0.0.1").getHost().port)
        print(" ".join(map(str, ports)), flush=True)
    reactor.callWhenRunning(listen)
    reactor.run()
    return 0


def base_alerts() -> list[Alert]:
    alerts = []
    for path in sorted(SAMPLES.glob("rubin/*/*.avro")) + sorted(SAMPLES.glob("ztf/*.avro")):
        for alert in iter_inputs([path]):
            if isinstance(alert, Alert) and (alert.survey == "ztf" or int(alert.schema.split(".")[0]) >= 8):
                alerts.append(alert)
    return alerts


_serial = itertools.count(1)


def fresh(alert: Alert) -> Alert:
    """The alert with a new id (a new IVORN), sharing everything else."""
    n = next(_serial)
    record = dict(alert.record)
    if alert.survey == "ztf":
        record["candid"] = 9_000_000_000_000_000_000 + n
    else:
        record["diaSourceId"] = 8_000_000_000_000_000 + n
        record["diaSource"] = {**record["diaSource"], "diaSourceId": record["diaSourceId"]}
    return Alert(alert.survey, alert.schema, record, alert.source, alert.position, alert.simulated)


@defer.inlineCallbacks
def feed(pipeline: Pipeline, alerts: list[Alert], in_flight: int):
    """Ingest every alert, at most ``in_flight`` unfinished at once; fires when all finished."""
    slots = defer.DeferredSemaphore(in_flight)
    pending = []
    for i, alert in enumerate(alerts):
        yield slots.acquire()
        d = pipeline.ingest_alert(alert)
        d.addBoth(lambda result: (slots.release(), result)[1])
        pending.append(d)
        if i % 50 == 49:  # let the reactor breathe, as a source's cooperator does
            yield task.deferLater(reactor, 0, lambda: None)
    yield defer.gatherResults(pending)


@defer.inlineCallbacks
def run(args):
    tune_gc()  # as `vogateway serve` does
    endpoints = subprocess.Popen([sys.executable, __file__, "--serve-endpoints", "--slow", str(args.slow)],
                                 stdout=subprocess.PIPE, text=True)
    urls = [f"http://127.0.0.1:{port}/hook" for port in endpoints.stdout.readline().split()]
    config = configuration.defaults()
    config["forward"]["routes"] = [
        {"name": "fast", "kind": "webhook", "url": urls[0], "filter": "mag < 21"},
        {"name": "slow", "kind": "webhook", "url": urls[1], "filter": ""},
        {"name": "failing", "kind": "webhook", "url": urls[2], "filter": ""},
    ]
    convert = make_converter(config)
    base = base_alerts()
    tmp = tempfile.TemporaryDirectory(prefix="bench-forward-")

    def parse(xml, origin):
        return parse_event(xml, origin=origin)

    rates = {"a": [], "b": []}
    queued = 0
    for run in range(args.repeat):
        for variant in ("a", "b"):
            alerts = [fresh(base[i % len(base)]) for i in range(args.count)]
            # a fresh alert DB for every run: both variants write into a DB of the same size
            database = Database(f"sqlite:///{tmp.name}/{variant}{run}.db")
            router = Router([Store(database)] if args.store else [])
            services = []
            if variant == "b":
                sink, services = forward_services(config, database, reactor)
                router.add_sink(sink)
                for service in services:
                    service.startService()
            pipeline = Pipeline(convert, parse, router)
            start = time.perf_counter()
            yield feed(pipeline, alerts, args.in_flight)
            elapsed = time.perf_counter() - start
            rates[variant].append(args.count / elapsed)
            if variant == "b":
                queued += sum(sink.selected.values())
                for service in services:
                    yield service.stopService()
            database.stop()
            print(f"  ({variant}) {args.count / elapsed:8.0f} alerts/s", file=sys.stderr)
    best_a, best_b = max(rates["a"]), max(rates["b"])
    print(f"sinks in both: {'alert DB (SQLite)' if args.store else 'none'}")
    print(f"(a) no routes:                                {best_a:8.0f} alerts/s")
    hits, agent = [], client.Agent(reactor)
    for url in urls:
        hits.append(int((yield client.readBody((yield agent.request(b"GET", url.encode()))))))
    print(f"(b) three routes (fast, slow {args.slow:g} s, failing): {best_b:8.0f} alerts/s   "
          f"({queued} forwards queued; delivered meanwhile: fast {hits[0]}, slow {hits[1]}, "
          f"failing {hits[2]} attempts)")
    print(f"ratio b/a = {best_b / best_a:.2f}   (target >= 0.8)")
    endpoints.terminate()
    endpoints.wait()
    tmp.cleanup()
    return best_b / best_a


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5_000, help="alerts per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each variant; the fastest counts")
    parser.add_argument("--in-flight", type=int, default=200, help="alerts a source keeps in the pipeline")
    parser.add_argument("--no-store", dest="store", action="store_false",
                        help="leave the alert DB sink out of both variants (forwarding alone against no sink)")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds the slow endpoint takes to answer")
    parser.add_argument("--serve-endpoints", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_endpoints:
        return serve_endpoints(args.slow)
    outcome = {}

    def go():
        d = run(args)
        d.addCallback(lambda ratio: outcome.setdefault("ratio", ratio))
        d.addErrback(lambda failure: (outcome.setdefault("error", failure), failure.printTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    return 1 if "error" in outcome else 0


if __name__ == "__main__":
    sys.exit(main())
