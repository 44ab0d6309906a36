"""What the benchmarks' VTP subscribers share: acks made from a template, not built per event.

The subscribers stand for remote machines but run on the cores the gateway is measured on, so acking tens of
thousands of events a second must cost them as little as it can.
"""

from __future__ import annotations

from gateway.vtp import messages


class AckTemplate:
    """``messages.ack``'s exact bytes before and after the IVORN, made again once a second (its TimeStamp)."""

    def __init__(self, local_ivo: str):
        self.local_ivo = local_ivo
        self._second, self._parts = None, None

    def __call__(self, now: float) -> tuple[bytes, bytes, int]:
        """(head, tail, their length together) of an ack sent at ``now``: frame length + head + IVORN + tail."""
        second = int(now)
        if second != self._second:
            head, _, tail = messages.ack(self.local_ivo, "\x00", second).partition(b"\x00")
            self._second, self._parts = second, (head, tail, len(head) + len(tail))
        return self._parts
