"""Assembles the gateway from one typed config: sources -> pipeline -> router -> sinks, plus the query side.

Protocol modules never read the config; this module does, and hands them plain arguments or their own settings
dataclass. A value a part refuses (a bad whitelist, an unusable endpoint string) becomes a ConfigError naming
the key here.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    globalLogBeginner,
)

from gateway.alerts.files import DirectorySource
from gateway.alerts.kafka import KafkaSource, parse_kafka_url
from gateway.config import Config, ConfigError
from gateway.convert import advertised_url, make_converter, make_schema_library
from gateway.endpoints import EndpointError, http_url, is_loopback, server_endpoint
from gateway.filters import FIELDS, FilterError, compile_filter
from gateway.forward.routes import RouteError, forward_services
from gateway.pipeline import Pipeline, Router
from gateway.pool import WorkerPool, WorkerSettings, default_workers
from gateway.resources import SAMPLES
from gateway.sinks import DirectorySink
from gateway.store import Database, Store, StoreError, StoreHistory
from gateway.times import TimeError, parse_duration
from gateway.voevent.parse import parse_event
from gateway.vtp.replay import replay_on_subscribe
from gateway.vtp.service import vtp_services
from gateway.vtp.settings import VTPSettingsError
from gateway.web import http_site
from gateway.web.metrics import GatewayMetrics
from gateway.web.recent import RecentEvents
from gateway.web.replay import ReplayControl

log = Logger()


class StatsReporter(service.Service):
    """Logs what the pipeline did, every ``interval`` seconds when something changed."""

    def __init__(self, pipeline: Pipeline, interval: float = 10.0, clock=None):
        self.pipeline, self.interval, self.clock = pipeline, interval, clock
        self._last = None
        self._loop = None

    def report(self, force: bool = False) -> None:
        summary = self.pipeline.stats.summary()
        if force or summary != self._last:
            log.info("pipeline: {summary}", summary=summary)
            self._last = summary

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.report)
        if self.clock is not None:
            self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self):
        if self._loop and self._loop.running:
            self._loop.stop()
        self.report(force=True)
        return super().stopService()


#: a generation-0 collection every 20,000 net allocations rather than 700: a burst of alerts allocates millions of
#: short-lived objects, and at the defaults about a tenth of the pipeline's time went to the collector
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Collect less often, and never scan again what was loaded at start (modules, schemas, config)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Gateway(service.MultiService):
    """The whole gateway; ``pipeline``, ``router`` and the named parts are attributes for tests and tools."""

    def __init__(self, config: Config, reactor=None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor  # here, not at the top: importing it installs the default reactor

        self.config = config
        self.reactor = reactor
        self.state_dir = Path(config.gateway.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sources: list = []
        self.router = Router()
        self.started = reactor.seconds()
        self.broker = self.forwarding = None  # the VTP broker and the ForwardService, when configured
        self.metrics = GatewayMetrics(self, reactor)  # reads the parts when scraped: they need not exist yet
        self.recent = RecentEvents(reactor)
        self._open_store()
        try:
            self.converter = converter = make_converter(config, history=self.history)
            self.pipeline = Pipeline(converter, self._parse, self.router, link=converter.link,
                                     stored=self.store.has_ivorn)
            self._add_sinks()
            self._add_forward()
            self._add_sources()
            self._add_vtp()
            self._add_http()
            self._add_pool()
            self.router.add_sink(self.recent)
        except BaseException:
            self.database.stop()  # its threads would keep the process alive after a ConfigError
            raise
        StatsReporter(self.pipeline, clock=self.reactor).setServiceParent(self)

    # -- the pieces, in the order data flows ------------------------------------------------------------------

    def _open_store(self):
        store = self.config.store
        self.database = Database(store.db, self.reactor, cutout_dir=store.cutouts)
        self.store = Store(self.database, max_batch=store.max_batch)
        self.history = StoreHistory(store.history_objects)
        loaded = self.history.load(self.database)  # before the reactor runs: blocking is fine here
        log.info("alert DB {url} ({backend}); {n} objects loaded for Citations", url=_safe_url(store.db),
                 backend=self.database.backend, n=loaded)
        StoreService(self.store).setServiceParent(self)

    @staticmethod
    def _parse(xml: bytes, origin: str):
        return parse_event(xml, origin=origin)

    def _add_sinks(self):
        self.router.add_sink(self.metrics.timed_store(self.store))
        if self.config.output.directory:
            self.router.add_sink(DirectorySink(self.config.output.directory))

    def _add_forward(self):
        with _config_error(RouteError):
            sink, services = forward_services(self.config.forward, self.database, self.reactor, vtp=self.config.vtp)
        self.forwarding = services[0] if services else None
        self._attach(sink, services)

    def _add_sources(self):
        sources, kafka = self.config.sources, self.config.kafka
        files = [name for name in sources.inputs if not name.startswith("kafka://")]
        if not sources.inputs:
            log.info("no inputs configured: replaying the bundled sample alerts from {path}", path=SAMPLES)
            files = [str(SAMPLES)]
        if files:
            self._add_source(DirectorySource(files, self.pipeline, self.state_dir, watch=sources.watch,
                                             interval=sources.watch_interval, clock=self.reactor))
        for url in sources.inputs:
            if url.startswith("kafka://"):
                brokers, topics = parse_kafka_url(url)
                self._add_source(KafkaSource(
                    brokers, topics, self.pipeline, group_id=kafka.group_id,
                    settings={"auto.offset.reset": kafka.auto_offset_reset, **kafka.settings},
                    payload=kafka.payload, library=make_schema_library(self.config), reactor=self.reactor,
                    max_packet_bytes=sources.max_packet_bytes))

    def _add_source(self, source) -> None:
        source.setServiceParent(self)
        self.sources.append(source)

    def _add_pool(self):
        """The worker pool, once the filters that decide which raw record fields must reach the sinks are known."""
        workers = self.config.sources.workers
        if workers < 0:
            return
        with _config_error(FilterError):  # checked already by the routes and rules that use them
            settings = worker_settings(self.config)
        packs = self.database.backend.packs
        if packs is not None:  # cutouts in pack files: the workers write them themselves
            settings = dataclasses.replace(settings, cutout_dir=str(packs.directory))
        self.pipeline.pool = WorkerPool(settings, workers or default_workers(), self.reactor)
        PoolService(self.pipeline.pool).setServiceParent(self)

    def _add_vtp(self):
        with _config_error(VTPSettingsError):
            self.broker, services = vtp_services(self.config.vtp, self.pipeline, self.reactor,
                                                 has_ivorn=self.store.has_ivorn)
        if self.broker is not None:
            self.broker.flush_listeners.append(self.metrics.broadcast)
        self._attach(self.broker, services)
        replay = self.config.replay
        if self.broker is not None and replay.on_subscribe:
            with _config_error(TimeError, key="replay.on_subscribe"):
                seconds = parse_duration(replay.on_subscribe)
            self.broker.on_subscribe = replay_on_subscribe(self.store.events_received, seconds, self.reactor,
                                                           limit=replay.on_subscribe_max)

    def _attach(self, sink, services) -> None:
        """Route events to ``sink`` (None: the part has none) and run ``services`` with the gateway."""
        if sink is not None:
            self.router.add_sink(sink)
        for child in services:
            child.setServiceParent(self)

    def _add_http(self):
        listen = self.config.http.listen
        if not listen:
            return
        with _config_error(EndpointError, key="http.listen"):
            endpoint = server_endpoint(self.reactor, listen)  # before the site, which starts TAP's threads
        # without public_url, TAP's links follow each request's Host header: right for every name the host has
        site = http_site(self.store, self.database, self.reactor, self.config.gateway.public_url or None,
                         self.config.tap, str(self.state_dir / "tap-jobs"), gateway=self)
        if self.broker is not None:  # for `vogateway replay --subscriber IVO` (loopback clients only)
            site.resource.putChild(b"replay", ReplayControl(self.broker, self.store, self.reactor))
        http = StreamServerEndpointService(endpoint, site)
        http.setName("http")
        http.setServiceParent(self)


    # -- what the gateway advertises -------------------------------------------------------------------------

    def startService(self):
        self._advertise_bound_address()
        super().startService()
        self._warn_if_cutouts_unreachable()

    def _bound(self, name: str):
        """The address listener ``name`` is bound to (binding it now if nothing did yet), or None."""
        try:
            listener = self.getServiceNamed(name)
        except KeyError:
            return None
        if listener._waitingForPort is None:
            listener.privilegedStartService()
        ports = []
        listener._waitingForPort.addCallback(lambda port: ports.append(port) or port)
        return ports[0].getHost() if ports else None

    def bound_address(self, name: str):
        """(host, port) listener ``name`` (``http``, ``vtp-broadcast``, ``vtp-receive``) is bound to, or None."""
        address = self._bound(name)
        return None if address is None or not hasattr(address, "port") else (address.host, address.port)

    def _advertise_bound_address(self) -> None:
        """Without ``public_url``, cutout References name the address ``http.listen`` is actually bound to (its
        port may have been 0), never a default of another listener."""
        if self.config.gateway.public_url:
            return
        address = self._bound("http")
        if address is None:
            return
        url = http_url(self.config.http.listen, address.host, address.port)
        self.converter.public_url = url
        if self.pipeline.pool is not None:
            self.pipeline.pool.settings = dataclasses.replace(self.pipeline.pool.settings, public_url=url)
        log.info("cutouts and TAP at {url} (set [gateway] public_url to advertise another address)", url=url)

    def _warn_if_cutouts_unreachable(self) -> None:
        base = self.converter.public_url
        host = urlsplit(base).hostname or ""
        public = [name for name in LISTENERS if (address := self._bound(name)) is not None
                  and not is_loopback(address.host)]
        if base and is_loopback(host) and public:
            log.warn("VOEvents reference cutouts at {base}, a loopback address, while {names} listen beyond this "
                     "machine: subscribers elsewhere cannot fetch them; set [gateway] public_url",
                     base=base, names=", ".join(LISTENERS[name][0] for name in public))


class PoolService(service.Service):
    """Starts the worker processes with the gateway and stops them after the sources."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    def startService(self):
        super().startService()
        self.pool.start().addErrback(lambda failure: log.failure("the worker pool did not start", failure))

    def stopService(self):
        super().stopService()
        return self.pool.stop()


