"""The VTP services' settings: the ``[vtp]`` config section, typed (``gateway/config.py`` DEFAULTS documents each
key and its default). Plain data, cheap to import: the config builds it without loading the protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class VTPSettingsError(ValueError):
    """A ``[vtp]`` value that can't be used; the message names the key."""


@dataclass(frozen=True)
class VTPSettings:
    """Endpoints (``HOST:PORT``, ``tls:HOST:PORT`` or Twisted strings; empty: off), identity, limits (seconds,
    bytes), whitelists and subscriber rules (tables, checked when the services are made), TLS PEM paths."""

    broadcast: str
    receive: str
    remotes: tuple[str, ...]
    local_ivo: str
    filter: str
    iamalive_interval: float
    max_frame_bytes: int
    author_whitelist: tuple[str, ...]
    subscriber_whitelist: tuple[str, ...]
    subscriber_buffer_bytes: int
    subscriber_buffer_events: int
    subscriber_rules: tuple[Mapping, ...]
    subscriber_handshake_timeout: float
    subscriber_frame_timeout: float
    subscriber_alive_timeout: float
    author_idle_timeout: float
    remote_alive_timeout: float
    tls_cert: str
    tls_key: str
    tls_ca: str
