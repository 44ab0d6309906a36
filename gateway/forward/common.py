"""Small pieces shared by the destinations: an HTTP client, rate-limit replies, JSON schemas, event summaries."""

from __future__ import annotations

import json
import math
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import urlencode

from twisted.internet import defer, protocol
from twisted.internet import error as net_error
from twisted.web import client as web_client
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from gateway.forward import outbox
from gateway.resources import resource
from gateway.times import utcnow

USER_AGENT = "vogateway"


class _QuietFactory(web_client._HTTP11ClientFactory):
    noisy = False  # "Starting factory ..." for every new connection is Twisted's chatter, not what happened


class _RetryReused(web_client._RetryingHTTP11ClientProtocol):
    """A pooled connection that, when it dies before any response, sends the request once more on a new one.

    Twisted does that for idempotent methods only. But an endpoint that closes each connection after its reply
    without saying ``Connection: close`` (HTTP/1.0 style) leaves closed connections in the pool, and a POST written
    to one is lost with ``ResponseNeverReceived`` before the server read it; sent again on the same kind of
    connection, every retry would meet the same fate. Our bodies are in memory, so they can be written again;
    a cancelled request (our timeout) is not retried."""

    def _shouldRetry(self, method, exception, bodyProducer):
        if not isinstance(bodyProducer, (_Body, type(None))):
            return False
        return super()._shouldRetry(b"GET", exception, None)


class _QuietPool(web_client.HTTPConnectionPool):
    _factory = _QuietFactory

    def getConnection(self, key, endpoint):
        # a cached connection comes wrapped for Twisted's own retry (idempotent methods); ours retries our POSTs
        def rewrap(connection):
            if isinstance(connection, web_client._RetryingHTTP11ClientProtocol):
                return _RetryReused(connection._clientProtocol, connection._newConnection)
            return connection
        return super().getConnection(key, endpoint).addCallback(rewrap)


class HTTP:
    """POSTs through twisted.web's Agent with its own pool of persistent connections (closed on ``stop``), a
    timeout on each request, and a cap on the reply read. (Not treq: its per-request wrapping, URL and cookie
    handling cost more CPU than the rest of a webhook delivery; what it would add here, none of the
    destinations needs.)"""

    def __init__(self, reactor, timeout: float, persistent: bool = True):
        self.reactor, self.timeout = reactor, timeout
        self.pool = _QuietPool(reactor, persistent=persistent)
        self.pool.maxPersistentPerHost = 8
        self.agent = web_client.Agent(reactor, pool=self.pool, connectTimeout=timeout)

    @defer.inlineCallbacks
    def post(self, url: str, body: bytes, headers: dict[str, list[str]]):
        """(status, headers, body bytes); raises on connection errors and timeouts (see :func:`classify`)."""
        request = self.agent.request(b"POST", url.encode("ascii"), Headers(headers), _Body(body))
        response = yield request.addTimeout(self.timeout, self.reactor)
        reply = yield _read_body(response).addTimeout(self.timeout, self.reactor)
        return response.code, response.headers, reply

    def stop(self) -> defer.Deferred:
        return self.pool.closeCachedConnections()


def form(fields: dict[str, str]) -> tuple[bytes, dict[str, list[str]]]:
    """An ``application/x-www-form-urlencoded`` body and its Content-Type header."""
    return urlencode(fields).encode("ascii"), {"Content-Type": ["application/x-www-form-urlencoded"]}


