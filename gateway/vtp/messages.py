"""VTP messages: build the Transport messages we send, and classify every frame we receive.

A frame holds either a Transport message (root ``Transport``, role iamalive | ack | nak | authenticate) or a
VOEvent (root ``VOEvent`` with an ``ivorn``). We write the namespace of the VTP note as Comet does,
``http://www.telescope-networks.org/xml/Transport/v1.1``; we read that, pygcn's
``http://telescope-networks.org/schema/Transport/v1.1`` and no namespace at all, with children qualified or not, and
TimeStamps with or without ``Z`` or fractional seconds. Every frame is parsed with the shared hostile-XML parser
(no DTD, no entities, no network).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Union
from xml.sax.saxutils import escape, quoteattr

from lxml import etree
from twisted.logger import Logger

from gateway.times import TimeError, format_iso, parse_iso
from gateway.voevent.parse import safe_fromstring
from gateway.vtp.framing import DEFAULT_MAX_FRAME_BYTES

log = Logger()

TRANSPORT_NS = "http://www.telescope-networks.org/xml/Transport/v1.1"
#: Namespaces Transport messages arrive in: the note's (Comet), pygcn's, and none.
TRANSPORT_NAMESPACES = frozenset({TRANSPORT_NS, "http://telescope-networks.org/schema/Transport/v1.1", ""})
TRANSPORT_ROLES = ("iamalive", "ack", "nak", "authenticate")
XPATH_FILTER = "xpath-filter"


class MessageError(ValueError):
    """A frame that is not a usable VTP message; the text says why (it goes into a nak or a log line)."""


@dataclass(slots=True)
class Transport:
    """A received Transport message. ``origin`` is the sender's IVO, or for ack/nak the IVORN acknowledged."""

    role: str
    origin: str = ""
    response: str = ""
    timestamp_text: str = ""  # as sent; see ``timestamp``
    result: str = ""  # nak reason (Meta/Result)
    filters: tuple[str, ...] = ()  # XPath filters a subscriber asked for in its authenticate reply

    @property
    def timestamp(self) -> Optional[datetime]:
        """TimeStamp as aware UTC, or None if absent or unreadable (parsed on demand: acks are a hot path)."""
        return parse_timestamp(self.timestamp_text)


@dataclass(slots=True)
class VOEventMessage:
    """A received VOEvent: its IVORN and role, and the payload exactly as it arrived."""

    ivorn: str
    role: str
    payload: bytes
    root: etree._Element


Message = Union[Transport, VOEventMessage]


def _local(tag) -> tuple[str, str]:
    if not isinstance(tag, str):  # comments, processing instructions
        return "", ""
    if tag[0] == "{":
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _children(element) -> dict:
    """Child elements by local name (the first of each), in one pass: namespaces vary in the wild."""
    found = {}
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            found.setdefault(tag.rpartition("}")[2], child)
    return found


def _text(children: dict, name: str) -> str:
    child = children.get(name)
    return (child.text or "").strip() if child is not None else ""


def parse_timestamp(text: str) -> Optional[datetime]:
    """A Transport TimeStamp as aware UTC; ``Z``, an offset or nothing (taken as UTC); None if unreadable."""
    if not text.strip():
        return None
    try:
        return parse_iso(text)
    except TimeError:
        return None


# A broker receives one ack per delivery (100,000/s at 1,000 events/s to 100 subscribers), so it reads acks through
# a byte-level fast path first: a small frame with no "<!" (no DTD, comment or CDATA), a Transport root in a known
# namespace with role="ack", and an Origin holding plain text (no markup, no entity reference) gives its Origin
# without building a tree. Anything else goes through parse_message. The only use of an ack is to mark that IVORN
# delivered to that subscriber, so a malformed frame read as an ack can affect nothing but the sender's own count.
_NAMESPACE_BYTES = tuple(ns.encode() for ns in TRANSPORT_NAMESPACES if ns)


def quick_ack_origin(payload: bytes) -> Optional[str]:
    """The Origin (acknowledged IVORN) of a plainly written ack, or None: then use :func:`parse_message`."""
    if len(payload) > 2048 or b"<!" in payload:
        return None
    root = payload.find(b"Transport ")
    if root < 1 or payload[root - 1] not in b"<:":
        return None
    tag = payload[root:payload.find(b">", root)]
    if (b'role="ack"' not in tag and b"role='ack'" not in tag) or not any(ns in tag for ns in _NAMESPACE_BYTES):
        return None
    start = payload.find(b"<Origin>", root)
    end = payload.find(b"</Origin>", start)
    if start < 0 or end < 0:
        return None
    origin = payload[start + 8:end]
    if b"<" in origin or b"&" in origin:
        return None
    try:
        return origin.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


