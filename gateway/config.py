"""One TOML config for the whole gateway; every key, with its default, is documented in DEFAULTS below.

``vogateway config`` prints DEFAULTS, so a user starts from a file that explains itself. Command-line flags
override the file; the file overrides these defaults. :func:`load` checks the result once (unknown keys and wrong
types are a :class:`ConfigError` naming the key) and returns a :class:`Config`: one frozen dataclass per section,
read by attribute (``config.store.db``). Packages that own their settings define the dataclass (``TapSettings``,
``VTPSettings``, ``ForwardSettings``); this module builds it, and no package imports this module.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional

from gateway.forward.settings import ForwardSettings
from gateway.tap.settings import TapSettings
from gateway.vtp.settings import VTPSettings

__all__ = ["Config", "ConfigError", "DEFAULTS", "defaults", "load", "parse"]

DEFAULTS = """\
# vogateway configuration. Every key is shown with its default value.

[gateway]
# IVORNs are ivo://<authority>/<stream>/<survey>#<localID>: one stream per survey (rubin, ztf) below <stream>;
# localID is the alert id (Rubin 8.0+: "<diaSourceId>-p<processing MJD>"). The author is ivo://<authority>/<stream>.
# (Before: ivo://<authority>/<stream>#<alertId>; such IVORNs are still read.)
authority = "vogateway.local"
stream = "alerts"
# Base URL of this gateway's HTTP service as others reach it; VOEvents reference cutouts at
# <public_url>/cutouts/<alertId>/<kind>.fits. Empty: the address [http] listen is bound to (its host's name when
# bound to every interface), and TAP's links follow each request's Host header.
public_url = ""
# Where the gateway keeps its state (SQLite DB, file checkpoints, UWS job files).
state_dir = "var"
# Role of VOEvents built from alerts: "auto" means "test" for simulated alerts, "observation" otherwise.
role = "auto"
# Who/Author of the VOEvents built here: contactName and contactEmail (empty: no contactEmail); shortName is the
# authority.
author_name = "vogateway operator"
author_email = ""

[sources]
# Inputs: Avro container files, directories of them, or kafka://BROKER[,BROKER]/TOPIC[,TOPIC].
# Empty means: replay the bundled sample alerts.
inputs = []
# Keep watching directories for new files (each file is processed once, across restarts).
watch = false
# Seconds between directory scans when watching.
watch_interval = 2.0
# Confluent-compatible schema registry (GET /schemas/ids/<id>); empty: offline schemas only.
schema_registry = ""
# Largest Avro packet accepted, in bytes.
max_packet_bytes = 4_000_000
# Worker processes that decode alert files and build their VOEvents (the CPU part), fed in batches, while the
# reactor process does the I/O: 0 means one per core; -1 none (everything in the reactor process). Alerts are
# cited, deduplicated and routed in the order they arrived whatever the number (see docs/architecture.rst).
workers = 0

[kafka]
# Consumer group shared by all gateway processes reading the same topics.
group_id = "vogateway"
# "earliest" or "latest": where a new consumer group starts.
auto_offset_reset = "earliest"
# What the Kafka topics carry: "avro" (alert packets, Confluent wire format) or "voevent" (XML, e.g. GCN).
payload = "avro"

[kafka.settings]
# Extra librdkafka properties, passed through unchanged, e.g. for GCN or Rubin:
# "security.protocol" = "SASL_SSL"
# "sasl.mechanisms" = "OAUTHBEARER"
# "sasl.oauthbearer.method" = "oidc"
# "sasl.oauthbearer.client.id" = "..."
# "sasl.oauthbearer.client.secret" = "..."
# "sasl.oauthbearer.token.endpoint.url" = "..."

[output]
# Also write every event into <directory>, named after its IVORN (ivo://a/b#c -> a_b_c.xml); empty: don't.
directory = "var/events"

[store]
# Alert DB: sqlite:///PATH (relative to the working directory), sqlite:////ABSOLUTE/PATH, or
# postgresql://USER@HOST:PORT/DB (tables in schema "gateway"; needs the q3c extension).
db = "sqlite:///var/gateway.db"
# Most events written in one transaction (a burst is written in batches of up to this many).
max_batch = 2000
# Objects whose latest IVORN is kept in memory for Citations (loaded from the DB at start).
history_objects = 200_000
# Directory of the cutout pack files (the FITS stamps, ~60 kB of a Rubin alert's ~80 kB, appended there and
# located by the DB). Empty: beside a SQLite DB file (PATH.cutouts/), in the DB itself on PostgreSQL. Gateway
# processes sharing one PostgreSQL DB must all reach the directory (a shared filesystem); it cuts the database
# server's work per alert by a third.
cutouts = ""

