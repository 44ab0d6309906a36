#!/usr/bin/env python
"""VTP broadcast benchmark: our broker vs Comet vs a bare Twisted writer, on loopback, in one run.

For each fan-out (1, 10, 100 subscribers) it measures, with the same subscriber clients in this process:

* ``comet``  author -> Comet 3.1.0 (receiver, broker) -> subscribers: events go in through Comet's receiver (the
  only way into Comet), with ``--concurrency`` parallel author connections;
* ``ours``   the same path through our receiver and broker (safe parse, XSD validation, pipeline, broadcast);
* ``ours-fanout``  our broker alone: the broker process feeds prepared Events to ``Broker.accept`` as fast as the
  reactor takes them (the broker's own fan-out rate);
* ``bare``   the ceiling: a bare Twisted server writing the same frames to the same kind of sockets, no VTP logic.

Latency is subscriber receipt time minus the time the author sent the event (both on this machine's clock),
so for ``comet``/``ours`` it includes the receiver's checks. Last, ``ours`` at a paced 1,000 events/s to 100
subscribers (and at a rate this machine sustains) gives the p99 added latency. Broker processes run separately from the measuring process.

    .venv/bin/python scripts/bench/vtp.py [--events 2000] [--comet-events 400] [--fanouts 1,10,100]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 version="2.0" role="test" ivorn="ivo://bench.test/stream#{local_id}">
  <Who><AuthorIVORN>ivo://bench.test/author</AuthorIVORN><Date>2026-11-24T12:00:00</Date></Who>
  <What>
    <Param name="sent_at" value="{sent_at:.6f}" dataType="float" unit="s"/>
    <Param name="mag" value="18.25" dataType="float" ucd="phot.mag"/>
    <Description>{padding}</Description>
  </What>
  <WhereWhen><ObsDataLocation><ObservatoryLocation id="GEOLUN"/><ObservationLocation>
    <AstroCoordSystem id="UTC-ICRS-TOPO"/><AstroCoords coord_system_id="UTC-ICRS-TOPO">
      <Time unit="s"><TimeInstant><ISOTime>2026-11-24T11:59:00</ISOTime></TimeInstant></Time>
      <Position2D unit="deg"><Name1>RA</Name1><Name2>Dec</Name2><Value2><C1>150.25</C1><C2>-12.5</C2></Value2>
        <Error2Radius>0.0003</Error2Radius></Position2D>
    </AstroCoords></ObservationLocation></ObsDataLocation></WhereWhen>
  <How><Description>vtp benchmark</Description></How>
</voe:VOEvent>
"""
PROFILE = os.environ.get("VTP_BENCH_PROFILE", "").split()  # e.g. "-m cProfile -o ours.prof": profile our server
PADDING = "x" * 1200  # a typical alert VOEvent is 2-5 kB


def make_event(run: str, n: int, sent_at: float = 0.0) -> bytes:
    return TEMPLATE.format(local_id=f"{run}-{n}", sent_at=sent_at, padding=PADDING).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- server processes -------------------------------------------------------------------------------------------

def serve_ours(receive: int, broadcast: int, fanout_events: int, subscribers: int) -> None:
    """Our broker + receiver. With ``fanout_events``, once ``subscribers`` are connected, feed that many prepared
    Events straight to Broker.accept instead (the broker's fan-out alone)."""
    from twisted.internet import reactor, task
    from twisted.internet.endpoints import serverFromString

    from gateway.event import Event, utcnow
    from gateway.pipeline import Pipeline, Router
    from gateway.voevent.parse import parse_event
    from gateway.vtp.broker import Broker
    from gateway.vtp.receiver import Receiver

    broker = Broker("ivo://bench.test/ours", buffer_events=100_000, buffer_bytes=400_000_000)
    pipeline = Pipeline(convert=None, parse=lambda xml, origin: parse_event(xml, origin=origin),
                        router=Router([broker]))
    receiver = Receiver(pipeline, "ivo://bench.test/ours")
    serverFromString(reactor, f"tcp:{receive}:interface=127.0.0.1:backlog=200").listen(receiver)
    serverFromString(reactor, f"tcp:{broadcast}:interface=127.0.0.1:backlog=200").listen(broker)

    def inject(stable: int = 0):
        # wait for the subscribers, and for wait_listening's probe connection to be gone
        stable = stable + 1 if len(broker.subscribers) == subscribers else 0
        if stable < 4:
            return task.deferLater(reactor, 0.1, inject, stable)
        return task.cooperate(accept_in_turns()).whenDone()

    def accept_in_turns(per_turn: int = 50):
        for n in range(fanout_events):
            broker.accept(Event(f"ivo://bench.test/stream#fan-{n}", "test", utcnow(), make_event("fan", n, time.time())))
            if n % per_turn == per_turn - 1:
                yield None  # let the reactor write, as a live stream would

    if fanout_events:
        reactor.callWhenRunning(inject)
    reactor.run()


