"""Transport messages: what we build is what Comet builds (and the schema allows); what we read covers the wild."""

from datetime import datetime, timezone
from pathlib import Path

import pytest
from lxml import etree

from gateway.vtp import messages
from vtp.vtpkit import ivorn, voevent

NOW = 1_795_000_000.0  # 2026-11-18T...Z


def transport_schema():
    """The VTP transport-1.1 schema: ours under xml/ once it is there, else the copy Comet ships."""
    from gateway.resources import resource

    try:
        path = resource("xml", "transport-1.1.xsd")
        if not path.exists():
            raise FileNotFoundError(path)
    except FileNotFoundError:
        comet = pytest.importorskip("comet")
        path = Path(comet.__path__[0]) / "schema" / "transport-1.1.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.mark.parametrize("built", [
    messages.iamalive("ivo://us/broker", NOW),
    messages.iamalive_response("ivo://us/sub", "ivo://them/broker", NOW),
    messages.authenticate("ivo://us/broker", NOW),
    messages.authenticate_response("ivo://us/sub", "ivo://them/broker", ["//Param[@name='mag']", 'a"b<c'], NOW),
    messages.ack("ivo://us/broker", "ivo://x/y#1", NOW),
    messages.nak("ivo://us/broker", "ivo://x/y#1", "invalid: <Who> & co", NOW),
])
def test_built_messages_are_valid_transport_documents(built):
    schema = transport_schema()
    document = etree.fromstring(built)
    assert schema.validate(document), schema.error_log
    assert document.tag == f"{{{messages.TRANSPORT_NS}}}Transport"


def test_round_trip_keeps_every_field():
    nak = messages.parse_message(messages.nak("ivo://us/b", "ivo://x/y#1", "bad <thing> & more", NOW))
    assert (nak.role, nak.origin, nak.response, nak.result) == ("nak", "ivo://x/y#1", "ivo://us/b",
                                                                "bad <thing> & more")
    assert nak.timestamp == datetime.fromtimestamp(NOW, timezone.utc)
    auth = messages.parse_message(messages.authenticate_response("ivo://us/s", "ivo://b", ["//a", "//b[@c='d']"], 0))
    assert auth.filters == ("//a", "//b[@c='d']") and auth.origin == "ivo://b" and auth.response == "ivo://us/s"


def test_comet_timestamp_format():
    text = etree.fromstring(messages.iamalive("ivo://a/b", 0.0)).findtext("TimeStamp")
    assert text == "1970-01-01T00:00:00Z"


PYGCN_ACK = (b"<?xml version='1.0' encoding='UTF-8'?><trn:Transport role=\"ack\" version=\"1.0\" "
             b"xmlns:trn=\"http://telescope-networks.org/schema/Transport/v1.1\" "
             b"xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><Origin>ivo://x/y#1</Origin>"
             b"<Response>ivo://python_voeventclient/anonymous</Response>"
             b"<TimeStamp>2026-11-24T12:34:56.789012</TimeStamp></trn:Transport>")


def test_pygcn_namespace_and_time_without_z():
    ack = messages.parse_message(PYGCN_ACK)
    assert ack.role == "ack" and ack.origin == "ivo://x/y#1"
    assert ack.timestamp == datetime(2026, 11, 24, 12, 34, 56, 789012, tzinfo=timezone.utc)


def test_unqualified_transport_and_qualified_children_and_old_filter_syntax():
    data = (b'<Transport xmlns:t="urn:x" role="authenticate" version="1.0"><Origin>ivo://b</Origin>'
            b'<Meta><filter type="xpath">//Who</filter><Param name="other" value="x"/></Meta></Transport>')
    message = messages.parse_message(data)
    assert message.role == "authenticate" and message.filters == ("//Who",)
    qualified = (b'<t:Transport xmlns:t="http://www.telescope-networks.org/xml/Transport/v1.1" role="iamalive">'
                 b'<t:Origin>ivo://b</t:Origin><t:TimeStamp>2026-01-01T00:00:00+02:00</t:TimeStamp></t:Transport>')
    message = messages.parse_message(qualified)
    assert message.origin == "ivo://b"
    assert message.timestamp == datetime(2025, 12, 31, 22, tzinfo=timezone.utc)


