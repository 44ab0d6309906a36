"""Routes from the ``[forward]`` config section, and the service that runs them.

Each ``[[forward.routes]]`` table names a filter, a destination kind with its settings, and limits::

    [[forward.routes]]
    name = "bright-to-tns"
    filter = "reliability > 0.9 and mag < 19.5 and not solar_system"
    kind = "tns"
    rate = 0.5            # deliveries per second at most (0: no cap)
    url = "https://sandbox.wis-tns.org/api"
    ...

:func:`forward_services` is what ``gateway/service.py`` calls: it returns the router sink and the service that
runs one delivery worker per route. Protocol and destination modules never read the config; this module does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.filters import Filter, FilterError, compile_filter

log = Logger()

KINDS = ("gcn-kafka", "voevent-kafka", "vtp", "tns", "webhook", "command")

#: keys every route may have, with their defaults
COMMON = {"name": None, "filter": "", "kind": None, "rate": 0.0, "concurrency": 4, "timeout": 30.0,
          "max_attempts": 0}

#: keys of each kind, with defaults (None: required)
SETTINGS: dict[str, dict[str, Any]] = {
    "gcn-kafka": {"brokers": None, "topic": None, "settings": {}},
    "voevent-kafka": {"brokers": None, "topic": None, "settings": {}},
    "vtp": {"remote": None, "local_ivo": ""},
    "tns": {"url": None, "api_key": "", "api_key_env": "", "bot_id": None, "bot_name": None,
            "reporting_group_id": None, "discovery_data_source_id": None, "reporter": None, "at_type": "1",
            "instrument": "", "filters": {}, "remarks": "", "poll_interval": 30.0},
    "webhook": {"url": None, "secret": "", "secret_env": ""},
    "command": {"command": None, "kill_grace": 5.0},
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


def _error(number: int, table: dict, message: str):
    from gateway.config import ConfigError

    name = table.get("name") if isinstance(table, dict) else None
    where = f"forward.routes #{number}" + (f" ({name})" if isinstance(name, str) else "")
    return ConfigError(f"{where}: {message}")


def _checked(number: int, table: dict) -> dict[str, Any]:
    """The route table with defaults filled in; ConfigError for unknown keys, missing keys, wrong types."""
    if not isinstance(table, dict):
        raise _error(number, {}, "each route is a table: [[forward.routes]] name = ..., kind = ..., filter = ...")
    kind = table.get("kind")
    if kind not in KINDS:
        raise _error(number, table, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    allowed = {**COMMON, **SETTINGS[kind]}
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _error(number, table, f"unknown key(s) for kind {kind}: {', '.join(unknown)} "
                                    f"(known: {', '.join(sorted(allowed))})")
    values = {}
    for key, default in allowed.items():
        if key not in table:
            if default is None:
                raise _error(number, table, f"missing {key!r} (needed by kind {kind})")
            values[key] = default
            continue
        value = table[key]
        expected = type(default) if default is not None else None
        if key == "name" or key == "kind":
            expected = str
        elif key == "bot_id":
            expected = int
        elif key in ("reporting_group_id", "discovery_data_source_id"):
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            expected = str
        elif key == "command":
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise _error(number, table, "command must be a non-empty list of strings: [\"/path/prog\", \"arg\"]")
            expected = list
        elif key in ("brokers", "topic", "remote", "url", "bot_name", "reporter"):
            expected = str
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool) != (expected is bool)):
            raise _error(number, table, f"{key} should be {expected.__name__}, got {value!r}")
        if expected is str and default is None and not value.strip():
            raise _error(number, table, f"{key} must not be empty")
        values[key] = value
    if values["rate"] < 0 or values["concurrency"] < 1 or values["timeout"] <= 0 or values["max_attempts"] < 0:
        raise _error(number, table, "rate >= 0, concurrency >= 1, timeout > 0 and max_attempts >= 0 (0: the "
                                    "[forward] default) please")
    return values


def _secret(values: dict, key: str, number: int, table: dict, required: bool) -> str:
    """A secret from the config, or from the environment variable named by ``<key>_env``."""
    value = values.get(key) or ""
    env = values.get(f"{key}_env") or ""
    if env:
        value = os.environ.get(env, "")
        if not value and required:
            raise _error(number, table, f"environment variable {env} (from {key}_env) is not set")
    if required and not value:
        raise _error(number, table, f"{key} (or {key}_env) is required")
    return value


def _destination(values: dict, config: dict, number: int, table: dict, reactor):
    kind = values["kind"]
    timeout = values["timeout"]
    if kind in ("gcn-kafka", "voevent-kafka"):
        from gateway.forward.gcn import GcnNotices, KafkaProducer, VOEventToKafka

        settings = values["settings"]
        if not all(isinstance(k, str) for k in settings):
            raise _error(number, table, "settings: librdkafka properties, e.g. \"security.protocol\" = \"SASL_SSL\"")
        try:
            producer = KafkaProducer(values["brokers"], settings, reactor, timeout)
        except Exception as error:  # librdkafka refuses unknown or malformed properties here
            raise _error(number, table, f"Kafka producer: {error}") from None
        return (GcnNotices if kind == "gcn-kafka" else VOEventToKafka)(producer, values["topic"])
    if kind == "vtp":
        from gateway.forward.gcn import VOEventToVTP
        from gateway.vtp.tls import TLSFiles

        vtp = config.get("vtp", {})
        tls = TLSFiles(vtp.get("tls_cert", ""), vtp.get("tls_key", ""), vtp.get("tls_ca", ""))
        return VOEventToVTP(values["remote"], values["local_ivo"] or vtp.get("local_ivo", ""), timeout, reactor, tls)
    if kind == "tns":
        from gateway.forward.tns import TNS

        filters = values["filters"]
        if not all(isinstance(v, (str, int)) for v in filters.values()):
            raise _error(number, table, "filters: band = TNS filter id, e.g. {g = \"110\", r = \"111\"}")
        return TNS(values["url"], _secret(values, "api_key", number, table, True), values["bot_id"],
                   values["bot_name"], values["reporting_group_id"], values["discovery_data_source_id"],
                   values["reporter"], reactor, timeout, values["poll_interval"], values["at_type"], filters,
                   values["instrument"], values["remarks"])
    if kind == "webhook":
        from gateway.forward.triggers import Webhook

        return Webhook(values["url"], _secret(values, "secret", number, table, False), reactor, timeout)
    from gateway.forward.triggers import Command

    return Command(values["command"], reactor, timeout, values["kill_grace"])


def parse_routes(config: dict, reactor=None, build: bool = True) -> list[Route]:
    """The routes of ``config["forward"]["routes"]``; ConfigError naming the route and the problem.

    ``build=False`` checks and compiles without making destinations (no producers or pools: for the CLI)."""
    forward = config.get("forward", {})
    routes, names = [], set()
    for number, table in enumerate(forward.get("routes", []), 1):
        values = _checked(number, table)
        name = values["name"]
        if not name or any(c.isspace() or c == ":" for c in name):
            raise _error(number, table, "name must be non-empty, without spaces or ':'")
        if name in names:
            raise _error(number, table, f"two routes are named {name!r}")
        names.add(name)
        try:
            compiled = compile_filter(values["filter"])
        except FilterError as error:
            raise _error(number, table, f"filter: {error}") from None
        destination = _destination(values, config, number, table, reactor) if build else None
        routes.append(Route(name, compiled, values["kind"], destination, values["rate"], values["concurrency"],
                            values["timeout"], values["max_attempts"] or forward.get("max_attempts", 20)))
    return routes


class ForwardService(service.Service):
    """Runs one :class:`~gateway.forward.outbox.RouteWorker` per route, and purges old sent rows hourly."""

    def __init__(self, routes: list[Route], outbox, reactor, keep_days: float = 7.0):
        from gateway.forward.outbox import RouteWorker

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


def forward_services(config: dict, database, reactor=None) -> tuple[Optional[Any], list]:
    """(router sink or None, services to start) for the ``[forward]`` section; ``database`` is the store's
    :class:`gateway.store.db.Database` (the outbox is a table in it). No routes: (None, [])."""
    if reactor is None:
        from twisted.internet import reactor
    from gateway.forward.outbox import ForwardSink, Outbox

    routes = parse_routes(config, reactor)
    if not routes:
        return None, []
    forward = config.get("forward", {})
    outbox = Outbox(database, reactor, retry_base=forward.get("retry_base", 2.0),
                    retry_max=forward.get("retry_max", 300.0))
    runner = ForwardService(routes, outbox, reactor, forward.get("keep_days", 7.0))
    log.info("forwarding: {routes}", routes=", ".join(f"{r.name} ({r.kind})" for r in routes))
    return ForwardSink(routes, outbox), [runner]