def serve_bare(port: int, subscribers: int, events: int) -> None:
    """The ceiling: accept ``subscribers`` connections, then write ``events`` frames to each, nothing else."""
    from twisted.internet import protocol, reactor, task
    from twisted.internet.endpoints import serverFromString

    connected = []

    class Sink(protocol.Protocol):
        def connectionMade(self):
            connected.append(self.transport)

        def connectionLost(self, reason):
            connected.remove(self.transport)

    def start(stable: int = 0):
        # wait for the subscribers, and for wait_listening's probe connection to be gone
        stable = stable + 1 if len(connected) == subscribers else 0
        if stable < 4:
            return task.deferLater(reactor, 0.1, start, stable)
        return task.cooperate(write()).whenDone()

    def write(per_turn: int = 50):
        for n in range(events):
            payload = make_event("bare", n, time.time())
            data = struct.pack("!I", len(payload)) + payload
            for transport in connected:
                transport.write(data)
            if n % per_turn == per_turn - 1:
                yield None

    serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1:backlog=200").listen(
        protocol.Factory.forProtocol(Sink))
    reactor.callWhenRunning(start)
    reactor.run()


def start_ours(fanout_events: int = 0, subscribers: int = 0):
    receive, broadcast = free_port(), free_port()
    process = subprocess.Popen([sys.executable, *PROFILE, __file__, "--serve-ours", str(receive), str(broadcast),
                                str(fanout_events), str(subscribers)], cwd=ROOT)
    wait_listening(receive, process)
    wait_listening(broadcast, process)
    return process, receive, broadcast


def start_comet(workdir: Path):
    receive, broadcast = free_port(), free_port()
    (workdir / "eventdb").mkdir(parents=True, exist_ok=True)
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen([str(twistd), "-n", f"--pidfile={workdir / 'pid'}", f"--logfile={workdir / 'log'}",
                                "comet", "--local-ivo=ivo://bench.test/comet", f"--eventdb={workdir / 'eventdb'}",
                                "--receive", f"--receive-port={receive}", "--broadcast",
                                f"--broadcast-port={broadcast}", "--broadcast-test-interval=0",
                                "--author-whitelist=127.0.0.1/32", "--quiet"], cwd=workdir)
    wait_listening(receive, process)
    wait_listening(broadcast, process)
    return process, receive, broadcast


def start_bare(subscribers: int, events: int):
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port), str(subscribers), str(events)],
                               cwd=ROOT)
    wait_listening(port, process)
    return process, port


# -- the measuring side (this process) ----------------------------------------------------------------------------