[http]
# TAP service (/tap) and cutouts (/cutouts); endpoint string or HOST:PORT; empty: off.
listen = "127.0.0.1:8080"

[tap]
# Seconds a synchronous query may run before it is cancelled.
sync_timeout = 60.0
# Sync queries running at once, overall and per client address (running and waiting), and how many may wait
# for a slot (the wait counts in sync_timeout); beyond these: HTTP 503 with Retry-After.
sync_max_running = 4
sync_max_per_client = 2
sync_max_queued = 16
# Seconds a client may read nothing of a result before it is disconnected (frees its thread and DB snapshot).
stall_timeout = 300.0
# Async jobs: default EXECUTIONDURATION and the longest a job may ask for, seconds.
async_timeout = 600.0
max_async_timeout = 3600.0
# Rows returned when MAXREC is not given, and the most a query may ask for (QUERY_STATUS OVERFLOW beyond).
maxrec_default = 100_000
maxrec_max = 10_000_000
# TAP_UPLOAD: largest table accepted (bytes, rows); whether UPLOAD may name an http(s) URL to fetch (off: the
# server would fetch wherever a client says; on: only from public addresses, or these hosts, addresses and
# networks, e.g. ["data.example.org", "10.1.0.0/16"]).
upload_max_bytes = 33_554_432
upload_max_rows = 1_000_000
http_uploads = false
upload_allow_hosts = []
# Async jobs kept at most, running at once, and seconds a job is kept (its destruction time).
max_jobs = 1000
max_running = 2
retention = 86_400.0

[vtp]
# Broker for subscribers; endpoint string, HOST:PORT, or tls:HOST:PORT (TLS with the tls_* files below); empty: off.
broadcast = "127.0.0.1:8099"
# Receiver for authors; empty: off.
receive = "127.0.0.1:8098"
# Remote brokers to subscribe to (HOST:PORT or endpoint strings).
remotes = []
# Our identity in transport messages.
local_ivo = "ivo://vogateway.local/gateway"
# XPath filter sent upstream to remote brokers; empty: everything.
filter = ""
# Seconds between iamalive messages to subscribers.
iamalive_interval = 60.0
# Largest VTP frame accepted, in bytes.
max_frame_bytes = 1_000_000
# Who may submit events / subscribe: IP networks ("10.0.0.0/8", "::1/128") or TLS client identities
# written "cn:NAME" (the client certificate's subject commonName, on tls: ports with tls_ca set).
author_whitelist = ["127.0.0.1/32"]
subscriber_whitelist = ["0.0.0.0/0", "::/0"]
# Per-subscriber send buffer, beyond Twisted's own ~64 KiB. Slow-subscriber policy: a subscriber whose queue
# overflows either bound is disconnected and logged; the queued events count as missed for it.
subscriber_buffer_bytes = 4_000_000
subscriber_buffer_events = 1_000
# Server-side rules for subscribers (first match wins), one table each, matched by network or TLS identity:
#   [[vtp.subscriber_rules]]
#   network = "192.168.0.0/16"       # or: identity = "alice" (client certificate commonName)
#   filter = "//Param[@name='mag' and @value < 19]"   # XPath on the VOEvent; empty: everything
#   expression = "mag < 19 and band in ('g', 'r')"   # or/and the filter language of routes (`vogateway routes fields`)
#   max_events = 20                  # cap: at most this many events per window (0: no cap); default 20
#   window = 30.0                    # seconds; default 30
# Subscribers matching no rule get every event (after their own upstream filter), uncapped.
subscriber_rules = []
# Idle and trickling subscriber connections are closed, with a log line (0: no bound): seconds after connecting
# (TLS handshake included) by which a subscriber must have sent its first whole message (its authenticate reply);
# seconds one message may take to arrive once its first bytes came (a slowloris trickle); seconds it has to answer
# an iamalive.
subscriber_handshake_timeout = 30.0
subscriber_frame_timeout = 30.0
subscriber_alive_timeout = 60.0
# Seconds an author connection may stay silent before the receiver closes it.
author_idle_timeout = 20.0
# Seconds without any message from a remote broker before we reconnect (Comet sends iamalive every 60).
remote_alive_timeout = 120.0
# TLS (PEM files) for endpoints written tls:HOST:PORT (broadcast, receive, remotes). tls_cert/tls_key: our
# certificate and key (the key may be inside tls_cert). tls_ca: CA that signs the peers we trust; on our ports
# clients are then asked for a certificate (optional: without one they are whitelisted by network only); for
# remotes it verifies the broker (empty: the system's trust store). Twisted ssl: endpoint strings work too.
tls_cert = ""
tls_key = ""
tls_ca = ""