def parse_message(payload: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message:
    """Classify one frame. Raises :class:`MessageError` for non-XML, DTDs/entities, unknown roots and roles."""
    try:
        root = safe_fromstring(payload, max_bytes)
    except (ValueError, etree.LxmlError) as error:
        raise MessageError(f"unreadable XML: {error}") from None
    namespace, name = _local(root.tag)
    role = root.get("role", "")
    if name == "Transport" and namespace in TRANSPORT_NAMESPACES:
        if role not in TRANSPORT_ROLES:
            raise MessageError(f"unknown Transport role {role!r}")
        texts, meta = {"Origin": "", "Response": "", "TimeStamp": ""}, None
        for child in root:  # one pass; acks (one per delivery) make this a hot path
            tag = child.tag
            if isinstance(tag, str):
                local = tag.rpartition("}")[2]
                if local in texts:
                    texts[local] = texts[local] or (child.text or "").strip()
                elif local == "Meta" and meta is None:
                    meta = child
        result, filters = "", []
        if meta is not None:
            result = _text(_children(meta), "Result")
            for child in meta:
                child_name = _local(child.tag)[1]
                # the note's <Param name="xpath-filter" value=.../>, and the older <filter type="xpath">...</filter>
                if child_name == "Param" and child.get("name") == XPATH_FILTER and child.get("value"):
                    filters.append(child.get("value"))
                elif child_name == "filter" and child.get("type") == "xpath" and (child.text or "").strip():
                    filters.append(child.text.strip())
        return Transport(role=role, origin=texts["Origin"], response=texts["Response"],
                         timestamp_text=texts["TimeStamp"], result=result, filters=tuple(filters))
    if name == "VOEvent":
        ivorn = (root.get("ivorn") or "").strip()
        if not ivorn:
            raise MessageError("VOEvent without an ivorn attribute")
        return VOEventMessage(ivorn=ivorn, role=role, payload=payload, root=root)
    raise MessageError(f"not a VTP message: root element {root.tag!r}")


# -- building ---------------------------------------------------------------------------------------------------

_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         f'<trn:Transport xmlns:trn="{TRANSPORT_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         f'xsi:schemaLocation="{TRANSPORT_NS} http://www.telescope-networks.org/schema/Transport-v1.1.xsd" '
         'version="1.0" role="{role}">')


def parse_or_warn(payload: bytes, max_bytes: int, what: str, peer: str) -> Optional[Message]:
    """The message in ``payload``, or None after one warning that ``what`` from ``peer`` was unusable (a peer's
    garbage is logged and ignored, never fatal to the connection)."""
    try:
        return parse_message(payload, max_bytes)
    except MessageError as error:
        log.warn("unusable {what} from {peer}: {error}", what=what, peer=peer, error=str(error))
        return None


def timestamp(now: float) -> str:
    """``now`` (POSIX seconds) as the TimeStamp Comet writes: ``%Y-%m-%dT%H:%M:%SZ``."""
    return format_iso(now, digits=0)


def _transport(role: str, origin: str, response: Optional[str], now: float, meta: str = "") -> bytes:
    # element order is the schema's: Origin, Response, TimeStamp, Meta
    parts = [_HEAD.format(role=role), f"<Origin>{escape(origin)}</Origin>"]
    if response:
        parts.append(f"<Response>{escape(response)}</Response>")
    parts.append(f"<TimeStamp>{timestamp(now)}</TimeStamp>")
    if meta:
        parts.append(f"<Meta>{meta}</Meta>")
    parts.append("</trn:Transport>\n")
    return "".join(parts).encode("utf-8")


def iamalive(local_ivo: str, now: float) -> bytes:
    """Broker -> subscriber keep-alive."""
    return _transport("iamalive", local_ivo, None, now)


def iamalive_response(local_ivo: str, remote_ivo: str, now: float) -> bytes:
    """Subscriber's echo of an iamalive: Origin is the broker's IVO, Response ours."""
    return _transport("iamalive", remote_ivo, local_ivo, now)


def authenticate(local_ivo: str, now: float) -> bytes:
    """Broker -> subscriber on connect."""
    return _transport("authenticate", local_ivo, None, now)


def authenticate_response(local_ivo: str, remote_ivo: str, filters, now: float) -> bytes:
    """Subscriber's reply to authenticate, carrying the XPath filters it wants applied upstream."""
    meta = "".join(f"<Param name={quoteattr(XPATH_FILTER)} value={quoteattr(xpath)}/>" for xpath in filters)
    return _transport("authenticate", remote_ivo, local_ivo, now, meta)


def ack(local_ivo: str, ivorn: str, now: float) -> bytes:
    """Acknowledge the event ``ivorn`` (Origin), from ``local_ivo`` (Response)."""
    return _transport("ack", ivorn, local_ivo, now)


def nak(local_ivo: str, ivorn: str, reason: str, now: float) -> bytes:
    """Refuse the event ``ivorn``; ``reason`` travels in Meta/Result."""
    return _transport("nak", ivorn, local_ivo, now, f"<Result>{escape(reason)}</Result>" if reason else "")