class StoreService(service.Service):
    """Closes the alert DB on stop, once the events being written have been committed."""

    def __init__(self, store):
        self.store = store

    def stopService(self):
        super().stopService()
        return self.store.close()


def worker_settings(config: Config) -> WorkerSettings:
    """What the workers need to build VOEvents as this process would, and which alert fields must come back: the
    top-level record fields named by the filters of routes and subscriber rules (``diaSource.snr`` -> diaSource),
    and the light curves when a TNS route reports them."""
    texts = [route.get("filter", "") for route in config.forward.routes]
    texts += [rule.get("expression", "") for rule in config.vtp.subscriber_rules]
    raw = {name.split(".")[0] for text in texts for name in compile_filter(text).names if name not in FIELDS}
    gateway = config.gateway
    return WorkerSettings(gateway.authority, gateway.stream, advertised_url(config), gateway.role,
                          schema_registry=config.sources.schema_registry or None, raw_fields=frozenset(raw),
                          light_curves=any(route.get("kind") == "tns" for route in config.forward.routes),
                          author_name=gateway.author_name, author_email=gateway.author_email)


@contextmanager
def _config_error(*errors: type, key: str = ""):
    """A part's own error for a value it refuses, raised as the ConfigError the user sees (``key``: the config key
    to name, when the part's message does not)."""
    try:
        yield
    except errors as error:
        raise ConfigError(f"{key}: {error}" if key else str(error)) from None


