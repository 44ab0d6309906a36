"""The VTP author client: submit VOEvents to a broker's receiver and wait for each ack or nak.

Library: ``send_events(endpoint, xml_list, local_ivo, timeout)`` fires with one :class:`SendResult` per event.
Events go one at a time over one connection; a receiver that closes after each submission (Comet does) is
reconnected to for the next one, so many events cost one run, not one process each (``comet-sendvo`` pays ~0.4 s
of start-up per event). Command line: ``vogateway send HOST:PORT FILE...`` (``gateway/commands/send.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.internet import defer, protocol
from twisted.internet import error as net_error
from twisted.internet.endpoints import connectProtocol
from twisted.logger import Logger

from gateway.vtp import messages
from gateway.vtp.framing import DEFAULT_MAX_FRAME_BYTES, FrameProtocol
from gateway.vtp.tls import TLSFiles, vtp_client_endpoint

log = Logger()


@dataclass(frozen=True)
class SendResult:
    """What became of one submission: ``accepted`` on ack; otherwise ``reason`` says why (nak text, timeout...)."""

    ivorn: str
    accepted: bool
    reason: str = ""
    nakd: bool = False  # the receiver answered nak (as opposed to: no answer at all)

    @property
    def verdict(self) -> str:
        return "ack" if self.accepted else "nak" if self.nakd else "failed"


class _Closed(Exception):
    """The receiver closed the connection before answering."""


class AuthorProtocol(FrameProtocol):
    """Sends one event at a time and fires the waiting Deferred with the receiver's ack or nak."""

    max_frame_bytes = DEFAULT_MAX_FRAME_BYTES

    def __init__(self):
        super().__init__()
        self.waiting: Optional[defer.Deferred] = None
        self.ivorn = ""
        self.lost = False

    def submit(self, payload: bytes, ivorn: str, timeout: float, clock) -> defer.Deferred:
        self.ivorn = ivorn
        self.waiting = defer.Deferred()
        self.sendFrame(payload)
        return self.waiting.addTimeout(timeout, clock, onTimeoutCancel=self._timed_out)

    def _timed_out(self, result, timeout):
        self.waiting = None
        self.transport.abortConnection()
        return SendResult(self.ivorn, False, f"no reply within {timeout:g} s")

    def frameReceived(self, payload: bytes) -> None:
        message = messages.parse_or_warn(payload, self.max_frame_bytes, "reply", self.peer())
        if message is None:
            return
        if not isinstance(message, messages.Transport) or message.role not in ("ack", "nak"):
            log.debug("ignoring {what} from {peer}", what=getattr(message, "role", "VOEvent"), peer=self.peer())
            return
        if message.origin and message.origin != self.ivorn:
            log.warn("{role} from {peer} for {other}, while waiting for {ivorn}; ignored", role=message.role,
                     peer=self.peer(), other=message.origin, ivorn=self.ivorn)
            return
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            accepted = message.role == "ack"
            reason = "" if accepted else message.result or "no reason given"
            waiting.callback(SendResult(self.ivorn, accepted, reason, nakd=not accepted))

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost = True
        super().connectionLost(reason)
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.errback(_Closed())


def _ivorn_of(payload: bytes, max_bytes: int) -> str:
    message = messages.parse_message(payload, max_bytes)
    if not isinstance(message, messages.VOEventMessage):
        raise messages.MessageError("not a VOEvent")
    return message.ivorn


@defer.inlineCallbacks
def send_events(endpoint, xml_list, local_ivo: str = "ivo://vogateway.local/author", timeout: float = 10.0,
                reactor=None, tls: TLSFiles = TLSFiles(), max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
    """Submit each VOEvent in ``xml_list`` (an iterable of bytes) to the receiver at ``endpoint`` (``HOST:PORT``, ``tls:HOST:PORT``,
    a Twisted endpoint string, or an endpoint object); ``timeout`` in seconds, per connection attempt and per reply.

    Fires with a list of :class:`SendResult`, in order. Never fails: a refused connection, a timeout or a closed
    connection is a result with ``accepted=False``. ``local_ivo`` names us in logs (VTP authors send none).
    """
    if reactor is None:
        from twisted.internet import reactor
    if isinstance(endpoint, str):
        endpoint = vtp_client_endpoint(reactor, endpoint, tls)
    results: list[SendResult] = []
    connection: Optional[AuthorProtocol] = None
    payloads = iter(xml_list)  # taken one at a time: a generator can make each event just before it is sent
    for payload in payloads:
        try:
            ivorn = _ivorn_of(payload, max_frame_bytes)
        except messages.MessageError as error:
            results.append(SendResult("", False, f"not sent: {error}"))
            continue
        result = None
        for attempt in (1, 2):  # a receiver that closes after each submission is reconnected to once
            if connection is None or connection.lost:
                failure = None
                try:
                    connection = yield connectProtocol(endpoint, AuthorProtocol()).addTimeout(timeout, reactor)
                except (defer.TimeoutError, defer.CancelledError):
                    failure = f"connection timed out after {timeout:g} s"
                except (net_error.ConnectError, OSError) as error:
                    failure = f"connection failed: {error}"
                if failure is not None:
                    # the remaining events would meet the same refusal: say so without retrying each
                    results.append(SendResult(ivorn, False, failure))
                    results.extend(SendResult(_safe_ivorn(p, max_frame_bytes), False, failure)
                                   for p in payloads)
                    return results
                connection.max_frame_bytes = max_frame_bytes
            try:
                result = yield connection.submit(payload, ivorn, timeout, reactor)
                break
            except _Closed:
                result = SendResult(ivorn, False, "connection closed before a reply")
        log.info("{verdict} for {ivorn}{reason}", verdict=result.verdict, ivorn=ivorn,
                 reason=f": {result.reason}" if result.reason else "")
        results.append(result)
    if connection is not None and not connection.lost:
        connection.transport.loseConnection()
    return results


def _safe_ivorn(payload: bytes, max_bytes: int) -> str:
    try:
        return _ivorn_of(payload, max_bytes)
    except messages.MessageError:
        return ""
