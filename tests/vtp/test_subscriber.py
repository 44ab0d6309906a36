"""Our subscriber client acks an upstream broker's event only once every sink took it, and naks when one failed."""

from twisted.internet import defer, task
from vtp.vtpkit import Recorder, connect, framed, ivorn, make_pipeline, voevent, written

from gateway.vtp import messages
from gateway.vtp.subscriber import SubscriberFactory


class Failing:
    def accept(self, event):
        return defer.fail(RuntimeError("the alert DB is not reachable"))


def replies(transport):
    return [messages.parse_message(p) for p in written(transport)]


def subscriber(*sinks):
    clock = task.Clock()
    factory = SubscriberFactory("127.0.0.1:8099", make_pipeline(*sinks, clock=clock), "ivo://vtp.test/ours",
                                clock=clock)
    return connect(factory)


def test_an_event_every_sink_took_is_acked_only_then():
    held = Recorder(hold=True)
    proto, transport = subscriber(held)
    proto.dataReceived(framed(voevent("up-1")))
    assert replies(transport) == []  # not before the sink said it is safe
    held.pending[0].callback(None)
    [ack] = replies(transport)
    assert (ack.role, ack.origin) == ("ack", ivorn("up-1"))


def test_an_event_a_sink_failed_is_nakd_with_the_reason_not_acked():
    proto, transport = subscriber(Recorder(), Failing())
    proto.dataReceived(framed(voevent("up-2")))
    [nak] = replies(transport)
    assert (nak.role, nak.origin) == ("nak", ivorn("up-2"))
    assert "not accepted" in nak.result and "the alert DB is not reachable" in nak.result
    assert proto.naked == 1
    # it is not remembered as seen: when the broker (or another) sends it again, it is routed again
    proto.dataReceived(framed(voevent("up-2")))
    assert [m.role for m in replies(transport)] == ["nak"]
