"""Where alert schemas come from, and how a schema is recognised.

Three sources, asked in this order for a wire-format schema id:

1. the schemas inside ``lsst-alert-packet`` (optional extra ``rubin``; GPL-3.0, so only imported when
   installed, and only its files are used), one per Rubin version M.m it ships, wire id ``M * 100 + m``;
2. the ZTF schemas under ``schemas/ztf/<version>/ztf.alert.avsc`` (written from the writer schemas ZTF embeds
   in its alert files; ZTF does not publish a wire format, so these are looked up by version only);
3. a Confluent-compatible schema registry: ``GET <url>/schemas/ids/<id>`` answers ``{"schema": "<avsc>"}``.
   Every answer is cached for the life of the process (a registry id never changes meaning). This is how
   Rubin publishes new minor versions, so the gateway reads them without an upgrade.

A registry lookup is blocking HTTP: call :meth:`SchemaLibrary.by_id` from a thread (the Kafka consumer
thread does), or :meth:`SchemaLibrary.lookup` from the reactor, which defers to a thread only on a cache miss.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import fastavro
import fastavro.schema

from gateway.alerts.avro import RecordReader
from gateway.errors import in_words
from gateway.resources import resource

#: Rubin's top-level record is named lsst.vM_m.alert
_RUBIN_NAME = re.compile(r"^lsst\.v(\d+)_(\d+)\.alert$")
_ZTF_NAME = "ztf.alert"


class SchemaLookupError(LookupError):
    """No schema for an id or version; ``reason`` starts with a short kind ("unknown schema id", ...).

    ``transient`` is True when asking again later may work (registry unreachable or answering 5xx), so a
    Kafka source keeps the message instead of rejecting it.
    """

    def __init__(self, reason: str, transient: bool = False):
        self.reason, self.transient = reason, transient
        super().__init__(reason)


@dataclass(frozen=True)
class AlertSchema:
    """One schema: ``parsed`` is ready for fastavro readers; ``definition`` is the plain JSON form; ``reader``
    decodes schemaless records written with it."""

    survey: str
    version: str
    schema_id: Optional[int]
    definition: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False, compare=False)
    origin: str = ""

    @classmethod
    def from_definition(cls, definition: dict, schema_id: Optional[int] = None, origin: str = "") -> "AlertSchema":
        survey, version = identify(definition)
        return cls(survey, version, schema_id, definition, fastavro.parse_schema(definition), origin)

    @cached_property
    def reader(self) -> RecordReader:
        return RecordReader(self.definition, self.parsed)


def rubin_schema_id(version: str) -> int:
    """Rubin's wire-format id for version "M.m": M * 100 + m (7.4 -> 704, 11.1 -> 1101)."""
    major, minor = (int(part) for part in version.split("."))
    return major * 100 + minor


def full_name(schema: dict) -> str:
    name = schema.get("name", "")
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def identify(schema: dict, record: Optional[dict] = None) -> tuple[str, str]:
    """(survey, version) of a top-level alert schema, from its record name; never guessed.

    Rubin: ``lsst.vM_m.alert`` -> ("rubin", "M.m"). ZTF: ``ztf.alert`` with the schema's ``version``
    attribute, else the record's ``schemavsn`` -> ("ztf", "3.3"). Anything else raises SchemaLookupError.
    """
    if not isinstance(schema, dict):
        raise SchemaLookupError(f"not an alert schema: top-level type is {type(schema).__name__}")
    name = full_name(schema)
    match = _RUBIN_NAME.match(name)
    if match:
        return "rubin", f"{int(match[1])}.{int(match[2])}"
    if name == _ZTF_NAME:
        version = schema.get("version") or (record or {}).get("schemavsn")
        if not version:
            raise SchemaLookupError("unknown schema: ZTF schema without a version attribute or schemavsn")
        return "ztf", str(version)
    raise SchemaLookupError(f"unknown schema: record {name!r} is neither lsst.vM_m.alert nor ztf.alert")


def plain(parsed: dict) -> dict:
    """A schema without fastavro's bookkeeping keys (so it can be written out as JSON)."""
    return {key: value for key, value in parsed.items() if not key.startswith("__")}


def packaged_rubin_versions() -> dict[str, Path]:
    """Version "M.m" -> top-level .avsc file, for every version the installed lsst-alert-packet ships.

    Empty when lsst-alert-packet is not installed (it is the optional extra ``rubin``).
    """
    try:
        from lsst.alert.packet import get_schema_root
    except ImportError:
        return {}
    root = Path(str(get_schema_root()))
    found = {}
    for path in root.glob("*/*/lsst.v*_*.alert.avsc"):
        major, minor = path.parent.parent.name, path.parent.name
        if major.isdigit() and minor.isdigit():
            found[f"{int(major)}.{int(minor)}"] = path
    return dict(sorted(found.items(), key=lambda item: tuple(int(p) for p in item[0].split("."))))


def ztf_versions(root: Optional[Path] = None) -> dict[str, Path]:
    """Version -> schema file for the ZTF schemas under ``schemas/ztf/``."""
    try:
        root = Path(root) if root is not None else resource("schemas", "ztf")
    except FileNotFoundError:
        return {}
    return {path.parent.name: path for path in sorted(root.glob("*/ztf.alert.avsc"))}


def _version_key(version: str):
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"[.]", version))


