#!/usr/bin/env python
"""VTP broadcast benchmark: our broker vs Comet vs a bare Twisted writer, on loopback, in one run.

Every role runs in its own process, so what is measured is the broker and not the measuring side:

* the **server**: our receiver + broker, Comet 3.1.0 (``twistd comet``), or a bare Twisted writer;
* the **subscribers**: ``--per-worker`` connections (default 50) per worker process. Each worker answers
  authenticate and iamalive, acks every event by IVORN (as a VTP subscriber must), records the receive time of
  each event, and at the end hands its counts and latencies back to this process through a file;
* the **author** (for runs that go through a receiver): its own process.

This process only starts, waits and sums up. For each fan-out (1, 10, 100 subscribers) it runs:

* ``comet``  author -> Comet (receiver, broker) -> subscribers, ``--concurrency`` author connections that each wait
  for the ack of one event before sending the next (the only way into Comet). The default, 32, is enough for the
  authors not to be the limit of either broker: with 8, ours was held back by round trips (its server used half
  a core) while Comet, CPU-bound, moved the same 66-70 events/s at 8 and at 32;
* ``ours``   the same path through our receiver and broker (safe parse, XSD validation, pipeline, broadcast);
* ``ours-fanout``  our broker alone: the server process feeds prepared Events to ``Broker.accept`` as fast as the
  reactor takes them, 50 per reactor turn (the broker's own fan-out rate);
* ``bare``   the ceiling: a bare Twisted server writing the same frames to the same kind of sockets, 50 per turn,
  no VTP logic (it ignores the acks the subscribers send).

Then paced runs to the largest fan-out: ``ours@R/s``, an author process sending R events/s over ``--concurrency`` pipelined
connections through our receiver and broker; and ``direct@R/s``, the broker process itself calling
``Broker.accept`` R times a second (the broker's share of the latency, without the receiver's checks).

Latency is the subscriber's receive time minus the ``sent_at`` the event carries (the author's send time, or
when the server built the event for ``ours-fanout``/``bare``/``direct``), both read from this machine's clock.
Each run also reports the CPU time each process used while events flowed (from /proc), so the broker's cost per
delivery can be read apart from how busy the shared machine was.

    .venv/bin/python scripts/bench/vtp.py [--events 2000] [--comet-events 400] [--fanouts 1,10,100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
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
FLUSH_INTERVAL = -1.0  # our broker's flush_interval (s); -1: its default (set by --flush-interval)
TICKS = os.sysconf("SC_CLK_TCK")


def make_event(run: str, n: int, sent_at: float = 0.0) -> bytes:
    return TEMPLATE.format(local_id=f"{run}-{n}", sent_at=sent_at, padding=PADDING).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a live process so far, s ((0, 0) if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


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


def wait_subscribers(count: int, connected):
    """In a server process: fire once ``connected()`` has been ``count`` for 0.4 s (wait_listening's probe gone)."""
    from twisted.internet import defer, reactor, task

    @defer.inlineCallbacks
    def poll():
        stable = 0
        while stable < 4:
            stable = stable + 1 if connected() == count else 0
            yield task.deferLater(reactor, 0.1, lambda: None)

    return poll()


# -- server processes -------------------------------------------------------------------------------------------

def serve_ours(receive: int, broadcast: int, fanout_events: int, subscribers: int, rate: float,
               flush_interval: float) -> None:
    """Our broker + receiver. With ``fanout_events``, once ``subscribers`` are connected, feed that many prepared
    Events straight to Broker.accept: 50 per reactor turn, or ``rate`` a second if it is not 0."""
    from twisted.internet import reactor, task
    from twisted.internet.endpoints import serverFromString

    from gateway.event import Event, utcnow
    from gateway.pipeline import Pipeline, Router
    from gateway.voevent.parse import parse_event
    from gateway.vtp.broker import Broker
    from gateway.vtp.receiver import Receiver

    broker = Broker("ivo://bench.test/ours", buffer_events=100_000, buffer_bytes=400_000_000,
                    **({"flush_interval": flush_interval} if flush_interval >= 0 else {}))
    pipeline = Pipeline(convert=None, parse=lambda xml, origin: parse_event(xml, origin=origin),
                        router=Router([broker]))
    receiver = Receiver(pipeline, "ivo://bench.test/ours")
    serverFromString(reactor, f"tcp:{receive}:interface=127.0.0.1:backlog=200").listen(receiver)
    serverFromString(reactor, f"tcp:{broadcast}:interface=127.0.0.1:backlog=200").listen(broker)

    def event(n):
        return Event(f"ivo://bench.test/stream#fan-{n}", "test", utcnow(), make_event("fan", n, time.time()))

    def accept_in_turns(per_turn: int = 50):
        for n in range(fanout_events):
            broker.accept(event(n))
            if n % per_turn == per_turn - 1:
                yield None  # let the reactor write, as a live stream would

    def paced():
        started, sent = time.time(), 0

        def tick():
            nonlocal sent
            due = min(fanout_events, int((time.time() - started) * rate) + 1)
            while sent < due:
                broker.accept(event(sent))
                sent += 1
            if sent == fanout_events:
                loop.stop()

        loop = task.LoopingCall(tick)
        return loop.start(0.001)

    def inject(_):
        return paced() if rate else task.cooperate(accept_in_turns()).whenDone()

    if fanout_events:
        reactor.callWhenRunning(lambda: wait_subscribers(subscribers, lambda: len(broker.subscribers))
                                .addCallback(inject))
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
    reactor.callWhenRunning(lambda: wait_subscribers(subscribers, lambda: len(connected))
                            .addCallback(lambda _: task.cooperate(write()).whenDone()))
    reactor.run()


# -- subscriber worker processes ---------------------------------------------------------------------------------

def subscriber_worker(port: int, connections: int, expected: int, authenticate: int, stall: float, out: str) -> None:
    """``connections`` VTP subscribers to ``port``; prints "ready" once all are connected (and authenticated),
    then counts events until each has ``expected`` or nothing arrived for ``stall`` s, and writes its results
    to ``out`` (JSON) and ``out``.lat (receive latencies, float64 s)."""
    from twisted.internet import defer, protocol, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from acking import AckTemplate  # beside this script
    from gateway.vtp import messages
    from gateway.vtp.framing import frame

    local = "ivo://bench.test/sub"
    unpack_length, pack_length = struct.Struct("!I").unpack_from, struct.Struct("!I").pack
    # every benchmark event starts with the same bytes up to its IVORN, and has the same bytes from the end of
    # the IVORN to the value of sent_at: checked with startswith, not searched for
    sample = make_event("RUN", 0, 1.5)
    ivorn_at = sample.index(b'ivorn="') + 7
    event_head = sample[:ivorn_at]
    ivorn_end = sample.index(b'"', ivorn_at)
    sent_at_gap = sample[ivorn_end:sample.index(b'value="1.5') + 7]
    latencies = array("d")
    counts = {"deliveries": 0, "first": None, "last": None, "other": 0, "cpu": 0.0}
    ack_template = AckTemplate(local)  # acking 50 k events/s must not be the measuring side's bottleneck

    class Subscriber(protocol.Protocol):
        """Reads every frame in what one read brought (all received at the same time) and acks them in one write:
        the measuring side must cost far less per delivery than the broker."""

        authenticated = False
        pending = b""

        def dataReceived(self, data):
            now = time.time()
            head, tail, around = ack_template(now)
            buffer = self.pending + data if self.pending else data
            offset, size, acks, events = 0, len(buffer), [], 0
            while size - offset >= 4:
                end = offset + 4 + unpack_length(buffer, offset)[0]
                if end > size:
                    break
                if buffer.startswith(event_head, offset + 4):
                    start = offset + 4 + len(event_head)
                    stop = buffer.index(b'"', start)
                    at = stop + len(sent_at_gap)
                    if not buffer.startswith(sent_at_gap, stop):
                        raise ValueError("not a benchmark event")
                    latencies.append(now - float(buffer[at:buffer.index(b'"', at)]))
                    acks += (pack_length(around + stop - start), head, buffer[start:stop], tail)
                    events += 1
                else:
                    self.transport_message(buffer[offset + 4:end], now)
                offset = end
            self.pending = buffer[offset:]
            if events:
                counts["deliveries"] += events
                counts["first"] = counts["first"] or now
                counts["last"] = now
                self.transport.write(b"".join(acks))

        def transport_message(self, payload, now):
            message = messages.parse_message(payload)
            if message.role == "authenticate":
                self.authenticated = True
                self.transport.write(frame(messages.authenticate_response(local, message.origin, [], now)))
            elif message.role == "iamalive":
                self.transport.write(frame(messages.iamalive_response(local, message.origin, now)))
            else:
                counts["other"] += 1

    @defer.inlineCallbacks
    def main():
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        subscribers = []
        for start in range(0, connections, 25):
            subscribers += yield defer.gatherResults([connectProtocol(endpoint, Subscriber())
                                                      for _ in range(min(25, connections - start))])
        if authenticate:
            while not all(s.authenticated for s in subscribers):
                yield task.deferLater(reactor, 0.01, lambda: None)
            yield task.deferLater(reactor, 0.2, lambda: None)  # let the broker take the authenticate replies
        print("ready", flush=True)
        cpu = time.process_time()
        last, since = -1, time.monotonic()
        while counts["deliveries"] < expected * connections:
            if counts["deliveries"] != last:
                last, since = counts["deliveries"], time.monotonic()
            elif time.monotonic() - since > stall:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        counts["cpu"] = time.process_time() - cpu
        for s in subscribers:
            s.transport.abortConnection()
        latencies.tofile(open(out + ".lat", "wb"))
        Path(out).write_text(json.dumps(counts))

    d = main()
    d.addErrback(lambda failure: failure.printTraceback())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()


# -- author process ------------------------------------------------------------------------------------------------

def author(receive: int, name: str, events: int, concurrency: int, rate: float, out: str, fresh: int = 0) -> None:
    """Send ``events`` to the receiver at ``receive``: over ``concurrency`` connections that each wait for an ack
    before the next (rate 0; with ``fresh``, a new connection for every event, as ``comet-sendvo`` does), or
    ``rate`` a second over ``concurrency`` pipelined connections. Writes JSON to ``out``."""
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from gateway.vtp import messages
    from gateway.vtp.author import send_events
    from gateway.vtp.framing import FrameProtocol

    result = {}
    cpu = time.process_time()

    @defer.inlineCallbacks
    def acked():
        def generate(stream):
            for n in range(stream, events, concurrency):
                yield make_event(name, n, time.time())

        send = lambda k: send_events(f"127.0.0.1:{receive}", generate(k), timeout=30)  # noqa: E731
        result["started"] = time.time()
        outcomes = yield defer.gatherResults([send(k) for k in range(concurrency)])
        result["sent_ok"] = sum(r.accepted for results in outcomes for r in results)

    @defer.inlineCallbacks
    def paced():
        replies = {"ack": 0, "other": 0}

        class Pipelined(FrameProtocol):
            def frameReceived(self, payload):
                replies["ack" if messages.quick_ack_origin(payload) else "other"] += 1

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", receive)
        authors = yield defer.gatherResults([connectProtocol(endpoint, Pipelined()) for _ in range(concurrency)])
        started, sent = time.time(), 0
        result["started"] = started
        while sent < events:
            due = min(events, int((time.time() - started) * rate) + 1)
            while sent < due:
                authors[sent % len(authors)].sendFrame(make_event(name, sent, time.time()))
                sent += 1
            yield task.deferLater(reactor, 0.001, lambda: None)
        deadline = time.monotonic() + 30
        while sum(replies.values()) < events and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.05, lambda: None)
        result["sent_ok"] = replies["ack"]
        for a in authors:
            a.transport.loseConnection()

    if fresh:
        return one_per_connection(receive, name, events, concurrency, out)
    d = paced() if rate else acked()
    d.addErrback(lambda failure: failure.printTraceback())
    d.addBoth(lambda _: (result.update(cpu=time.process_time() - cpu), Path(out).write_text(json.dumps(result)),
                         reactor.stop()))
    reactor.run()


