"""The unit that flows from the converters to every sink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from gateway.alerts import Alert
    from gateway.alerts.fields import Detection

ROLES = ("observation", "prediction", "utility", "test")


@dataclass(frozen=True, slots=True)
class Event:
    """One VOEvent on its way through the gateway.

    ``xml`` is the serialized VOEvent exactly as it will be sent; ``alert`` is the decoded alert it was built
    from, or None when the event arrived as a VOEvent (VTP, Kafka XML); ``detection`` is the alert's triggering
    detection as the converter read it (``gateway.alerts.fields.Detection``), so sinks need not read it again.
    """

    ivorn: str
    role: str
    received: datetime
    xml: bytes
    alert: Optional["Alert"] = None
    origin: str = ""
    detection: Optional["Detection"] = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"VOEvent role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.received.tzinfo is None:
            raise ValueError("Event.received must be timezone-aware (UTC)")


def utcnow() -> datetime:
    """Now, timezone-aware UTC (never naive ``utcnow``)."""
    return datetime.now(timezone.utc)