[forward]
# Routes send selected events on: GCN-style JSON notices or VOEvents to Kafka topics, VOEvents to VTP brokers,
# AT reports to the TNS, webhooks, commands. Each forward is first written to an outbox table in the alert DB
# (store.db), then delivered with retries: exponential backoff with jitter from retry_base up to retry_max
# seconds, at most max_attempts attempts (then "failed": `vogateway outbox` lists, retries or drops items).
# Endpoints that answer 429 (x-rate-limit-reset / Retry-After) pause their route; nothing is lost meanwhile.
# An endpoint that fails 5 attempts in a row is taken as down: its route backs off (same schedule) and sends one
# probe at a time until one gets through, so an outage does not use up every queued item's attempts.
retry_base = 2.0
retry_max = 300.0
max_attempts = 20
# Days delivered items stay in the outbox before they are purged (tns_report keeps every TNS report).
keep_days = 7.0
# One table per route (try a filter first: `vogateway routes test FILTER [INPUT...]`):
#   [[forward.routes]]
#   name = "bright"            # unique, no spaces; names the route's outbox items
#   filter = "reliability > 0.9 and mag < 19.5 and band in ('g', 'r') and not solar_system"
#                              # empty: everything. Fields, functions: `vogateway routes fields`
#   kind = "webhook"           # gcn-kafka | voevent-kafka | vtp | tns | webhook | command
#   rate = 5.0                 # at most this many deliveries per second (0: no cap)
#   concurrency = 4            # deliveries in flight at once (command: programs running at once)
#   timeout = 30.0             # seconds one attempt may take
#   max_attempts = 0           # 0: forward.max_attempts
# and the settings of its kind:
#   gcn-kafka, voevent-kafka:  brokers = "HOST:PORT[,HOST:PORT]", topic = "...",
#                              settings = {"security.protocol" = "SASL_SSL", "sasl.mechanisms" = "OAUTHBEARER",
#                              "sasl.oauthbearer.method" = "oidc", ...}   (librdkafka properties, passed on)
#   gcn-kafka also:            data_archive_page = "" (URL template of the object's data page: {internal_name},
#                              {object_key}, {alert_id}, {ivorn}; empty: no data_archive_page in the notice)
#   vtp:                       remote = "HOST:PORT" (or tls:HOST:PORT, an endpoint string), local_ivo = ""
#   tns:                       url = "https://sandbox.wis-tns.org/api", api_key_env = "TNS_API_KEY" (or api_key),
#                              bot_id = 0, bot_name = "", reporting_group_id = "", discovery_data_source_id = "",
#                              reporter = "", at_type = "1", instrument = "" (TNS id; defaults ZTF 196, Rubin 287),
#                              filters = {g = "110", r = "111", i = "112"} (band -> TNS filter id; defaults ZTF
#                              g r i 110-112, Rubin u g r i z y 160-165),
#                              remarks = "", poll_interval = 30.0
#   webhook:                   url = "https://...", secret_env = "" (or secret: HMAC-SHA256 signature header)
#   command:                   command = ["/path/to/program", "arg"], kill_grace = 5.0
routes = []

[replay]
# Replay on subscribe: every VTP subscriber, once connected, is sent again the stored events the gateway received
# in the last on_subscribe (a duration: "90s", "10m", "2h", "1d"; empty: off), through its own filters, paced by
# its acks, at most on_subscribe_max events (0: no cap). They are the same IVORNs it may have had already: VTP
# subscribers drop what they have seen (see docs/architecture.rst, Replay, and `vogateway replay --help`).
on_subscribe = ""
on_subscribe_max = 10_000
"""


class ConfigError(ValueError):
    """A config file or flag that can't be used; the message says which key and why."""


