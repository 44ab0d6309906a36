"""Routes from the ``[forward]`` settings, the registry of destination kinds, and the service that runs them.

Each ``[[forward.routes]]`` table names a filter, a destination kind with its settings, and limits::

    [[forward.routes]]
    name = "bright-to-tns"
    filter = "reliability > 0.9 and mag < 19.5 and not solar_system"
    kind = "tns"
    rate = 0.5            # deliveries per second at most (0: no cap)
    url = "https://sandbox.wis-tns.org/api"
    ...

:data:`KINDS` is the one table of destination kinds: each kind's keys (with their defaults) and the factory that
makes its destination; a new kind is one entry. :func:`forward_services` is what ``gateway/service.py`` calls: it
returns the router sink and the service that runs one delivery worker per route. Destination modules never read
settings; this module checks them and hands the destinations plain arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.filters import Filter, FilterError, compile_filter
from gateway.forward.gcn import GcnNotices, KafkaProducer, VOEventToKafka, VOEventToVTP
from gateway.forward.outbox import ForwardSink, Outbox, RouteWorker
from gateway.forward.settings import ForwardSettings
from gateway.forward.tns import TNS
from gateway.forward.triggers import Command, Webhook
from gateway.vtp.settings import VTPSettings
from gateway.vtp.tls import TLSFiles

log = Logger()


class RouteError(ValueError):
    """A ``[[forward.routes]]`` table that can't be used; the message names the route and the key."""


@dataclass(frozen=True)
class Required:
    """A key a route of some kind must give, of type ``expected``."""

    expected: type


class IdText(Required):
    """A required TNS id: text, or an integer taken as its text (TOML ``reporting_group_id = 82``)."""


class Argv(Required):
    """A required program and its arguments: a non-empty list of strings."""


#: keys every route may have, with their defaults
COMMON: dict[str, Any] = {"name": Required(str), "filter": "", "kind": Required(str), "rate": 0.0, "concurrency": 4,
                          "timeout": 30.0, "max_attempts": 0}


class RouteTable:
    """One route table while it is checked and built: its number and name for messages, its values by key."""

    def __init__(self, number: int, table: Any):
        self.number, self.table, self.values = number, table, {}

    def error(self, message: str) -> RouteError:
        name = self.table.get("name") if isinstance(self.table, Mapping) else None
        where = f"forward.routes #{self.number}" + (f" ({name})" if isinstance(name, str) else "")
        return RouteError(f"{where}: {message}")

    def __getitem__(self, key: str):
        return self.values[key]

    def secret(self, key: str, required: bool) -> str:
        """A secret from the table, or from the environment variable named by ``<key>_env``."""
        value = self.values.get(key) or ""
        env = self.values.get(f"{key}_env") or ""
        if env:
            value = os.environ.get(env, "")
            if not value and required:
                raise self.error(f"environment variable {env} (from {key}_env) is not set")
        if required and not value:
            raise self.error(f"{key} (or {key}_env) is required")
        return value


@dataclass(frozen=True)
class Kind:
    """A destination kind: its keys (a default, or :class:`Required`) and ``build(route, reactor, vtp)``, which
    makes the destination from a checked :class:`RouteTable` (``vtp``: the gateway's own VTP identity and TLS)."""

    keys: Mapping[str, Any]
    build: Callable[[RouteTable, Any, Optional[VTPSettings]], Any]


def _kafka_destination(wrapper, *keys: str):
    """``keys``: the kind's own keys, handed to ``wrapper`` after the producer and topic."""
    def build(route: RouteTable, reactor, vtp):
        if not all(isinstance(k, str) for k in route["settings"]):
            raise route.error("settings: librdkafka properties, e.g. \"security.protocol\" = \"SASL_SSL\"")
        try:
            producer = KafkaProducer(route["brokers"], dict(route["settings"]), reactor, route["timeout"])
        except Exception as error:  # librdkafka refuses unknown or malformed properties here
            raise route.error(f"Kafka producer: {error}") from None
        return wrapper(producer, route["topic"], *(route[key] for key in keys))
    return build


def _vtp_destination(route: RouteTable, reactor, vtp: Optional[VTPSettings]):
    tls = TLSFiles(vtp.tls_cert, vtp.tls_key, vtp.tls_ca) if vtp is not None else TLSFiles()
    local_ivo = route["local_ivo"] or (vtp.local_ivo if vtp is not None else "")
    return VOEventToVTP(route["remote"], local_ivo, route["timeout"], reactor, tls)