def _safe_url(url: str) -> str:
    """The DB URL without a password, for logs."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def start_logging(verbose: bool = False, stream=None) -> None:
    """Readable one-line logs on stderr; debug-level event logs only with ``verbose``."""
    level = LogLevel.debug if verbose else LogLevel.info
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)

    def write(event):
        text = formatEventAsClassicLogText(event)
        if text:
            (stream or sys.stderr).write(text)

    globalLogBeginner.beginLoggingTo([FilteringLogObserver(write, [predicate])], redirectStandardIO=False)


#: listener service -> the flag and config key a person changes when it cannot listen
LISTENERS = {"http": ("--http", "http.listen"), "vtp-broadcast": ("--broadcast", "vtp.broadcast"),
             "vtp-receive": ("--receive", "vtp.receive")}


def bind_listeners(gateway: Gateway) -> str:
    """Bind every listening socket before anything starts; "" if all are bound, else one sentence on the first
    that is not (a gateway must not run on without its TAP or VTP ports)."""
    for name, (flag, key) in LISTENERS.items():
        try:
            listener = gateway.getServiceNamed(name)
        except KeyError:
            continue  # that listener is off
        listener._raiseSynchronously = True  # Twisted's switch (twistd sets it too): a failed listen raises here
        try:
            listener.privilegedStartService()  # startService later finds the port bound and does not bind again
        except CannotListenError as error:
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
            return (f"cannot listen on {error.interface or '*'}:{error.port} for {flag} (config {key}): "
                    f"{reason.lower()}")
    return ""


def run(config: Config, verbose: bool = False, banner=None) -> int:
    """Run the gateway until SIGINT/SIGTERM; ``banner(gateway)``: lines logged once it runs (where to find it,
    from the addresses bound)."""
    from twisted.internet import reactor  # here, not at the top: importing it installs the default reactor

    start_logging(verbose)
    try:
        gateway = Gateway(config, reactor)
    except StoreError as error:  # the alert DB cannot be opened: nothing can run
        print(f"vogateway: {error}", file=sys.stderr)
        return 2
    problem = bind_listeners(gateway)
    if problem:
        print(f"vogateway: {problem}", file=sys.stderr)
        gateway.database.stop()
        # a reactor turn and its shutdown: the thread pools the parts registered (TAP's) stop with it
        reactor.callWhenRunning(reactor.stop)
        reactor.run()
        return 2
    tune_gc()
    gateway.startService()
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    for source in gateway.sources:
        done = getattr(source, "finished", None)
        if isinstance(done, defer.Deferred):
            done.addCallback(lambda _: log.info("replay done: {summary}", summary=gateway.pipeline.stats.summary()))
    log.info("vogateway running; Ctrl-C to stop")
    for line in banner(gateway) if banner else ():
        log.info("{line}", line=line)
    reactor.run()
    return 0