def measure(args) -> None:
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from gateway.vtp import messages
    from gateway.vtp.author import send_events
    from gateway.vtp.framing import FrameProtocol, frame

    marker = b'name="sent_at" value="'

    class Stats:
        def __init__(self):
            self.latencies: list[float] = []
            self.deliveries = 0
            self.first = self.last = None

    class BenchSubscriber(FrameProtocol):
        """Counts events and their latency; answers authenticate/iamalive and acks, as a VTP subscriber must."""

        def __init__(self, stats):
            super().__init__()
            self.stats = stats
            self.max_frame_bytes = 10_000_000

        def frameReceived(self, payload):
            now = time.time()
            if b"Transport" in payload[:300]:
                message = messages.parse_message(payload)
                if message.role == "authenticate":
                    self.authenticated = True
                    self.sendFrame(messages.authenticate_response("ivo://bench.test/sub", message.origin, [], now))
                elif message.role == "iamalive":
                    self.sendFrame(messages.iamalive_response("ivo://bench.test/sub", message.origin, now))
                return
            at = payload.find(marker) + len(marker)
            sent = float(payload[at:payload.index(b'"', at)])
            start = payload.find(b'ivorn="') + 7
            ivorn = payload[start:payload.index(b'"', start)].decode()
            stats = self.stats
            stats.deliveries += 1
            stats.latencies.append(now - sent)
            stats.first = stats.first or now
            stats.last = now
            self.transport.write(frame(messages.ack("ivo://bench.test/sub", ivorn, now)))

    @defer.inlineCallbacks
    def subscribe(port, count, stats, authenticated=True):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        subscribers = []
        for start in range(0, count, 25):
            batch = yield defer.gatherResults([connectProtocol(endpoint, BenchSubscriber(stats))
                                               for _ in range(min(25, count - start))])
            subscribers.extend(batch)
        if authenticated:
            for _ in range(500):
                if all(getattr(s, "authenticated", False) for s in subscribers):
                    break
                yield task.deferLater(reactor, 0.01, lambda: None)
            yield task.deferLater(reactor, 0.2, lambda: None)  # let the broker take the authenticate replies
        return subscribers

    @defer.inlineCallbacks
    def wait_all(stats, expected, stall=15.0):
        last, since = -1, time.monotonic()
        while stats.deliveries < expected:
            if stats.deliveries != last:
                last, since = stats.deliveries, time.monotonic()
            elif time.monotonic() - since > stall:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)

    def percentile(values, q):
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def record(name, fanout, events, stats, started, sent_ok):
        duration = (stats.last or started) - started
        result = {"broker": name, "fanout": fanout, "events": events, "sent_ok": sent_ok,
                  "deliveries": stats.deliveries, "expected": events * fanout, "seconds": duration,
                  "events_per_s": stats.deliveries / fanout / duration if duration > 0 else 0.0,
                  "deliveries_per_s": stats.deliveries / duration if duration > 0 else 0.0,
                  "p50_ms": percentile(stats.latencies, 0.50) * 1e3, "p99_ms": percentile(stats.latencies, 0.99) * 1e3}
        results.append(result)
        print(f"  {name:<12} fan-out {fanout:>3}: {events:>5} events, {result['deliveries']:>6}/"
              f"{result['expected']} delivered in {duration:6.2f} s: {result['events_per_s']:8.0f} events/s, "
              f"{result['deliveries_per_s']:9.0f} deliveries/s, latency p50 {result['p50_ms']:7.1f} ms, "
              f"p99 {result['p99_ms']:7.1f} ms", flush=True)

    @defer.inlineCallbacks
    def through_author(name, receive, broadcast, fanout, events):
        stats = Stats()
        subscribers = yield subscribe(broadcast, fanout, stats)
        streams = args.concurrency
        started = time.time()

        def generate(stream):
            for n in range(stream, events, streams):
                yield make_event(f"{name}-{fanout}", n, time.time())

        outcomes = yield defer.gatherResults([send_events(f"127.0.0.1:{receive}", generate(k), timeout=30)
                                              for k in range(streams)])
        sent_ok = sum(r.accepted for results in outcomes for r in results)
        yield wait_all(stats, sent_ok * fanout)
        record(name, fanout, events, stats, started, sent_ok)
        for s in subscribers:
            s.transport.abortConnection()

    @defer.inlineCallbacks
    def fanout_only(name, start, fanout, events):
        stats = Stats()
        subscribers = yield subscribe(start, fanout, stats, authenticated=(name != "bare"))
        started = time.time()
        yield wait_all(stats, events * fanout)
        record(name, fanout, events, stats, stats.first or started, events)
        for s in subscribers:
            s.transport.abortConnection()

    @defer.inlineCallbacks
    def paced(receive, broadcast, fanout, rate, seconds):
        """Ours at a steady ``rate`` events/s through pipelined author connections."""
        stats = Stats()
        subscribers = yield subscribe(broadcast, fanout, stats)
        total = int(rate * seconds)

        class Pipelined(FrameProtocol):
            acked = 0

            def frameReceived(self, payload):
                Pipelined.acked += 1

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", receive)
        authors = yield defer.gatherResults([connectProtocol(endpoint, Pipelined()) for _ in range(4)])
        started, sent = time.time(), 0
        while sent < total:
            due = min(total, int((time.time() - started) * rate))
            while sent < due:
                authors[sent % len(authors)].sendFrame(make_event("paced", sent, time.time()))
                sent += 1
            yield task.deferLater(reactor, 0.002, lambda: None)
        yield wait_all(stats, total * fanout)
        record(f"ours@{rate}/s", fanout, total, stats, started, Pipelined.acked)
        for s in subscribers + authors:
            s.transport.abortConnection()

    results: list[dict] = []

    @defer.inlineCallbacks
    def main():
        workdir = Path(tempfile.mkdtemp(prefix="vtp-bench-"))
        for fanout in args.fanouts:
            print(f"fan-out {fanout}:", flush=True)
            if "comet" in args.only and not args.skip_comet:
                process, receive, broadcast = start_comet(workdir / f"comet-{fanout}")
                try:
                    yield through_author("comet", receive, broadcast, fanout, args.comet_events)
                finally:
                    stop(process)
            if "ours" in args.only:
                process, receive, broadcast = start_ours()
                try:
                    yield through_author("ours", receive, broadcast, fanout, args.events)
                finally:
                    stop(process)
            # the fan-out runs are fast: give them enough deliveries (>= 40,000) to last a measurable time
            fan_events = max(args.events, 40_000 // fanout)
            if "ours-fanout" in args.only:
                process, receive, broadcast = start_ours(fan_events, fanout)
                try:
                    yield fanout_only("ours-fanout", broadcast, fanout, fan_events)
                finally:
                    stop(process)
            if "bare" in args.only:
                process, port = start_bare(fanout, fan_events)
                try:
                    yield fanout_only("bare", port, fanout, fan_events)
                finally:
                    stop(process)
        for rate in args.rate:
            print(f"paced: {rate} events/s for {args.rate_seconds} s to {max(args.fanouts)} subscribers:",
                  flush=True)
            process, receive, broadcast = start_ours()
            try:
                yield paced(receive, broadcast, max(args.fanouts), rate, args.rate_seconds)
            finally:
                stop(process)

    def report():
        def get(name, fanout):
            return next((r for r in results if r["broker"] == name and r["fanout"] == fanout), None)

        print("\nsummary (events/s = events delivered to every subscriber per second):")
        for fanout in args.fanouts:
            ours, comet, fan, bare = (get(n, fanout) for n in ("ours", "comet", "ours-fanout", "bare"))
            parts = [f"fan-out {fanout:>3}:"]
            if ours and comet and comet["events_per_s"]:
                parts.append(f"ours/Comet {ours['events_per_s'] / comet['events_per_s']:6.1f}x "
                             f"({ours['events_per_s']:.0f} vs {comet['events_per_s']:.0f} events/s)")
            if fan and bare and bare["deliveries_per_s"]:
                parts.append(f"broker fan-out / bare writer {fan['deliveries_per_s'] / bare['deliveries_per_s']:6.1%}"
                             f" ({fan['deliveries_per_s']:.0f} vs {bare['deliveries_per_s']:.0f} deliveries/s)")
            print("  " + "; ".join(parts))
        for r in results:
            if r["broker"].startswith("ours@"):
                print(f"  paced {r['broker']} to {r['fanout']} subscribers: p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms, {r['deliveries']}/{r['expected']} delivered")
            if r["deliveries"] < r["expected"] and not r["broker"].startswith("comet"):
                print(f"  WARNING: {r['broker']} fan-out {r['fanout']} delivered {r['deliveries']} of {r['expected']}")

    def run():
        d = main()
        d.addErrback(lambda failure: failure.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    report()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per run for our broker and the bare writer")
    parser.add_argument("--comet-events", type=int, default=400, help="events per run through Comet (it is slow)")
    parser.add_argument("--fanouts", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100])
    parser.add_argument("--concurrency", type=int, default=8, help="parallel author connections")
    parser.add_argument("--rate", type=lambda s: [int(x) for x in s.split(",") if int(x)], default=[250, 1000],
                        help="paced runs of ours to the largest fan-out: events/s, comma-separated (0: none)")
    parser.add_argument("--rate-seconds", type=float, default=3.0)
    parser.add_argument("--skip-comet", action="store_true")
    parser.add_argument("--only", type=lambda s: s.split(","), default=["comet", "ours", "ours-fanout", "bare"],
                        help="which runs, comma-separated (default: comet,ours,ours-fanout,bare)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-ours":
        serve_ours(*map(int, sys.argv[2:6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        serve_bare(*map(int, sys.argv[2:5]))
    else:
        measure(parse_args(sys.argv[1:]))