def _tns_destination(route: RouteTable, reactor, vtp):
    filters = dict(route["filters"])
    if not all(isinstance(v, (str, int)) for v in filters.values()):
        raise route.error("filters: band = TNS filter id, e.g. {g = \"110\", r = \"111\"}")
    return TNS(route["url"], route.secret("api_key", True), route["bot_id"], route["bot_name"],
               route["reporting_group_id"], route["discovery_data_source_id"], route["reporter"], reactor,
               route["timeout"], route["poll_interval"], route["at_type"], filters, route["instrument"],
               route["remarks"])


def _webhook_destination(route: RouteTable, reactor, vtp):
    return Webhook(route["url"], route.secret("secret", False), reactor, route["timeout"])


def _command_destination(route: RouteTable, reactor, vtp):
    return Command(list(route["command"]), reactor, route["timeout"], route["kill_grace"])


_KAFKA_KEYS = {"brokers": Required(str), "topic": Required(str), "settings": {}}

#: every destination kind, by the name routes give in ``kind``
KINDS: dict[str, Kind] = {
    "gcn-kafka": Kind({**_KAFKA_KEYS, "data_archive_page": ""}, _kafka_destination(GcnNotices, "data_archive_page")),
    "voevent-kafka": Kind(_KAFKA_KEYS, _kafka_destination(VOEventToKafka)),
    "vtp": Kind({"remote": Required(str), "local_ivo": ""}, _vtp_destination),
    "tns": Kind({"url": Required(str), "api_key": "", "api_key_env": "", "bot_id": Required(int),
                 "bot_name": Required(str), "reporting_group_id": IdText(str),
                 "discovery_data_source_id": IdText(str), "reporter": Required(str), "at_type": "1",
                 "instrument": "", "filters": {}, "remarks": "", "poll_interval": 30.0}, _tns_destination),
    "webhook": Kind({"url": Required(str), "secret": "", "secret_env": ""}, _webhook_destination),
    "command": Kind({"command": Argv(list), "kill_grace": 5.0}, _command_destination),
}


@dataclass
class Route:
    name: str
    filter: Filter
    kind: str
    destination: Any
    rate: float
    concurrency: int
    timeout: float
    max_attempts: int


def _value(route: RouteTable, key: str, spec: Any, kind: str):
    """The value of ``key`` (its default when absent), checked against ``spec``; RouteError saying what is wrong."""
    if key not in route.table:
        if isinstance(spec, Required):
            raise route.error(f"missing {key!r} (needed by kind {kind})")
        return spec
    value = route.table[key]
    expected = spec.expected if isinstance(spec, Required) else type(spec)
    if isinstance(spec, IdText) and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(spec, Argv) and not (isinstance(value, (list, tuple)) and value
                                       and all(isinstance(v, str) for v in value)):
        raise route.error("command must be a non-empty list of strings: [\"/path/prog\", \"arg\"]")
    if not _conforms(value, expected):
        raise route.error(f"{key} should be {expected.__name__}, got {value!r}")
    if expected is float:
        value = float(value)
    if expected is str and isinstance(spec, Required) and not value.strip():
        raise route.error(f"{key} must not be empty")
    return value


