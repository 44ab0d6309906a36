"""Framing: frames read whole however the bytes arrive; an oversized prefix closes without allocating."""

import random

from twisted.internet.testing import StringTransport

from gateway.vtp.framing import FrameProtocol, frame


class Collector(FrameProtocol):
    max_frame_bytes = 2_000_000

    def __init__(self):
        super().__init__()
        self.frames = []

    def frameReceived(self, payload):
        self.frames.append(payload)


def collector():
    proto = Collector()
    proto.makeConnection(StringTransport())
    return proto


def test_frames_arrive_whole_however_the_stream_is_cut():
    payloads = [b"", b"a", b"<x/>" * 10, bytes(range(256)) * 4000, b"tail"]  # one of ~1 MB
    stream = b"".join(frame(p) for p in payloads)
    rng = random.Random(7)
    for _ in range(20):
        proto, offset = collector(), 0
        while offset < len(stream):
            step = rng.choice([1, 3, 4, 5, 1000, 65536, 300_000])
            proto.dataReceived(stream[offset:offset + step])
            offset += step
        assert proto.frames == payloads
        assert not proto._pending


def test_many_frames_in_one_read_and_a_partial_one_kept():
    proto = collector()
    proto.dataReceived(frame(b"one") + frame(b"two") + frame(b"three")[:6])
    assert proto.frames == [b"one", b"two"]
    proto.dataReceived(frame(b"three")[6:])
    assert proto.frames == [b"one", b"two", b"three"]


def test_prefix_over_the_limit_closes_and_reads_nothing_more():
    proto = collector()
    proto.dataReceived(frame(b"ok") + (2**31).to_bytes(4, "big") + b"junk" + frame(b"after"))
    assert proto.frames == [b"ok"] and proto.transport.disconnecting


def test_frames_after_a_handler_dropped_the_connection_are_not_read():
    class Dropper(Collector):
        def frameReceived(self, payload):
            super().frameReceived(payload)
            self.connectionLost()

    proto = Dropper()
    proto.makeConnection(StringTransport())
    proto.dataReceived(frame(b"first") + frame(b"second"))
    assert proto.frames == [b"first"]