@implementer(IBodyProducer)
class _Body:
    """A request body that is already in memory: written at once."""

    def __init__(self, data: bytes):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _Collect(protocol.Protocol):
    """Collects a reply body, keeping at most ``limit`` bytes (a garbage reply must not fill memory)."""

    def __init__(self, finished: defer.Deferred, limit: int):
        self.finished, self.limit, self.size, self.chunks = finished, limit, 0, []

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.limit:
            self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        if self.finished.called:
            return
        if reason.check(web_client.ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


def _read_body(response, limit: int = 1_000_000) -> defer.Deferred:
    collector = None

    def cancel(_):  # the timeout: drop the connection rather than wait for the rest
        transport = getattr(collector, "transport", None)
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()

    finished = defer.Deferred(cancel)
    collector = _Collect(finished, limit)
    response.deliverBody(collector)
    return finished


#: connection failures where the request never reached the endpoint: safe to send again
NOT_SENT = (net_error.ConnectionRefusedError, net_error.DNSLookupError, net_error.ConnectError,
            net_error.NoRouteError)


def classify(failure, what: str) -> outbox.Outcome:
    """Outcome of an HTTP request that raised: refused connections were never sent; a timeout or a connection
    lost mid-request may have been accepted (``uncertain``)."""
    if failure.check(*NOT_SENT) and not failure.check(net_error.ConnectingCancelledError):
        return outbox.retry(f"{what}: cannot connect: {failure.getErrorMessage()}")
    if failure.check(defer.CancelledError, defer.TimeoutError, net_error.TimeoutError):
        return outbox.retry(f"{what}: no reply in time", uncertain=True)
    return outbox.retry(f"{what}: {failure.type.__name__}: {failure.getErrorMessage()}", uncertain=True)


def header(headers, name: str) -> Optional[str]:
    values = headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values and isinstance(values[0], bytes) else (values[0] if values else None)


def wait_seconds(headers, default: float = 60.0, cap: float = 3600.0) -> float:
    """Seconds an endpoint asks us to wait: ``x-rate-limit-reset`` (TNS: seconds), else ``Retry-After`` (seconds,
    or an HTTP date), else ``default``; never negative, never more than ``cap``."""
    for name in ("x-rate-limit-reset", "retry-after"):
        value = header(headers, name)
        if value is None:
            continue
        try:
            seconds = float(value.strip())
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - utcnow()).total_seconds()
            except (TypeError, ValueError):
                continue
        if math.isfinite(seconds):
            return min(cap, max(0.0, seconds))
    return default


def short(body: bytes, limit: int = 200) -> str:
    """A reply body for a log line or an outbox error, cut short and made printable."""
    text = body[:limit].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text)
    return text + ("..." if len(body) > limit else "")


@lru_cache(maxsize=None)
def validator(*parts: str):
    """A jsonschema validator for ``schemas/<parts>``, loaded once. Its ``$ref`` s resolve against the schemas
    in the same folder of ``schemas/`` (and below it), by their ``$id``: never over the network."""
    import jsonschema  # here: it takes ~0.2 s to import, and only routes that validate what they send need it
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    schema = json.loads(resource("schemas", *parts).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    known = []
    for path in sorted(resource("schemas", parts[0]).rglob("*.json")):
        contents = json.loads(path.read_text())
        if isinstance(contents, dict) and isinstance(contents.get("$id"), str):
            known.append((contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012)))
    # no ``retrieve``: a $ref to a schema we do not ship is an error, not a download
    return jsonschema.Draft202012Validator(schema, registry=Registry().with_resources(known))


def validation_errors(value: Any, *parts: str) -> list[str]:
    """What is wrong with ``value`` against ``schemas/<parts>``: one line per error, naming the place."""
    errors = sorted(validator(*parts).iter_errors(value), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]


def internal_name(view) -> str:
    """The name the survey gives the object: the ZTF objectId, or Rubin's object key without its prefix."""
    key = view.object_key
    return key if view.survey == "ztf" else key.replace("diaObject:", "LSST-").replace(":", "-")


def summary(event, facts, route: str) -> dict[str, Any]:
    """The event in a few survey-neutral fields (what a webhook receives)."""
    out: dict[str, Any] = {"ivorn": event.ivorn, "role": event.role, "route": route}
    for name in ("survey", "object", "ra", "dec", "mjd", "band", "mag", "mag_err", "flux", "flux_err", "snr",
                 "reliability", "n_detections", "solar_system"):
        try:
            value = facts.get(name)
        except Exception:  # an alert missing what a field needs: the summary leaves it out
            value = None
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if value is not None:
            out[name] = value
    return out


def dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