def _conforms(value: Any, expected: type) -> bool:
    """TOML's types as a route means them: an int is a float, a bool is not an int, tables and arrays are
    mappings and sequences (the typed config hands them over read-only)."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {dict: Mapping, list: (list, tuple)}.get(expected, expected))


def _checked(number: int, table: Any) -> RouteTable:
    """The route table with defaults filled in; RouteError for unknown keys, missing keys, wrong types."""
    route = RouteTable(number, table)
    if not isinstance(table, Mapping):
        raise route.error("each route is a table: [[forward.routes]] name = ..., kind = ..., filter = ...")
    kind = table.get("kind")
    if kind not in KINDS:
        raise route.error(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    allowed = {**COMMON, **KINDS[kind].keys}
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise route.error(f"unknown key(s) for kind {kind}: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    route.values = {key: _value(route, key, spec, kind) for key, spec in allowed.items()}
    if route["rate"] < 0 or route["concurrency"] < 1 or route["timeout"] <= 0 or route["max_attempts"] < 0:
        raise route.error("rate >= 0, concurrency >= 1, timeout > 0 and max_attempts >= 0 (0: the [forward] "
                          "default) please")
    name = route["name"]
    if any(c.isspace() or c == ":" for c in name):
        raise route.error("name must be non-empty, without spaces or ':'")
    return route


def parse_routes(forward, reactor=None, build: bool = True, vtp: Optional[VTPSettings] = None) -> list[Route]:
    """The routes of ``forward`` (:class:`ForwardSettings`, or a raw config document: see :func:`_forward`);
    RouteError naming the route and the problem. ``vtp`` gives VTP routes the gateway's identity and TLS files.

    ``build=False`` checks and compiles without making destinations (no producers or pools: for the CLI)."""
    forward, vtp = _forward(forward, vtp)
    routes, names = [], set()
    for number, table in enumerate(forward.routes, 1):
        route = _checked(number, table)
        if route["name"] in names:
            raise route.error(f"two routes are named {route['name']!r}")
        names.add(route["name"])
        try:
            compiled = compile_filter(route["filter"])
        except FilterError as error:
            raise route.error(f"filter: {error}") from None
        destination = KINDS[route["kind"]].build(route, reactor, vtp) if build else None
        routes.append(Route(route["name"], compiled, route["kind"], destination, route["rate"], route["concurrency"],
                            route["timeout"], route["max_attempts"] or forward.max_attempts))
    return routes


def _forward(forward, vtp: Optional[VTPSettings]) -> tuple[ForwardSettings, Optional[VTPSettings]]:
    """Typed settings as they are; a raw config document (``gateway.config.defaults()`` edited in place, as tests
    and benchmarks do) read through its ``forward`` and ``vtp`` tables, which it has in full."""
    if isinstance(forward, ForwardSettings):
        return forward, vtp
    section = {**forward["forward"], "routes": tuple(forward["forward"]["routes"])}
    return ForwardSettings(**section), vtp or VTPSettings(**forward["vtp"])


class ForwardService(service.Service):
    """Runs one :class:`~gateway.forward.outbox.RouteWorker` per route, and purges old sent rows hourly."""

    def __init__(self, routes: list[Route], outbox, reactor, keep_days: float = 7.0):
        self.routes, self.outbox, self.reactor, self.keep_days = routes, outbox, reactor, keep_days
        self.workers = {
            r.name: RouteWorker(r, outbox, reactor, concurrency=r.concurrency, rate=r.rate,
                                max_attempts=r.max_attempts, lease=3 * r.timeout + 2.0)
            for r in routes}
        outbox.listeners.append(self._queued)
        self._purge = None

    def _queued(self, routes: set[str]) -> None:
        for name in routes:
            worker = self.workers.get(name)
            if worker is not None:
                worker.poke()

    def startService(self):
        super().startService()
        for worker in self.workers.values():
            worker.start()
        self._purge = task.LoopingCall(self._purge_old)
        self._purge.clock = self.reactor
        self._purge.start(3600.0, now=True)

    def _purge_old(self):
        return self.outbox.purge(self.keep_days * 86400.0).addCallbacks(
            lambda n: n and log.info("outbox: purged {n} rows sent more than {days:g} days ago", n=n,
                                     days=self.keep_days),
            lambda f: log.failure("outbox purge failed", f))

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._purge is not None and self._purge.running:
            self._purge.stop()
        yield defer.DeferredList([w.stop() for w in self.workers.values()])
        for route in self.routes:
            stop = getattr(route.destination, "stop", None)
            if stop is not None:
                try:
                    yield stop()
                except Exception as error:  # noqa: BLE001  shutting down: log and go on with the others
                    log.warn("route {route}: stopping its destination: {error}", route=route.name, error=error)


def forward_services(forward, database, reactor, vtp: Optional[VTPSettings] = None) -> tuple[Optional[Any], list]:
    """(router sink or None, services to start) for ``forward`` (as :func:`parse_routes` takes it); ``database``
    is the store's :class:`gateway.store.db.Database` (the outbox is a table in it). No routes: (None, [])."""
    forward, vtp = _forward(forward, vtp)
    routes = parse_routes(forward, reactor, vtp=vtp)
    if not routes:
        return None, []
    outbox = Outbox(database, reactor, retry_base=forward.retry_base, retry_max=forward.retry_max)
    runner = ForwardService(routes, outbox, reactor, forward.keep_days)
    log.info("forwarding: {routes}", routes=", ".join(f"{r.name} ({r.kind})" for r in routes))
    return ForwardSink(routes, outbox), [runner]
