"""Follow-up triggers: a webhook (HTTP POST of a JSON summary) and a command (the VOEvent on its stdin).

Webhook: the body is :func:`gateway.forward.common.summary` as JSON; headers ``Idempotency-Key`` (the outbox key:
a receiver can drop the duplicate an at-least-once resend may produce) and, with a ``secret``,
``X-Vogateway-Signature: sha256=<hex HMAC-SHA256 of the body>``. 2xx is delivered; 429, and 503 with ``Retry-After``, pause the route
(for ``Retry-After`` s); other 5xx, timeouts and refused connections are retried; other 4xx fail.

Command: like Comet's ``--cmd``: the program runs once per event with the VOEvent on stdin and
``VOGATEWAY_IVORN`` and ``VOGATEWAY_ROUTE`` in its environment, through ``reactor.spawnProcess`` (no shell).
Exit status 0 is delivered; another status is retried (up to the route's ``max_attempts``); a run longer than
``timeout`` is terminated (SIGTERM, then SIGKILL after ``kill_grace`` seconds) and retried. The route's
``concurrency`` caps how many run at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import deque
from typing import Optional, Sequence

from twisted.internet import defer, protocol
from twisted.internet import error as net_error
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.event import Event
from gateway.forward import outbox
from gateway.forward.common import HTTP, USER_AGENT, classify, dumps, short, summary, wait_seconds
from gateway.forward.gcn import stored_facts
from gateway.voevent.parse import VOEventError

log = Logger()

SIGNATURE_HEADER = "X-Vogateway-Signature"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    kind = "webhook"

    def __init__(self, url: str, secret: str = "", reactor=None, timeout: float = 10.0):
        if reactor is None:
            from twisted.internet import reactor
        self.url, self._secret = url, secret
        self.http = HTTP(reactor, timeout)

    def __repr__(self):  # never the secret
        return f"Webhook({self.url!r})"

    def prepare(self, event: Event, facts, route: str) -> outbox.Prepared:
        # the VOEvent is stored and the summary made from it when sent: the pipeline pays for a row, nothing more
        return outbox.Prepared(f"{route}:{event.ivorn}", None)

    @defer.inlineCallbacks
    def deliver(self, item: outbox.Item):
        try:
            facts = stored_facts(item)
        except VOEventError as error:
            return outbox.failed(f"stored VOEvent unreadable: {error}")
        payload = dumps(summary(facts.event, facts, item.route))
        headers = {"Content-Type": ["application/json"], "User-Agent": [USER_AGENT],
                   "Idempotency-Key": [item.key]}
        if self._secret:
            headers[SIGNATURE_HEADER] = [signature(self._secret, payload)]
        try:
            code, reply_headers, body = yield self.http.post(self.url, payload, headers)
        except Exception:
            return classify(Failure(), "webhook")
        if 200 <= code < 300:
            return outbox.delivered(f"HTTP {code}")
        if code == 429 or (code == 503 and reply_headers.hasHeader("retry-after")):
            return outbox.throttled(wait_seconds(reply_headers, default=30.0), f"webhook: HTTP {code}")
        if code >= 500 or code == 408:
            return outbox.retry(f"webhook: HTTP {code}: {short(body)}", uncertain=True)
        return outbox.failed(f"webhook: HTTP {code}: {short(body)}")

    def stop(self):
        return self.http.stop()


class _Run(protocol.ProcessProtocol):
    """One run of the command: feeds stdin, keeps the end of stderr, fires ``done`` with the exit reason."""

    def __init__(self, payload: bytes, keep: int = 2000):
        self.payload, self.keep = payload, keep
        self.stderr: deque[bytes] = deque()
        self.stderr_size = 0
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.payload)
        self.transport.closeStdin()

    def outReceived(self, data: bytes):
        pass  # the command's stdout is not ours to keep

    def errReceived(self, data: bytes):
        self.stderr.append(data)
        self.stderr_size += len(data)
        while self.stderr_size - len(self.stderr[0]) >= self.keep and len(self.stderr) > 1:
            self.stderr_size -= len(self.stderr.popleft())

    def processEnded(self, reason):
        self.done.callback(reason.value)

    def tail(self) -> str:
        return short(b"".join(self.stderr)[-self.keep:], 300)


class Command:
    kind = "command"

    def __init__(self, argv: Sequence[str], reactor=None, timeout: float = 60.0, kill_grace: float = 5.0,
                 env: Optional[dict] = None):
        if reactor is None:
            from twisted.internet import reactor
        if not argv:
            raise ValueError("a command route needs a program: command = [\"/path/to/program\", \"arg\", ...]")
        self.argv, self.reactor, self.timeout, self.kill_grace = list(argv), reactor, timeout, kill_grace
        self.env = env

    def __repr__(self):
        return f"Command({self.argv!r})"

    def prepare(self, event: Event, facts, route: str) -> outbox.Prepared:
        return outbox.Prepared(f"{route}:{event.ivorn}", None)

    def deliver(self, item: outbox.Item) -> defer.Deferred:
        run = _Run(item.payload)
        env = dict(self.env if self.env is not None else os.environ)
        env.update(VOGATEWAY_IVORN=item.ivorn or "", VOGATEWAY_ROUTE=item.route)
        try:
            process = self.reactor.spawnProcess(run, self.argv[0], self.argv, env=env)
        except (OSError, net_error.ProcessExitedAlready) as error:
            return defer.succeed(outbox.retry(f"cannot start {self.argv[0]}: {error}"))
        timed_out = []

        def kill(signal_name):
            try:
                process.signalProcess(signal_name)
            except (net_error.ProcessExitedAlready, OSError):
                pass

        def too_long():
            timed_out.append(True)
            kill("TERM")
            later.append(self.reactor.callLater(self.kill_grace, kill, "KILL"))

        later = [self.reactor.callLater(self.timeout, too_long)]

        def ended(reason):
            for call in later:
                if call.active():
                    call.cancel()
            if timed_out:
                return outbox.retry(f"{self.argv[0]} ran longer than {self.timeout:g} s: stopped")
            if isinstance(reason, net_error.ProcessDone):
                return outbox.delivered("exit 0")
            status = getattr(reason, "exitCode", None)
            signal = getattr(reason, "signal", None)
            how = f"killed by signal {signal}" if status is None and signal else f"exited with status {status}"
            tail = run.tail()
            return outbox.retry(f"{self.argv[0]} {how}" + (f": {tail}" if tail else ""))

        return run.done.addCallback(ended)
