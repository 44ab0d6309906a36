"""Forwarding's settings: the ``[forward]`` config section, typed (``gateway/config.py`` DEFAULTS documents each
key). Plain data, cheap to import: the config builds it without loading the destinations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardSettings:
    """Outbox retry schedule (seconds), attempts, how long delivered rows stay (days), and the route tables as
    written: :func:`gateway.forward.routes.parse_routes` checks them against its registry of kinds."""

    retry_base: float
    retry_max: float
    max_attempts: int
    keep_days: float
    routes: tuple[Mapping, ...]