def test_voevent_is_classified_with_its_ivorn_and_untouched_payload():
    payload = voevent("m1")
    message = messages.parse_message(payload)
    assert isinstance(message, messages.VOEventMessage)
    assert (message.ivorn, message.role, message.payload) == (ivorn("m1"), "test", payload)


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x01 not xml at all", "unreadable XML"),
    (b"", "unreadable XML"),
    (b'<trn:Transport xmlns:trn="http://www.telescope-networks.org/xml/Transport/v1.1" role="subscribe"/>',
     "unknown Transport role 'subscribe'"),
    (b'<Transport version="1.0"/>', "unknown Transport role ''"),
    (b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test"/>', "without an ivorn"),
    (b"<html><body>hello</body></html>", "not a VTP message"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Transport role="ack">&a;</Transport>',
     "unreadable XML"),
])
def test_bad_frames_are_refused_with_a_reason(data, reason):
    with pytest.raises(messages.MessageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        messages.parse_message(data)


def test_unreadable_timestamp_is_none_not_an_error():
    data = b'<Transport role="iamalive"><Origin>ivo://b</Origin><TimeStamp>yesterday</TimeStamp></Transport>'
    assert messages.parse_message(data).timestamp is None


COMET_ACK = (b"<?xml version='1.0' encoding='UTF-8'?>\n<trn:Transport xmlns:trn=\"http://www.telescope-networks.org/xml/"
             b"Transport/v1.1\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.0\" "
             b"xsi:schemaLocation=\"http://telescope-networks.org/schema/Transport/v1.1 http://www.telescope-networks"
             b".org/schema/Transport-v1.1.xsd\" role=\"ack\">\n  <Origin>ivo://x/y#1</Origin>\n  <Response>ivo://c"
             b"</Response>\n  <TimeStamp>2026-11-24T12:00:00Z</TimeStamp>\n</trn:Transport>\n")


@pytest.mark.parametrize("ack", [COMET_ACK, PYGCN_ACK, messages.ack("ivo://us", "ivo://x/y#1", NOW)],
                         ids=["comet", "pygcn", "ours"])
def test_acks_in_the_wild_take_the_quick_path_with_the_same_answer(ack):
    assert messages.quick_ack_origin(ack) == "ivo://x/y#1" == messages.parse_message(ack).origin


@pytest.mark.parametrize("frame, origin", [
    (messages.ack("ivo://us", "ivo://x/y#a&b", NOW), "ivo://x/y#a&b"),  # escaped entity: full parser unescapes
    (COMET_ACK.replace(b"<Origin>", b"<!-- c --><Origin>"), "ivo://x/y#1"),
    (b'<Transport role="ack"><Origin>ivo://x/y#1</Origin></Transport>', "ivo://x/y#1"),  # no namespace
])
def test_unusual_acks_fall_back_to_the_full_parser(frame, origin):
    assert messages.quick_ack_origin(frame) is None
    assert messages.parse_message(frame).origin == origin


@pytest.mark.parametrize("frame", [
    COMET_ACK.replace(b'role="ack"', b'role="nak"'),
    COMET_ACK.replace(b"<?xml", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><?xml'),
    COMET_ACK.replace(b"telescope-networks.org", b"example.org"),
    COMET_ACK.replace(b"ivo://x/y#1", b"<b>ivo://x/y#1</b>"),
    COMET_ACK.replace(b"<Origin>ivo://x/y#1</Origin>", b"<Origin></Origin>"),
    voevent("looks-like-nothing"),
])
def test_quick_path_never_reads_what_is_not_a_plain_ack(frame):
    assert messages.quick_ack_origin(frame) is None
