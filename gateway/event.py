"""The unit that flows from the converters to every sink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from gateway.times import utcnow
from gateway.view import EMPTY, View

if TYPE_CHECKING:
    from gateway.alerts import Alert

__all__ = ["ROLES", "Event", "utcnow"]

ROLES = ("observation", "prediction", "utility", "test")


@dataclass(frozen=True, slots=True)
class Event:
    """One VOEvent on its way through the gateway.

    ``xml`` is the serialized VOEvent exactly as it will be sent; ``alert`` is the decoded alert it was built
    from, or None when the event arrived as a VOEvent (VTP, Kafka XML); ``view`` is its survey-neutral reading
    (:class:`gateway.view.View`), made once when the event entered the gateway, which every sink reads.
    """

    ivorn: str
    role: str
    received: datetime
    xml: bytes
    alert: Optional["Alert"] = None
    origin: str = ""
    view: View = EMPTY
    #: the alert DB rows of the alert but its voevent row (a ``gateway.store.rows.Rows``), made where the event was
    #: built (a worker process); None: the store makes them from the view
    rows: Any = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"VOEvent role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.received.tzinfo is None:
            raise ValueError("Event.received must be timezone-aware (UTC)")