def conforms(value: Any, expected: type) -> bool:
    """Is ``value`` usable where a TOML value of type ``expected`` is documented? An int is a float here (TOML
    ``2`` for ``2.0``); a bool is not an int (TOML ``true`` for a count is a mistake)."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def frozen(value: Any) -> Any:
    """``value`` made read-only all the way down: tables become mappings nobody can change, arrays tuples (one
    typed config is shared by every part of the gateway; none may change what the others read)."""
    if isinstance(value, dict):
        return MappingProxyType({key: frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(frozen(item) for item in value)
    return value


@dataclass(frozen=True)
class GatewaySettings:
    """``[gateway]``: how VOEvents built from alerts are named (IVORN parts, role) and where state lives."""

    authority: str
    stream: str
    public_url: str
    state_dir: str
    role: str
    author_name: str
    author_email: str


@dataclass(frozen=True)
class SourcesSettings:
    """``[sources]``: alert inputs (paths, ``kafka://`` URLs; none: the bundled samples) and how they are read."""

    inputs: tuple[str, ...]
    watch: bool
    watch_interval: float  # s
    schema_registry: str
    max_packet_bytes: int
    workers: int  # 0: one per core; -1: none


@dataclass(frozen=True)
class KafkaSettings:
    """``[kafka]``: the consumer of ``kafka://`` inputs."""

    group_id: str
    auto_offset_reset: str
    payload: str
    settings: Mapping[str, Any]  # librdkafka properties, passed through unchecked


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: the alert DB and how it is written."""

    db: str  # sqlite:///PATH or postgresql://...
    max_batch: int  # events per transaction at most
    history_objects: int  # objects whose latest IVORN is remembered for Citations
    cutouts: str  # directory of the cutout pack files ("": beside a SQLite file, in the DB on PostgreSQL)


@dataclass(frozen=True)
class OutputSettings:
    """``[output]``: the directory every event is also written to, named after its IVORN (empty: none)."""

    directory: str


@dataclass(frozen=True)
class HttpSettings:
    """``[http]``: where TAP and cutouts listen (endpoint string or ``HOST:PORT``; empty: off)."""

    listen: str


@dataclass(frozen=True)
class ReplaySettings:
    """``[replay]``: what a VTP subscriber is sent again when it connects (``on_subscribe``: a duration; "": off)."""

    on_subscribe: str
    on_subscribe_max: int


@dataclass(frozen=True)
class Config:
    """The whole config, one attribute per section (each field's name is its TOML section)."""

    gateway: GatewaySettings
    sources: SourcesSettings
    kafka: KafkaSettings
    output: OutputSettings
    store: StoreSettings
    http: HttpSettings
    tap: TapSettings
    vtp: VTPSettings
    forward: ForwardSettings
    replay: ReplaySettings


#: the dataclass of each section, by its TOML name
SECTIONS: dict[str, type] = {
    "gateway": GatewaySettings, "sources": SourcesSettings, "kafka": KafkaSettings, "output": OutputSettings,
    "store": StoreSettings, "http": HttpSettings, "tap": TapSettings, "vtp": VTPSettings, "forward": ForwardSettings,
    "replay": ReplaySettings,
}

# Sections whose keys are not ours to check (passed through to librdkafka).
FREE_FORM = {"kafka.settings"}


def defaults() -> dict[str, Any]:
    """DEFAULTS as a plain (mutable) TOML document: what :func:`parse` checks a changed copy of."""
    return tomllib.loads(DEFAULTS)


def _merge(base: dict, override: dict, where: str = "") -> dict:
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if where in FREE_FORM:
            base[key] = value
        elif key not in base:
            raise ConfigError(f"unknown config key {path!r}")  # a typo must not silently mean "default"
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} is a section, got {value!r}")
            _merge(base[key], value, path)
        else:
            expected = type(base[key])
            if not conforms(value, expected):
                raise ConfigError(f"config key {path!r} should be {expected.__name__}, got {value!r}")
            base[key] = float(value) if expected is float else value
    return base


def _typed(complete: dict) -> Config:
    return Config(**{name: section(**frozen(complete[name])) for name, section in SECTIONS.items()})


def parse(document: Mapping) -> Config:
    """The typed config of a TOML ``document`` laid over the defaults; ConfigError naming a bad key."""
    return _typed(_merge(defaults(), copy.deepcopy(dict(document))))


def load(path: Optional[Path] = None, overrides: Optional[dict] = None) -> Config:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` (nested dict from flags)."""
    document = defaults()
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        try:
            _merge(document, tomllib.loads(text))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: {error}") from None
    if overrides:
        _merge(document, copy.deepcopy(overrides))
    return _typed(document)
