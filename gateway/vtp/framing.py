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
unpack_length = PREFIX.unpack_from
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
        self._pending = b""  # the start of a frame not yet complete
        self._generation = 0  # bumped when the connection is lost: stop reading frames already received

    def peer(self) -> str:
        """``host:port`` of the other side, for logs."""
        address = self.transport.getPeer() if self.transport is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        return f"{host}:{port}" if host is not None else str(address)

    def dataReceived(self, data: bytes) -> None:
        # Frames are read in place from what arrived (no copy unless one was split across reads); the remainder
        # of a split frame is kept in a bytearray, so a large frame arriving in many reads is not copied per read.
        if self._pending:
            self._pending += data
            data = self._pending
            self._pending = b""
        generation, size, offset, limit = self._generation, len(data), 0, self.max_frame_bytes
        while size - offset >= 4:
            length = unpack_length(data, offset)[0]
            if length > limit:
                self._pending = b""
                self.frameTooLong(length)
                return
            end = offset + 4 + length
            if end > size:
                break
            self.frameAt(data, offset + 4, end)
            if self._generation != generation:  # the connection was dropped while handling the frame
                return
            offset = end
        if offset < size:
            self._pending = bytearray(data[offset:]) if offset or not isinstance(data, bytearray) else data

    def frameAt(self, data, start: int, end: int) -> None:
        """One complete frame: ``data[start:end]``. A subclass with a hot path may read it in place; by default
        it is copied out and given to :meth:`frameReceived`."""
        self.frameReceived(bytes(data[start:end]))

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
        self._pending = b""
        self._generation += 1
