"""What flows through the outbox: what a destination prepares for an event, the claimed row it delivers, and
what a delivery attempt came to (build outcomes with the helpers here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from twisted.internet import defer

from gateway.event import Event


@dataclass
class Prepared:
    """What a destination wants stored for one event: the bytes to send and what it needs to send them.

    ``once_per_object``: queue only if this object was never queued for a TNS report before (``tns_report``).
    ``failed``: a reason when the event cannot be forwarded at all (stored as a failed row, for the operator).
    """

    key: str
    payload: Optional[bytes]  # None: the event's VOEvent (stored once per event, shared by its routes)
    meta: dict = field(default_factory=dict)
    objectid: Optional[str] = None
    once_per_object: bool = False
    failed: str = ""


@dataclass
class Item:
    """One claimed row, handed to a destination's ``deliver``."""

    id: int
    route: str
    key: str
    ivorn: str
    objectid: Optional[str]
    payload: bytes
    meta: dict
    attempts: int
    stage: str  # "send", or "poll" (TNS: the report was accepted, its reply is awaited)
    result: str
    uncertain: bool


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to. Build with the helpers below."""

    kind: str  # delivered | retry | failed | submitted | poll | throttled
    detail: str = ""
    result: str = ""
    after: Optional[float] = None  # seconds: the endpoint's own wait (throttled, poll), or a retry override
    uncertain: bool = False  # retry after an attempt the endpoint may have accepted
    pause: Optional[float] = None  # seconds the whole route should wait (the endpoint said its quota is used up)


def delivered(result: str = "") -> Outcome:
    return Outcome("delivered", result=result)


def retry(reason: str, uncertain: bool = False, after: Optional[float] = None) -> Outcome:
    return Outcome("retry", reason, after=after, uncertain=uncertain)


def failed(reason: str) -> Outcome:
    return Outcome("failed", reason)


def submitted(result: str, after: float) -> Outcome:
    return Outcome("submitted", result=result, after=after)


def poll_again(after: float, reason: str = "") -> Outcome:
    return Outcome("poll", reason, after=after)


def throttled(after: float, reason: str = "rate limited") -> Outcome:
    return Outcome("throttled", reason, after=after)


class Destination(Protocol):
    """One kind of endpoint. ``prepare`` runs on the reactor in the sink (keep it cheap); ``deliver`` returns a
    Deferred firing with an :class:`Outcome` (it may also fail: that counts as an uncertain retry)."""

    kind: str

    def prepare(self, event: Event, facts, route: str) -> Optional[Prepared]: ...

    def deliver(self, item: Item) -> defer.Deferred: ...
