"""The TAP service's settings: the ``[tap]`` section of the config, with its defaults, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TapSettings:
    """Limits and sizes of the TAP service (the ``[tap]`` config section documents each one)."""

    #: seconds a synchronous query may run before it is cancelled
    sync_timeout: float = 60.0
    #: sync queries running at once, overall and per client address (running and waiting), and how many may
    #: wait for a slot (the wait counts in sync_timeout); beyond: HTTP 503 with Retry-After
    sync_max_running: int = 4
    sync_max_per_client: int = 2
    sync_max_queued: int = 16
    #: seconds a sync client may read nothing of a result before it is disconnected
    stall_timeout: float = 300.0
    #: seconds: default EXECUTIONDURATION of async jobs, and the longest one may ask for
    async_timeout: float = 600.0
    max_async_timeout: float = 3600.0
    #: rows returned when MAXREC is not given, and the most a query may ask for
    maxrec_default: int = 100_000
    maxrec_max: int = 10_000_000
    #: largest TAP_UPLOAD table accepted (bytes, rows)
    upload_max_bytes: int = 33_554_432
    upload_max_rows: int = 1_000_000
    #: UPLOAD=name,http://... makes the server fetch the table; off by default (the server would fetch from
    #: wherever a client says); when on, only from public addresses, or the hosts/networks listed here
    http_uploads: bool = False
    upload_allow_hosts: tuple[str, ...] = ()
    #: async jobs kept at most, and running at once
    max_jobs: int = 1000
    max_running: int = 2
    #: seconds an async job is kept (its destruction time at the latest)
    retention: float = 86_400.0