def one_per_connection(receive: int, name: str, events: int, concurrency: int, out: str) -> None:
    """``concurrency`` authors, each opening a new connection per event (connect, submit, read the reply, close),
    with blocking sockets in threads: a lean author, the same for every server, so that the author's own CPU is
    not what is measured. Writes JSON (sent_ok, started, cpu, round_trip_ms p50/p99) to ``out``."""
    import socket
    import struct
    import threading

    round_trips, acks, lock = [], [0], threading.Lock()

    def read_exactly(sock, size):
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed before the reply")
            data += chunk
        return data

    def stream(k):
        for n in range(k, events, concurrency):
            payload = make_event(name, n, time.time())
            began = time.perf_counter()
            with socket.create_connection(("127.0.0.1", receive), timeout=30) as sock:
                sock.sendall(struct.pack("!I", len(payload)) + payload)
                reply = read_exactly(sock, struct.unpack("!I", read_exactly(sock, 4))[0])
            took = time.perf_counter() - began
            with lock:
                round_trips.append(took)
                acks[0] += b'role="ack"' in reply

    cpu, started = time.process_time(), time.time()
    threads = [threading.Thread(target=stream, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(round_trips)
    Path(out).write_text(json.dumps({
        "started": started, "sent_ok": acks[0], "cpu": time.process_time() - cpu,
        "round_trip_ms": [ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3]}))


# -- this process: start, wait, sum up -----------------------------------------------------------------------------

def me(*args) -> list[str]:
    return [sys.executable, __file__, *map(str, args)]


def start_ours(fanout_events: int = 0, subscribers: int = 0, rate: float = 0):
    receive, broadcast = free_port(), free_port()
    process = subprocess.Popen([sys.executable, *PROFILE, __file__, "--serve-ours", str(receive), str(broadcast),
                                str(fanout_events), str(subscribers), str(rate), str(FLUSH_INTERVAL)], cwd=ROOT)
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
    process = subprocess.Popen(me("--serve-bare", port, subscribers, events), cwd=ROOT)
    wait_listening(port, process)
    return process, port


def percentile(ordered, q):
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="vtp-bench-"))
        self.results: list[dict] = []
        self.runs = 0

    def subscribers(self, port: int, fanout: int, expected: int, authenticate: bool):
        """Start the worker processes, wait until they are ready; returns [(process, out path)]."""
        per = self.args.per_worker
        workers = []
        for start in range(0, fanout, per):
            self.runs += 1
            out = str(self.workdir / f"w{self.runs}.json")
            process = subprocess.Popen(me("--worker", port, min(per, fanout - start), expected, int(authenticate),
                                          self.args.stall, out), cwd=ROOT, stdout=subprocess.PIPE)
            workers.append((process, out))
        for process, _ in workers:
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a subscriber worker failed to start")
        return workers

    def run(self, name, server, fanout, events, *, port, author_args=None, authenticate=True):
        """One measured run: subscribers on ``port``; an author process if ``author_args``; collect and record."""
        workers = self.subscribers(port, fanout, events, authenticate)
        user, system = cpu_seconds(server.pid)
        started, sent_ok, author_cpu, round_trip = None, events, 0.0, None
        if author_args is not None:
            self.runs += 1
            out = str(self.workdir / f"a{self.runs}.json")
            author = subprocess.Popen(me("--author", *author_args, out), cwd=ROOT)
        for process, _ in workers:
            process.wait()
        user_after, system_after = cpu_seconds(server.pid)
        server_system = system_after - system
        server_cpu = user_after - user + server_system
        if author_args is not None:
            author.wait(60)
            reported = json.loads(Path(out).read_text())
            started, sent_ok, author_cpu = reported.get("started"), reported.get("sent_ok", 0), reported["cpu"]
            round_trip = reported.get("round_trip_ms")
        deliveries, firsts, lasts, latencies, workers_cpu = 0, [], [], array("d"), 0.0
        for process, out in workers:
            counts = json.loads(Path(out).read_text())
            deliveries += counts["deliveries"]
            workers_cpu += counts["cpu"]
            if counts["first"]:
                firsts.append(counts["first"])
                lasts.append(counts["last"])
            with open(out + ".lat", "rb") as f:
                latencies.frombytes(f.read())
        start = started if started is not None else min(firsts, default=0.0)
        duration = max(lasts, default=start) - start
        ordered = sorted(latencies)
        result = {"broker": name, "fanout": fanout, "events": events, "sent_ok": sent_ok,
                  "deliveries": deliveries, "expected": sent_ok * fanout, "seconds": duration,
                  "events_per_s": deliveries / fanout / duration if duration > 0 else 0.0,
                  "deliveries_per_s": deliveries / duration if duration > 0 else 0.0,
                  "p50_ms": percentile(ordered, 0.50) * 1e3, "p99_ms": percentile(ordered, 0.99) * 1e3,
                  "max_ms": (ordered[-1] if ordered else float("nan")) * 1e3,
                  "server_cpu_s": server_cpu, "server_system_s": server_system, "workers_cpu_s": workers_cpu, "author_cpu_s": author_cpu,
                  "load": os.getloadavg()[0], "round_trip_ms": round_trip}
        result["server_us_per_delivery"] = server_cpu / deliveries * 1e6 if deliveries else float("nan")
        self.results.append(result)
        print(f"  {name:<14} fan-out {fanout:>3}: {events:>5} events, {deliveries:>7}/{result['expected']} in "
              f"{duration:6.2f} s: {result['events_per_s']:7.0f} events/s, {result['deliveries_per_s']:7.0f} "
              f"deliveries/s, p50 {result['p50_ms']:7.1f} ms, p99 {result['p99_ms']:7.1f} ms; CPU s: server "
              f"{server_cpu:.2f} ({result['server_us_per_delivery']:.1f} us/delivery, {server_system:.2f} in the "
              f"kernel), subscribers "
              f"{workers_cpu:.2f}, author {author_cpu:.2f}; load {result['load']:.2f}"
              + (f"; author connect+submit+ack p50 {round_trip[0]:.2f} ms, p99 {round_trip[1]:.2f} ms"
                 if round_trip else ""), flush=True)

    def suite(self):
        args = self.args
        for fanout in args.fanouts:
            print(f"fan-out {fanout}:", flush=True)
            if "comet" in args.only:
                process, receive, broadcast = start_comet(self.workdir / f"comet-{fanout}-{self.runs}")
                try:
                    self.run("comet", process, fanout, args.comet_events, port=broadcast,
                             author_args=(receive, f"comet-{fanout}", args.comet_events, args.concurrency, 0,
                                          int(args.one_per_connection)))
                finally:
                    stop(process)
            if "ours" in args.only:
                process, receive, broadcast = start_ours()
                try:
                    self.run("ours", process, fanout, args.events, port=broadcast,
                             author_args=(receive, f"ours-{fanout}", args.events, args.concurrency, 0,
                                          int(args.one_per_connection)))
                finally:
                    stop(process)
            # the fan-out runs are fast: give them enough deliveries (>= 100,000) to last a measurable time
            fan_events = max(args.events, 100_000 // fanout)
            if "ours-fanout" in args.only:
                process, receive, broadcast = start_ours(fan_events, fanout)
                try:
                    self.run("ours-fanout", process, fanout, fan_events, port=broadcast)
                finally:
                    stop(process)
            if "bare" in args.only:
                process, port = start_bare(fanout, fan_events)
                try:
                    self.run("bare", process, fanout, fan_events, port=port, authenticate=False)
                finally:
                    stop(process)
        fanout = max(args.fanouts)
        for rate in args.rate:
            total = int(rate * args.rate_seconds)
            print(f"paced: {rate} events/s for {args.rate_seconds} s to {fanout} subscribers:", flush=True)
            if "paced" in args.only:
                process, receive, broadcast = start_ours()
                try:
                    self.run(f"ours@{rate}/s", process, fanout, total, port=broadcast,
                             author_args=(receive, f"paced-{rate}", total, args.concurrency, rate))
                finally:
                    stop(process)
            if "direct" in args.only:
                process, receive, broadcast = start_ours(total, fanout, rate)
                try:
                    self.run(f"direct@{rate}/s", process, fanout, total, port=broadcast)
                finally:
                    stop(process)

    def report(self):
        def values(name, fanout, key):
            return [r[key] for r in self.results if r["broker"] == name and r["fanout"] == fanout]

        def span(xs, fmt):
            if not xs:
                return "-"
            if len(xs) == 1:
                return format(xs[0], fmt)
            return f"{format(statistics.median(xs), fmt)} [{format(min(xs), fmt)}-{format(max(xs), fmt)}]"

        def ratios(a, b, key):
            return [x / y for x, y in zip(values(a[0], a[1], key), values(b[0], b[1], key)) if y]

        repeats = f"median [min-max] of {self.args.repeat} runs" if self.args.repeat > 1 else "one run"
        loads = [r["load"] for r in self.results]
        print(f"\nsummary ({repeats}; events/s = events delivered to every subscriber per second; 1-min load "
              f"average during the runs {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs):")
        for fanout in self.args.fanouts:
            parts = [f"fan-out {fanout:>3}:"]
            if values("ours", fanout, "events_per_s") and values("comet", fanout, "events_per_s"):
                parts.append(f"ours/Comet {span(ratios(('ours', fanout), ('comet', fanout), 'events_per_s'), '.1f')}x"
                             f" ({span(values('ours', fanout, 'events_per_s'), '.0f')} vs "
                             f"{span(values('comet', fanout, 'events_per_s'), '.0f')} events/s)")
            if values("ours-fanout", fanout, "deliveries_per_s") and values("bare", fanout, "deliveries_per_s"):
                parts.append("broker fan-out / bare writer "
                             f"{span([100 * x for x in ratios(('ours-fanout', fanout), ('bare', fanout), 'deliveries_per_s')], '.0f')}%"
                             f" ({span(values('ours-fanout', fanout, 'deliveries_per_s'), '.0f')} vs "
                             f"{span(values('bare', fanout, 'deliveries_per_s'), '.0f')} deliveries/s; server "
                             f"{span(values('ours-fanout', fanout, 'server_us_per_delivery'), '.1f')} vs "
                             f"{span(values('bare', fanout, 'server_us_per_delivery'), '.1f')} CPU us/delivery)")
            print("  " + "; ".join(parts))
        names = sorted({r["broker"] for r in self.results if "@" in r["broker"]},
                       key=lambda n: (n.split("@")[0], int(n.split("@")[1].split("/")[0])))
        fanout = max(self.args.fanouts)
        for name in names:
            print(f"  paced {name:<14} to {fanout} subscribers: p50 {span(values(name, fanout, 'p50_ms'), '.1f')} ms,"
                  f" p99 {span(values(name, fanout, 'p99_ms'), '.1f')} ms, achieved "
                  f"{span(values(name, fanout, 'events_per_s'), '.0f')} events/s, server "
                  f"{span(values(name, fanout, 'server_us_per_delivery'), '.1f')} CPU us/delivery")
        for r in self.results:
            if r["deliveries"] < r["expected"] and not r["broker"].startswith("comet"):
                print(f"  WARNING: {r['broker']} fan-out {r['fanout']} delivered {r['deliveries']} of {r['expected']}")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(self.results, indent=1))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per run for our broker and the bare writer")
    parser.add_argument("--comet-events", type=int, default=400, help="events per run through Comet (it is slow)")
    parser.add_argument("--fanouts", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100])
    parser.add_argument("--concurrency", type=int, default=32, help="parallel author connections")
    parser.add_argument("--one-per-connection", action="store_true",
                        help="authors open a new connection for every event (VTP's normal use, comet-sendvo); "
                             "e.g. --one-per-connection --concurrency 4 --fanouts 20 --only comet,ours")
    parser.add_argument("--per-worker", type=int, default=50, help="subscriber connections per worker process")
    parser.add_argument("--rate", type=lambda s: [int(x) for x in s.split(",") if int(x)], default=[250, 1000],
                        help="paced runs to the largest fan-out: events/s, comma-separated (0: none)")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--stall", type=float, default=15.0, help="a worker gives up after this long without events")
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times; report ranges")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--flush-interval", type=float, default=-1.0,
                        help="our broker's flush_interval in seconds (default: the Broker's own default)")
    parser.add_argument("--only", type=lambda s: s.split(","),
                        default=["comet", "ours", "ours-fanout", "bare", "paced", "direct"],
                        help="which runs, comma-separated (default: comet,ours,ours-fanout,bare,paced,direct)")
    return parser.parse_args(argv)


def measure(args) -> None:
    global FLUSH_INTERVAL
    FLUSH_INTERVAL = args.flush_interval
    bench = Bench(args)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"== run {n + 1} of {args.repeat}", flush=True)
        bench.suite()
    bench.report()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "--serve-ours":
        serve_ours(*map(int, sys.argv[2:6]), float(sys.argv[6]), float(sys.argv[7]))
    elif command == "--serve-bare":
        serve_bare(*map(int, sys.argv[2:5]))
    elif command == "--worker":
        subscriber_worker(*map(int, sys.argv[2:6]), float(sys.argv[6]), sys.argv[7])
    elif command == "--author":
        author(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[-1],
               *map(int, sys.argv[7:-1]))
    else:
        measure(parse_args(sys.argv[1:]))
