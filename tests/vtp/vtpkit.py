"""Helpers for the VTP tests: test VOEvents, a recording sink, a pipeline, frames over a StringTransport."""

from __future__ import annotations

import struct
from pathlib import Path

from lxml import etree
from twisted.internet import address, defer
from twisted.internet.testing import StringTransport

from gateway.pipeline import Pipeline, Router

DATA = Path(__file__).resolve().parent / "data"
TEMPLATE = (DATA / "event.xml").read_bytes()


def voevent(local_id: str, mag: float = 18.5) -> bytes:
    """A small valid VOEvent 2.0 with IVORN ivo://vtp.test/stream#<local_id>."""
    return TEMPLATE.replace(b"LOCALID", local_id.encode()).replace(b"MAG", f"{mag:.2f}".encode())


def ivorn(local_id: str) -> str:
    return f"ivo://vtp.test/stream#{local_id}"


def c14n(xml: bytes) -> bytes:
    """Canonical XML (C14N 2.0, comments dropped) of a document, for 'same XML' comparisons."""
    return etree.tostring(etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True)),
                          method="c14n2", with_comments=False, strip_text=True)


class Recorder:
    """A sink that keeps every event it is given (optionally holding the Deferreds, to test 'ack after')."""

    def __init__(self, hold: bool = False):
        self.events, self.hold, self.pending = [], hold, []

    def accept(self, event):
        self.events.append(event)
        if self.hold:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return None

    @property
    def ivorns(self):
        return [event.ivorn for event in self.events]


def make_pipeline(*sinks, clock=None) -> Pipeline:
    from gateway.pipeline import SeenIvorns
    from gateway.voevent.parse import parse_event

    def parse(xml, origin):
        return parse_event(xml, origin=origin)

    return Pipeline(convert=None, parse=parse, router=Router(list(sinks)),
                    seen=SeenIvorns(clock=clock) if clock is not None else None)


def frames(data: bytes) -> list[bytes]:
    """Split what was written to a transport into frame payloads."""
    out, offset = [], 0
    while offset + 4 <= len(data):
        (length,) = struct.unpack_from("!I", data, offset)
        out.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    assert offset == len(data), "partial frame written"
    return out


def framed(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def connect(factory, host: str = "127.0.0.1", port: int = 40000):
    """A protocol from ``factory`` on a StringTransport, connected from ``host``."""
    peer = address.IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    return proto, transport


def written(transport) -> list[bytes]:
    """Frames written so far, and clear the transport."""
    data = transport.value()
    transport.clear()
    return frames(data)


def roles(payloads) -> list[str]:
    return [etree.fromstring(p).get("role") for p in payloads]
