"""Safe parsing of VOEvents that arrive as XML (VTP, Kafka) into :class:`gateway.event.Event`.

Incoming XML is hostile until proven otherwise. :func:`safe_fromstring` (shared with the VTP transport
parser) enforces, before anything else is looked at:

- a size limit (bytes, checked before parsing);
- no DTD at all: a ``<!DOCTYPE`` is refused, so internal entities (billion laughs) and external entities
  (``SYSTEM "file:///etc/passwd"`` or ``"http://..."``) are never declared, let alone expanded or fetched.
  The parser is also configured not to resolve entities, not to load DTDs and not to touch the network,
  so an encoding trick that hid the DOCTYPE from the byte scan still expands and fetches nothing;
- libxml2's default limits on depth and text size (``huge_tree=False``).

:func:`parse_event` then checks that the root is a VOEvent with a well-formed IVORN and a known role and
returns an Event that keeps the original bytes (never re-serialized), with its view
(:func:`gateway.voevent.read.view_of_tree`).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Optional

from lxml import etree

from gateway.alerts import AlertError, fields
from gateway.event import ROLES, Event
from gateway.times import utcnow
from gateway.view import EMPTY, View
from gateway.voevent.ivorn import FORMS, is_event_ivorn
from gateway.voevent.read import view_of_tree

#: Namespaces of VOEvent roots we accept (2.0; 1.1 is still seen in archives)
VOEVENT_NAMESPACES = ("http://www.ivoa.net/xml/VOEvent/v2.0", "http://www.ivoa.net/xml/VOEvent/v1.1")
#: Default size limit for one VOEvent, bytes (Comet caps VTP frames at 99,999)
MAX_BYTES = 1_000_000

_local = threading.local()


class VOEventError(ValueError):
    """An incoming VOEvent we refuse; the message says why (``line``: where, when known)."""

    def __init__(self, reason: str, line: Optional[int] = None):
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason, self.line = reason, line


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers must not be shared between threads)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_blank_text=False, collect_ids=False)
    return parser


def safe_fromstring(data: bytes, max_bytes: int = MAX_BYTES) -> etree._Element:
    """Parse untrusted XML bytes; the root element, or :class:`VOEventError` saying why not.

    Refuses: more than ``max_bytes``; text (str) instead of bytes; any DOCTYPE/DTD; anything not well-formed.
    """
    if isinstance(data, str):
        raise VOEventError("XML must be given as bytes, not text")
    size = len(data)
    if size > max_bytes:
        raise VOEventError(f"too large: {size} bytes > limit {max_bytes}")
    if not size or not data.strip():
        raise VOEventError("not XML: empty document")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise VOEventError("DOCTYPE/DTD present: refused (no DTDs or entity declarations are accepted)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        raise VOEventError(f"not XML: {error.msg}", line=error.lineno) from None
    except ValueError as error:  # e.g. lxml refusing an encoding declaration it cannot honour
        raise VOEventError(f"not XML: {error}") from None
    if root is None:
        raise VOEventError("not XML: no root element")
    docinfo = root.getroottree().docinfo
    # the byte scan can be dodged with a non-ASCII-compatible encoding (UTF-16): check what was parsed too
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.system_url:
        raise VOEventError("DOCTYPE/DTD present: refused (no DTDs or entity declarations are accepted)")
    return root


def check_ivorn(ivorn: Optional[str]) -> str:
    """The IVORN if it names one event in any form the standards allow (:mod:`gateway.voevent.ivorn`);
    else :class:`VOEventError`."""
    if not ivorn:
        raise VOEventError("missing ivorn attribute")
    if not is_event_ivorn(ivorn):
        raise VOEventError(f"invalid ivorn {ivorn!r}: must be {FORMS}")
    return ivorn


def parse_event(xml: bytes, origin: str, max_bytes: int = MAX_BYTES, received: Optional[datetime] = None) -> Event:
    """Bytes of one VOEvent -> :class:`Event` (``alert=None``, ``xml`` the very bytes given).

    ``origin`` names where it came from (``vtp://host:port``, ``kafka://topic``); ``received`` (aware UTC)
    defaults to now. Raises :class:`VOEventError` (a ValueError) with the reason: too large, not XML,
    DOCTYPE present, not a VOEvent root, missing or invalid ivorn, unknown role.
    """
    return event_from_tree(safe_fromstring(xml, max_bytes), xml, origin, received)


def event_from_tree(root: etree._Element, xml: bytes, origin: str, received: Optional[datetime] = None) -> Event:
    """:func:`parse_event` for a document already parsed safely from ``xml`` (a receiver parses once)."""
    tag = root.tag if isinstance(root.tag, str) else ""
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if name != "VOEvent" or namespace not in VOEVENT_NAMESPACES:
        raise VOEventError(f"not a VOEvent: root element is {tag or root!r}, expected "
                           f"{{{VOEVENT_NAMESPACES[0]}}}VOEvent")
    ivorn = check_ivorn(root.get("ivorn"))
    role = root.get("role", "observation")  # the XSD's default
    if role not in ROLES:
        raise VOEventError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return Event(ivorn=ivorn, role=role, received=received or utcnow(), xml=bytes(xml), alert=None, origin=origin,
                 view=view_of_tree(root))


def view_of(event: Event, root: Optional[etree._Element] = None) -> View:
    """The event's view; for an Event made without one (tools, tests), read now from its alert or its XML.

    ``root``: the event's VOEvent, parsed safely, if the caller has it. A packet that cannot be read gives EMPTY.
    """
    if event.view is not EMPTY:
        return event.view
    if event.alert is not None:
        try:
            return fields.view(event.alert)
        except AlertError:
            return EMPTY
    if root is None:
        try:
            root = safe_fromstring(event.xml)
        except VOEventError:
            return EMPTY
    return view_of_tree(root)
