"""What ``vogateway replay`` does once its arguments are checked (``gateway/commands/replay.py``): read batches of
stored events off the reactor and submit them to a broker as an author (``gateway/vtp/author.py``), or ask a
running gateway to send them to one of its subscribers (``POST /replay``, ``gateway/web/replay.py``)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from typing import Callable, Optional
from urllib.parse import urlencode

from tqdm import tqdm
from twisted.internet import defer, protocol, task
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from gateway.store import Database, Store, StoreError
from gateway.times import format_iso
from gateway.vtp.author import send_events

#: events read from the alert DB at a time
BATCH = 500


def since_text(when: Optional[datetime]) -> Optional[str]:
    """A time as the alert DB compares ``received`` (naive-UTC ISO text, ms), or None."""
    return None if when is None else format_iso(when, zone="")


class SourceError(ValueError):
    """The source of a replay cannot be read as asked (no such topic, broker unreachable); one sentence, exit 2."""


class Batches:
    """Where the events come from: ``total()`` (Deferred[int | None]) and ``next()`` (Deferred[list[bytes]], [] at
    the end), both run off the reactor; ``close()``."""

    def total(self) -> defer.Deferred:
        raise NotImplementedError

    def next(self) -> defer.Deferred:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DatabaseBatches(Batches):
    """The alert DB's events received in [since, until), oldest first, in keyset pages (a reader thread)."""

    def __init__(self, url: str, since: Optional[datetime], until: Optional[datetime], limit: int = 0):
        self.url, self.since, self.until, self.limit = url, since_text(since), since_text(until), limit
        self.store: Optional[Store] = None
        self.after, self.read = None, 0

    def _open(self) -> Store:
        if self.store is None:
            from twisted.internet import reactor

            self.store = Store(Database(self.url, reactor))
        return self.store

    def total(self):
        d = self._open().count_received(self.since, self.until)
        return d.addCallback(lambda n: min(n, self.limit) if self.limit else n)

    @defer.inlineCallbacks
    def next(self):
        size = BATCH if not self.limit else min(BATCH, self.limit - self.read)
        if size <= 0:
            return []
        items = yield self._open().events_received(self.since, self.until, self.after, size)
        if items:
            self.after = (items[-1].received, items[-1].ivorn)
            self.read += len(items)
        return [item.xml for item in items]

    def close(self):
        if self.store is not None:
            self.store.database.stop()


def _run(main: Callable[..., defer.Deferred], *args) -> int:
    """Run ``main(reactor, *args)`` (it fires with the exit status) under the reactor; a failure is one sentence."""
    outcome = {}

    def failed(failure):
        print(f"vogateway replay: {failure.getErrorMessage() or failure.type.__name__}", file=sys.stderr)
        return 2 if failure.check(StoreError, SourceError) else 1  # the user's argument, not the peer

    def start(reactor):
        d = defer.maybeDeferred(main, reactor, *args).addErrback(failed)
        return d.addCallback(lambda status: outcome.setdefault("status", status))

    try:
        task.react(start)
    except SystemExit:  # react always exits; the status is ours
        pass
    return outcome.get("status", 1)


def replay_to_broker(batches: Batches, remote: str, local_ivo: str, timeout: float, quiet: bool) -> int:
    return _run(_to_broker, batches, remote, local_ivo, timeout, quiet)


@defer.inlineCallbacks
def _to_broker(reactor, batches: Batches, remote: str, local_ivo: str, timeout: float, quiet: bool):
    try:
        total = yield batches.total()
        verdicts, reasons = Counter(), Counter()
        with tqdm(total=total, unit=" events", disable=quiet or None, file=sys.stderr) as bar:
            while True:
                batch = yield batches.next()
                if not batch:
                    break

                def counted(payloads):
                    for number, payload in enumerate(payloads):
                        if number:
                            bar.update(1)  # the one before has its answer
                        yield payload

                results = yield send_events(remote, counted(batch), local_ivo, timeout, reactor)
                bar.update(1)
                for result in results:
                    verdicts[result.verdict] += 1
                    if not result.accepted:
                        reasons[result.reason] += 1
                if verdicts["failed"] and all(not r.accepted and not r.nakd for r in results):
                    break  # nothing got through this batch (refused, timed out): the next would fare the same
    finally:
        batches.close()
    sent = sum(verdicts.values())
    print(f"{sent} events replayed to {remote}: {verdicts['ack']} acked, {verdicts['nak']} nak'd, "
          f"{verdicts['failed']} not answered", file=sys.stderr)
    for reason, count in reasons.most_common(5):
        print(f"  {count} x {reason}", file=sys.stderr)
    return 1 if verdicts["failed"] else 0


@implementer(IBodyProducer)
class _Form:
    def __init__(self, fields: dict):
        self.body = urlencode(fields).encode()
        self.length = len(self.body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


class _Lines(protocol.Protocol):
    """Reads the streamed answer of ``POST /replay``: one JSON object per line, each handed to ``on_line``."""

    def __init__(self, on_line, finished: defer.Deferred):
        self.on_line, self.finished, self.buffer = on_line, finished, b""

    def dataReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.on_line(json.loads(line))

    def connectionLost(self, reason=protocol.connectionDone):
        self.finished.callback(None)


def replay_to_subscriber(base: str, ivo: str, since, until, limit: int, quiet: bool) -> int:
    return _run(_to_subscriber, base, ivo, since, until, limit, quiet)


@defer.inlineCallbacks
def _to_subscriber(reactor, base: str, ivo: str, since, until, limit: int, quiet: bool):
    from twisted.internet.error import ConnectError

    fields = {"subscriber": ivo, "limit": str(limit)}
    fields.update({name: since_text(value) for name, value in (("since", since), ("until", until)) if value})
    try:
        response = yield Agent(reactor).request(
            b"POST", f"{base}/replay".encode(),
            Headers({b"content-type": [b"application/x-www-form-urlencoded"]}), _Form(fields))
    except ConnectError as error:
        print(f"vogateway replay: no gateway answers at {base} ({error.__class__.__name__}): is `vogateway serve` "
              "running there, with --http HOST:PORT?", file=sys.stderr)
        return 1
    if response.code != 200:
        text = (yield readBody(response)).decode("utf-8", "replace").strip()
        print(f"vogateway replay: {text or f'the gateway answered HTTP {response.code}'}", file=sys.stderr)
        return 2 if response.code == 400 else 1
    last, finished = {}, defer.Deferred()
    bar = tqdm(unit=" events", disable=quiet or None, file=sys.stderr)

    def on_line(value: dict):
        last.update(value)
        if "total" in value:
            bar.reset(total=value["total"])
        elif "read" in value:
            bar.n = value["read"]
            bar.refresh()

    response.deliverBody(_Lines(on_line, finished))
    yield finished
    bar.close()
    if last.get("error") or not last.get("done"):
        print(f"vogateway replay: {last.get('error') or 'the gateway stopped answering before the end'}",
              file=sys.stderr)
        return 1
    for outcome in last["outcomes"]:
        print(f"replayed to {ivo}: {outcome['read']} read, {outcome['sent']} sent, {outcome['filtered']} left out "
              f"by its filters, {outcome['unreadable']} unreadable"
              + ("" if outcome["complete"] else "; the subscriber left before the end"), file=sys.stderr)
    return 0 if all(o["complete"] for o in last["outcomes"]) else 1
