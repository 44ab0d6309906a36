"""What the status page and the metrics need to remember of the stream: a router sink that counts events per
source, keeps the last few events and the positions of the last hour's. Bounded in memory whatever the rate."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Optional

from gateway.event import Event

#: what a cutout reference in our VOEvents looks like (``voevent.build`` writes ``.../cutouts/<alertId>/<kind>.fits``)
_CUTOUT_REFERENCE = re.compile(rb"/cutouts/(\d{1,20})/([a-z]{1,20})\.fits")


def source_label(origin: str) -> str:
    """The source an event's origin names, coarse enough for a metric label: ``kafka://TOPIC`` (partitions
    folded), ``vtp-author`` (any author host), ``vtp:REMOTE``, or ``files`` (every input file)."""
    if origin.startswith("kafka://"):
        return origin.split("[", 1)[0]
    if origin.startswith("vtp-author:"):
        return "vtp-author"
    if origin.startswith("vtp:"):
        return origin
    return "files"


@dataclass(frozen=True)
class Seen:
    """One recent event as the status page shows it (every text here came from an alert or a peer: escape it)."""

    ivorn: str
    received: float  # Unix seconds
    origin: str
    survey: Optional[str]
    alert_id: Optional[int]
    object_key: Optional[str]
    band: Optional[str]
    mag: Optional[float]
    ra: Optional[float]
    dec: Optional[float]
    xml: bytes

    @property
    def cutouts(self) -> tuple[tuple[int, str], ...]:
        """(alertId, kind) of the cutouts the VOEvent references: read when the page asks (only the last few
        events are kept, and scanning every event's XML cost the reactor ~8 % of its time in a visit)."""
        return tuple(dict.fromkeys((int(i), k.decode()) for i, k in _CUTOUT_REFERENCE.findall(self.xml)))


class RecentEvents:
    """Router sink (never waits): per-source counts, the last ``keep`` events, and the (time, ra, dec, band) of
    at most ``max_points`` events of the last ``window`` seconds (the sky map)."""

    def __init__(self, clock, keep: int = 20, window: float = 3600.0, max_points: int = 20_000):
        self.clock, self.window = clock, window
        self.by_source: Counter = Counter()
        self.latest: deque[Seen] = deque(maxlen=keep)
        self.points: deque[tuple[float, float, float, str]] = deque(maxlen=max_points)

    def accept(self, event: Event) -> None:
        view, now = event.view, self.clock.seconds()
        self.by_source[source_label(event.origin)] += 1
        self.latest.appendleft(Seen(event.ivorn, event.received.timestamp(), event.origin, view.survey, view.alert_id,
                                    view.object_key, view.band, view.mag, view.ra, view.dec, event.xml))
        if view.ra is not None and view.dec is not None:
            self.points.append((now, view.ra, view.dec, view.band or ""))
        return None

    def sky(self) -> list[tuple[float, float, float, str]]:
        """(when, ra deg, dec deg, band) of the events of the last ``window`` seconds, oldest first."""
        horizon = self.clock.seconds() - self.window
        while self.points and self.points[0][0] < horizon:
            self.points.popleft()
        return list(self.points)

    def voevent(self, ivorn: str) -> Optional[bytes]:
        """The XML of a recent event, or None when it is not among the last ``keep``."""
        return next((seen.xml for seen in self.latest if seen.ivorn == ivorn), None)
