"""Time bounds on one peer connection, so that an idle or trickling peer cannot hold a socket open (slowloris).

Three bounds, each in seconds on the connection's clock (``None`` or 0: off):

``first``
    from connecting (TCP accept; the TLS handshake counts in it) to the peer's first complete message;
``frame``
    for one message to arrive whole once its first bytes came: a peer that sends a byte now and then, never
    finishing a frame, is closed when it runs out, however often it sends;
``alive``
    to answer an iamalive once it was sent.

The owner reports what it read (:meth:`Deadlines.read`) and the iamalive it sent or got answered; when a bound
passes, ``expire(bound, sentence)`` is called once, with a sentence for the log, and the owner closes the
connection.
"""

from __future__ import annotations

from typing import Callable, Optional


class Deadlines:
    """The timers of one connection (see the module doc)."""

    def __init__(self, clock, expire: Callable[[str, str], None], first: Optional[float] = None,
                 frame: Optional[float] = None, alive: Optional[float] = None):
        self.clock, self._expire = clock, expire
        self.first, self.frame, self.alive = first or None, frame or None, alive or None
        self.closed = False
        self._first = self._schedule(self.first, "first", f"sent no complete message within {self.first:g} s of "
                                                          "connecting") if self.first else None
        self._partial = None  # timer of the frame begun and not complete yet
        self._partial_frames = -1  # frames read when that timer started: one completed since means a new frame
        self._alive = None

    def _schedule(self, delay: float, bound: str, why: str):
        return self.clock.callLater(delay, self._passed, bound, why)

    def _passed(self, bound: str, why: str) -> None:
        if self.closed:
            return
        self.cancel()
        self._expire(bound, why)

    def read(self, frames: int, pending: int) -> None:
        """After a read: ``frames`` complete messages so far in all, ``pending`` bytes of one not complete yet."""
        if self.closed:
            return
        if frames and self._first is not None:
            self._first.cancel()
            self._first = None
        if not pending:
            if self._partial is not None:
                self._partial.cancel()
                self._partial = None
            return
        if self.frame and (self._partial is None or frames != self._partial_frames):
            if self._partial is not None:
                self._partial.cancel()  # a frame completed since: the bound starts again for the new one
            self._partial_frames = frames
            self._partial = self._schedule(self.frame, "frame", f"took over {self.frame:g} s to send one message "
                                                                f"(a partial frame trickled in)")

    def asked_alive(self) -> None:
        """An iamalive was sent: it must be answered within ``alive`` seconds (the first one unanswered counts)."""
        if not self.closed and self.alive and self._alive is None:
            self._alive = self._schedule(self.alive, "alive", f"did not answer iamalive within {self.alive:g} s")

    def answered_alive(self) -> None:
        if self._alive is not None:
            self._alive.cancel()
            self._alive = None

    @property
    def awaiting_alive(self) -> bool:
        return self._alive is not None

    def cancel(self) -> None:
        """The connection is gone (or going): no bound fires any more."""
        self.closed = True
        for timer in (self._first, self._partial, self._alive):
            if timer is not None and timer.active():
                timer.cancel()
        self._first = self._partial = self._alive = None