class SchemaLibrary:
    """Looks schemas up by wire id (:meth:`by_id`) and by (survey, version) (:meth:`by_version`).

    ``registry_url``: a Confluent-compatible registry, or None for offline only. ``packaged``: use the
    schemas in lsst-alert-packet when it is installed. ``ztf_root``: folder of ZTF schemas (default
    ``schemas/ztf``). ``timeout``: seconds for one registry request. ``negative_ttl``: seconds a final "no"
    from the registry (404, an unusable schema) is remembered, so a stream of bad ids does not become a
    stream of requests.
    """

    def __init__(self, registry_url: Optional[str] = None, packaged: bool = True, ztf_root: Optional[Path] = None,
                 timeout: float = 10.0, negative_ttl: float = 60.0):
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.timeout, self.negative_ttl = timeout, negative_ttl
        self._refused: dict[int, tuple[float, SchemaLookupError]] = {}
        self._rubin_files = packaged_rubin_versions() if packaged else {}
        self._ztf_files = ztf_versions(ztf_root)
        self._by_id: dict[int, AlertSchema] = {}
        self._by_version: dict[tuple[str, str], AlertSchema] = {}
        self._lock = threading.Lock()
        #: HTTP requests made to the registry (for logs and tests)
        self.registry_requests = 0

    # -- what is known offline ---------------------------------------------------------------------------------

    def versions(self, survey: str) -> list[str]:
        """Versions available offline (plus any already fetched from the registry), oldest first."""
        files = self._rubin_files if survey == "rubin" else self._ztf_files if survey == "ztf" else {}
        fetched = {version for (s, version) in self._by_version if s == survey}
        return sorted(set(files) | fetched, key=_version_key)

    def by_version(self, survey: str, version: str) -> AlertSchema:
        """The schema of (survey, version), from the offline files or an earlier registry answer."""
        key = (survey, version)
        found = self._by_version.get(key)
        if found is not None:
            return found
        files = self._rubin_files if survey == "rubin" else self._ztf_files if survey == "ztf" else {}
        path = files.get(version)
        if path is None:
            raise SchemaLookupError(f"unknown schema version: {survey} {version} (have {', '.join(self.versions(survey)) or 'none'})")
        schema = self._load_file(path, survey)
        return self._remember(schema)

    def _load_file(self, path: Path, survey: str) -> AlertSchema:
        # load_schema resolves the named types the top-level file refers to from its sibling .avsc files
        parsed = fastavro.schema.load_schema(str(path))
        definition = plain(parsed)
        found_survey, version = identify(definition)
        if found_survey != survey:
            raise SchemaLookupError(f"unknown schema: {path} holds a {found_survey} schema, expected {survey}")
        schema_id = rubin_schema_id(version) if survey == "rubin" else None
        return AlertSchema(survey, version, schema_id, definition, parsed, origin=str(path))

    def _remember(self, schema: AlertSchema) -> AlertSchema:
        with self._lock:
            self._by_version.setdefault((schema.survey, schema.version), schema)
            if schema.schema_id is not None:
                self._by_id.setdefault(schema.schema_id, schema)
        return schema

    # -- wire ids ------------------------------------------------------------------------------------------------

    def cached(self, schema_id: int) -> Optional[AlertSchema]:
        """The schema for ``schema_id`` if it can be had without a network request, else None."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        version = f"{schema_id // 100}.{schema_id % 100}"
        if version in self._rubin_files:
            return self.by_version("rubin", version)
        return None

    def by_id(self, schema_id: int) -> AlertSchema:
        """The schema for a wire-format id. BLOCKING on a registry request: not for the reactor thread."""
        found = self.cached(schema_id)
        if found is not None:
            return found
        if not self.registry_url:
            offline = "not shipped by lsst-alert-packet" if self._rubin_files else "lsst-alert-packet not installed"
            raise SchemaLookupError(f"unknown schema id: {schema_id} ({offline}; no schema registry configured)")
        return self._fetch(schema_id)

    def lookup(self, schema_id: int, reactor=None):
        """Deferred firing with the schema for ``schema_id``; the registry request (if any) runs in a thread."""
        from twisted.internet import defer, threads

        found = self.cached(schema_id)
        if found is not None:
            return defer.succeed(found)
        if reactor is None:
            from twisted.internet import reactor
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.by_id, schema_id)

    def _fetch(self, schema_id: int) -> AlertSchema:
        refused = self._refused.get(schema_id)
        if refused is not None and time.monotonic() < refused[0]:
            raise refused[1]  # asked recently and the answer was final: don't hammer the registry
        try:
            schema = self._request(schema_id)
        except SchemaLookupError as error:
            if not error.transient:
                self._refused[schema_id] = (time.monotonic() + self.negative_ttl, error)
            raise
        with self._lock:
            self._by_id[schema_id] = schema
            self._by_version.setdefault((schema.survey, schema.version), schema)
            self._refused.pop(schema_id, None)
        return schema

    def _request(self, schema_id: int) -> AlertSchema:
        url = f"{self.registry_url}/schemas/ids/{int(schema_id)}"
        with self._lock:
            self.registry_requests += 1
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise SchemaLookupError(f"unknown schema id: {schema_id} (registry {self.registry_url} says 404)") from None
            raise SchemaLookupError(f"schema registry error: HTTP {error.code} for {url}",
                                    transient=error.code >= 500 or error.code == 429) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SchemaLookupError(f"schema registry unreachable: {url}: {reason}", transient=True) from None
        try:
            text = json.loads(body)["schema"]
            definition = json.loads(text) if isinstance(text, str) else text
            return AlertSchema.from_definition(definition, schema_id, origin=url)
        except SchemaLookupError as error:
            raise SchemaLookupError(f"unknown schema: id {schema_id} from {url}: {error.reason}") from None
        except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as error:
            raise SchemaLookupError(f"schema registry bad answer: {url}: {in_words(error)}") from None
