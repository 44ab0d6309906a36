"""Reading a subscriber's acks in place: the broker's hot path on the receiving side (one ack per delivery).

An ack goes through :func:`~gateway.vtp.messages.quick_ack_origin` (a bounded byte-level check of a plainly written
ack) or else the full safe parse; the frames after one that passed it and start with its very same bytes up to
``<Origin>`` are read in one loop, with only their Origin taken (plain text, no markup or entity reference;
otherwise the frame takes the checked way).
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.logger import Logger

from gateway.vtp import messages
from gateway.vtp.framing import FrameProtocol, unpack_length

log = Logger()


class AckReader(FrameProtocol):
    """The receiving side of a subscriber connection: acks matched to ``outstanding`` (IVORN -> when sent) and
    counted in ``acked``; every other frame goes to :meth:`frameReceived`. ``frames_read`` counts complete frames."""

    def __init__(self):
        super().__init__()
        self._ack_head = None  # the bytes up to <Origin> of this subscriber's last plainly written ack
        self.outstanding: OrderedDict[str, float] = OrderedDict()
        self.acked = 0
        self.frames_read = 0

    def _acked(self, ivorn: str) -> None:
        if self.outstanding.pop(ivorn, None) is not None:
            self.acked += 1
        else:
            log.debug("ack from {peer} for {ivorn}, which was not outstanding", peer=self.peer(), ivorn=ivorn)

    def dataReceived(self, data: bytes) -> None:
        # Acks are one per delivery: the hot path. A subscriber writes its acks alike, so once one has passed
        # quick_ack_origin (frameAt), frames that start with the same bytes up to <Origin> are read here in one
        # loop, only their Origin taken; the first frame that does not fit, and all after it, go the common way.
        if self._ack_head is not None:
            if self._pending:
                if len(self._pending) > 4096:  # not a run of acks
                    return super().dataReceived(data)
                data, self._pending = bytes(self._pending) + data, b""
            offset = self._read_acks(data)
            if offset == len(data):
                return
            data = data[offset:]
        super().dataReceived(data)

    def _read_acks(self, data: bytes) -> int:
        """Read the acks written with this subscriber's ack head from the start of ``data``; where they stop."""
        head, unpack, startswith, find = self._ack_head, unpack_length, data.startswith, data.find
        skip, size, offset = len(head) + 4, len(data), 0
        pop, acked, unknown = self.outstanding.pop, 0, 0
        try:
            while size - offset >= 4:
                end = offset + 4 + unpack(data, offset)[0]
                if end > size or end - offset > 2048 or not startswith(head, offset + 4):
                    break
                first = offset + skip
                stop = find(b"</", first, end)
                origin = data[first:stop].strip()
                # plain text only: no markup, no entity reference, no inner space (else the checked way)
                if stop < 0 or not origin or origin.translate(None, b"<& \t\r\n") != origin:
                    break
                if pop(origin.decode("utf-8"), None) is None:
                    unknown += 1
                else:
                    acked += 1
                offset = end
        except UnicodeDecodeError:
            pass
        self.acked += acked
        self.frames_read += acked + unknown
        if unknown:
            log.debug("{count} acks from {peer} for events not outstanding", count=unknown, peer=self.peer())
        return offset

    def frameAt(self, data, start: int, end: int) -> None:
        self.frames_read += 1
        payload = bytes(data[start:end])
        ivorn = messages.quick_ack_origin(payload)
        if ivorn is not None:
            self._ack_head = payload[:payload.find(b"<Origin>") + 8]
            self._acked(ivorn)
            return
        self.frameReceived(payload)
