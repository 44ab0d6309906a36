"""VTP framing: every message is a 4-byte unsigned big-endian length, then that many bytes of XML.

:class:`FrameProtocol` is the base of every VTP role. Unlike Twisted's ``Int32StringReceiver`` (Comet's base, capped
silently at 99,999 bytes) the limit is an argument, and a length prefix over it is logged and the connection closed
at once, without ever allocating that length: the receive buffer never holds more than one frame plus one read.
"""

from __future__ import annotations

import struct

from twisted.internet import protocol
from twisted.logger import Logger

log = Logger()

PREFIX = struct.Struct("!I")
#: Our default limit, bytes (config ``vtp.max_frame_bytes``).
DEFAULT_MAX_FRAME_BYTES = 1_000_000
#: Comet's (Twisted's Int32StringReceiver) limit: larger VOEvents are dropped, with the connection, by Comet peers.
COMET_MAX_FRAME_BYTES = 99_999


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix, ready to write."""
    return PREFIX.pack(len(payload)) + payload


class FrameProtocol(protocol.Protocol):
    """Splits the byte stream into frames and calls :meth:`frameReceived` with each payload.

    ``max_frame_bytes`` is set by the factory that builds the protocol (default :data:`DEFAULT_MAX_FRAME_BYTES`).
    """

    max_frame_bytes = DEFAULT_MAX_FRAME_BYTES

    def __init__(self):
        self._buffer = bytearray()

    def peer(self) -> str:
        """``host:port`` of the other side, for logs."""
        address = self.transport.getPeer() if self.transport is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        return f"{host}:{port}" if host is not None else str(address)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= PREFIX.size:
            (length,) = PREFIX.unpack_from(buffer, offset)
            if length > self.max_frame_bytes:
                self._buffer = bytearray()
                self.frameTooLong(length)
                return
            end = offset + PREFIX.size + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[offset + PREFIX.size:end])
            offset = end
            self.frameReceived(payload)
            if self._buffer is not buffer:  # the connection was dropped while handling the frame
                return
        del buffer[:offset]

    def frameTooLong(self, length: int) -> None:
        """A prefix announced more than ``max_frame_bytes``: log and drop the connection (nothing allocated)."""
        log.warn("VTP frame of {length} bytes announced by {peer} exceeds the limit of {limit}; closing",
                 length=length, peer=self.peer(), limit=self.max_frame_bytes)
        self.transport.abortConnection()

    def frameReceived(self, payload: bytes) -> None:
        raise NotImplementedError

    def sendFrame(self, payload: bytes) -> None:
        self.transport.write(frame(payload))

    def connectionLost(self, reason=protocol.connectionDone):
        self._buffer = bytearray()
