"""Safe parsing of incoming VOEvents: hostile XML is refused with a clear reason; nothing is expanded or fetched."""

import threading
import time
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gateway.event import Event
from gateway.voevent.parse import MAX_BYTES, VOEventError, check_ivorn, parse_event, safe_fromstring
from gateway.voevent.validate import validate

NS = "http://www.ivoa.net/xml/VOEvent/v2.0"


def voevent(ivorn='ivo://test.example/stream#1', role='role="test"', body="<Description>hello</Description>",
            prolog="") -> bytes:
    ivorn_attr = "" if ivorn is None else f' ivorn="{ivorn}"'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}'
            f'<voe:VOEvent xmlns:voe="{NS}" version="2.0"{ivorn_attr} {role}>\n'
            f'{body}\n</voe:VOEvent>\n').encode()


class Recorder:
    """An HTTP server on 127.0.0.1 that records every request: nothing may ever reach it."""

    def __init__(self):
        self.requests = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.requests.append(self.path)
                body = b'<!ENTITY leak "FETCHED">' if self.path.endswith(".dtd") else b"FETCHED"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        # one connection at a time, in the order they came: see ``so_far``
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)  # shutdown() waits for one poll
        self.thread.start()

    def so_far(self):
        """The requests that reached the server before now: our own request, once answered, was served after any
        that connected earlier (no waiting "a moment" for one to arrive)."""
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/so-far", timeout=10).read()
        assert self.requests[-1] == "/so-far"
        return self.requests[:-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web():
    recorder = Recorder()
    yield recorder
    recorder.close()


def test_a_voevent_becomes_an_event_with_its_original_bytes():
    xml = voevent()
    event = parse_event(xml, origin="vtp://127.0.0.1:8098")
    assert isinstance(event, Event)
    assert (event.ivorn, event.role, event.origin, event.alert) == (
        "ivo://test.example/stream#1", "test", "vtp://127.0.0.1:8098", None)
    assert event.xml == xml and type(event.xml) is bytes
    assert event.received.tzinfo is not None
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_event(bytearray(xml), origin="k", received=when).received == when


def test_missing_role_defaults_to_observation_as_in_the_xsd():
    assert parse_event(voevent(role=""), origin="x").role == "observation"


BILLION_LAUGHS = """<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def utf16(xml: bytes) -> bytes:
    """The same document in UTF-16: a byte scan for "<!DOCTYPE" no longer sees it."""
    return xml.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")


@pytest.mark.parametrize("encode", [lambda x: x, utf16], ids=["utf-8", "utf-16"])
@pytest.mark.parametrize("where", ["content", "attribute"])
def test_billion_laughs_is_refused_quickly(encode, where):
    if where == "content":
        xml = voevent(prolog=BILLION_LAUGHS, body="<Description>&lol9;</Description>")
    else:
        xml = voevent(ivorn="ivo://test.example/stream#&lol9;", prolog=BILLION_LAUGHS)
    start = time.monotonic()
    with pytest.raises(VOEventError) as error:
        parse_event(encode(xml), origin="x")
    assert time.monotonic() - start < 1.0
    assert "DOCTYPE" in str(error.value) or "amplification" in str(error.value)


@pytest.mark.parametrize("encode", [lambda x: x, utf16], ids=["utf-8", "utf-16"])
def test_external_entity_to_a_file_is_not_read(tmp_path, encode):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xml = voevent(prolog=f'<!DOCTYPE v [<!ENTITY x SYSTEM "file://{secret}">]>\n', body="<Description>&x;</Description>")
    with pytest.raises(VOEventError, match="DOCTYPE"):
        parse_event(encode(xml), origin="x")
    assert validate(encode(xml))[0].startswith("line ")


@pytest.mark.parametrize("encode", [lambda x: x, utf16], ids=["utf-8", "utf-16"])
@pytest.mark.parametrize("kind", ["entity", "external-dtd", "parameter-entity"])
def test_nothing_is_fetched_from_the_network(web, encode, kind):
    """Note: the libxml2 in lxml 6 (2.14) has no HTTP client at all, so with it no parser setting could fetch;
    this guards builds of lxml against an older libxml2 that still has one (and the refusal holds regardless)."""
    url = f"http://127.0.0.1:{web.port}"
    prolog = {
        "entity": f'<!DOCTYPE v [<!ENTITY x SYSTEM "{url}/entity">]>\n',
        "external-dtd": f'<!DOCTYPE v SYSTEM "{url}/external.dtd">\n',
        "parameter-entity": f'<!DOCTYPE v [<!ENTITY % p SYSTEM "{url}/param.dtd"> %p;]>\n',
    }[kind]
    body = "<Description>&x;</Description>" if kind == "entity" else "<Description>x</Description>"
    xml = encode(voevent(prolog=prolog, body=body))
    with pytest.raises(VOEventError):
        parse_event(xml, origin="x")
    with pytest.raises(VOEventError):
        safe_fromstring(xml)
    assert validate(xml)
    assert web.so_far() == []


def test_validation_does_not_follow_schema_location(web):
    xml = voevent().replace(b'version="2.0"', f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                            f'xsi:schemaLocation="{NS} http://127.0.0.1:{web.port}/evil.xsd" version="2.0"'.encode())
    assert validate(xml) == []
    assert parse_event(xml, origin="x").ivorn == "ivo://test.example/stream#1"
    assert web.so_far() == []


def test_size_limit_is_checked_before_parsing():
    xml = voevent(body="<Description>" + "x" * 5000 + "</Description>")
    with pytest.raises(VOEventError, match=f"too large: {len(xml)} bytes > limit 1000"):
        parse_event(xml, origin="x", max_bytes=1000)
    assert parse_event(xml, origin="x", max_bytes=len(xml)).ivorn
    with pytest.raises(VOEventError, match="too large"):
        parse_event(b" " * (MAX_BYTES + 1), origin="x")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty document"),
    (b"   \n", "empty document"),
    (b"hello, world", "not XML"),
    (b"<voe:VOEvent xmlns:voe='x'", "not XML"),
    (b"\xff\xfe\x00garbage", "not XML"),
    (b"<a>" * 300 + b"</a>" * 300, "not XML"),  # deeper than libxml2's default limit
])
def test_non_xml_is_refused(data, reason):
    with pytest.raises(VOEventError, match=reason):
        parse_event(data, origin="x")


def test_text_instead_of_bytes_is_refused():
    with pytest.raises(VOEventError, match="bytes"):
        parse_event(voevent().decode(), origin="x")


@pytest.mark.parametrize("xml", [
    b'<Transport xmlns="http://www.telescope-networks.org/xml/Transport/v1.1" role="ack"/>',
    b'<VOEvent ivorn="ivo://a.b/c#d" role="test" version="2.0"/>',  # no namespace
    b'<voe:VOEvent xmlns:voe="http://example.org/other" ivorn="ivo://a.b/c#d" role="test"/>',
    b'<html><body>not an event</body></html>',
])
def test_wrong_root_is_refused(xml):
    with pytest.raises(VOEventError, match="not a VOEvent"):
        parse_event(xml, origin="x")


@pytest.mark.parametrize("ivorn", [
    None, "", "ivo://test.example/stream", "ivo://test.example/stream#", "http://test.example/stream#1",
    "ivo://te/stream#1", "ivo://test example/stream#1", "ivo://test.example/str eam#1", "ivo:///stream#1",
    "ivo://test.example/stream?", "ivo://test.example//stream#1", "ivo://test.example/stream/#1",
    "ivo://-test.example/stream#1", "ivo://test.example/stream#1\n",
])
def test_missing_or_invalid_ivorn_is_refused(ivorn):
    with pytest.raises(VOEventError, match="ivorn"):
        parse_event(voevent(ivorn=ivorn), origin="x")


def test_valid_ivorns():
    for ivorn in ("ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_532871-729", "ivo://vogateway.local/alerts#12",
                  "ivo://voevent.4pisky.org/ASASSN#2016-09-25.47_2016fvf_PTSS-16nqb_PS16ejf"):
        assert check_ivorn(ivorn) == ivorn


def test_unknown_role_is_refused():
    with pytest.raises(VOEventError, match="unknown role 'bogus'"):
        parse_event(voevent(role='role="bogus"'), origin="x")


def test_parse_errors_are_value_errors_for_the_pipeline():
    with pytest.raises(ValueError):
        parse_event(b"nope", origin="x")


def test_integer_params_keep_every_digit_of_a_19_digit_id():
    """Rubin ids have 19 digits; a float keeps 15-17, so the view of a received VOEvent had other ids."""
    from gateway.voevent.read import number_or_text

    assert number_or_text("1661382530015060001") == 1661382530015060001
    assert number_or_text(" -42 ") == -42 and number_or_text("3.5") == 3.5 and number_or_text("1e3") == 1000.0
    assert number_or_text("NaN") is None and number_or_text("true") is True and number_or_text("ZTF18a") == "ZTF18a"
