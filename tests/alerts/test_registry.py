"""Schemas from a Confluent-compatible registry (a real HTTP server on 127.0.0.1) and from lsst-alert-packet."""

import threading

import pytest
import pytest_twisted

from gateway.alerts import AlertError
from gateway.alerts.decode import decode_wire, encode_wire
from gateway.alerts.schemas import SchemaLibrary, SchemaLookupError, identify, rubin_schema_id

from alertdata import LIBRARY, Registry, first_record, rubin_files
from support import free_port


@pytest.fixture
def registry():
    schemas = {str(rubin_schema_id(v)): LIBRARY.by_version("rubin", v).definition for v in ("7.4", "11.1")}
    schemas["666"] = b"this is not JSON"
    schemas["667"] = {"type": "record", "name": "acme.thing", "fields": [{"name": "x", "type": "long"}]}
    server = Registry(schemas)
    yield server
    server.close()


def packet(version):
    record, _ = first_record(rubin_files()[version])
    return encode_wire(record, rubin_schema_id(version), LIBRARY.by_version("rubin", version)), record


def test_known_id_decodes_and_is_cached(registry):
    library = SchemaLibrary(registry_url=registry.url, packaged=False)
    data, record = packet("11.1")
    alert = decode_wire(data, "kafka://alerts[0]", 1, library)
    assert (alert.survey, alert.schema) == ("rubin", "11.1") and alert.record == record
    assert registry.requests == ["/schemas/ids/1101"]
    again = decode_wire(data, "kafka://alerts[0]", 2, library)
    assert again.record == record
    assert registry.requests == ["/schemas/ids/1101"]  # cached: no second request
    assert library.registry_requests == 1
    assert "11.1" in library.versions("rubin")
    assert library.by_version("rubin", "11.1").schema_id == 1101


def test_unknown_id_is_an_alert_error(registry):
    library = SchemaLibrary(registry_url=registry.url, packaged=False)
    data, _ = packet("7.4")
    unknown = data[:1] + (4242).to_bytes(4, "big") + data[5:]
    with pytest.raises(AlertError) as caught:
        decode_wire(unknown, "kafka://alerts[3]", 99, library)
    assert caught.value.reason.startswith("unknown schema id: 4242") and "404" in caught.value.reason
    assert (caught.value.source, caught.value.position) == ("kafka://alerts[3]", 99)


def test_registry_down_is_an_alert_error():
    library = SchemaLibrary(registry_url=f"http://127.0.0.1:{free_port()}", packaged=False, timeout=5)
    data, _ = packet("7.4")
    with pytest.raises(AlertError) as caught:
        decode_wire(data, "src", 0, library)
    assert caught.value.reason.startswith("schema registry unreachable")


def test_bad_answers(registry):
    library = SchemaLibrary(registry_url=registry.url, packaged=False)
    with pytest.raises(SchemaLookupError, match="^schema registry bad answer"):
        library.by_id(666)
    with pytest.raises(SchemaLookupError, match="^unknown schema: id 667") as caught:
        library.by_id(667)
    assert "acme.thing" in caught.value.reason


def test_offline_schemas_need_no_registry(registry):
    library = SchemaLibrary(registry_url=registry.url)  # packaged schemas first
    if not library.versions("rubin"):
        pytest.skip("lsst-alert-packet (extra 'rubin') not installed")
    data, record = packet("7.4")
    assert decode_wire(data, "src", 0, library).record == record
    assert registry.requests == []


def test_without_registry_an_unknown_id_says_so():
    library = SchemaLibrary(packaged=False)
    with pytest.raises(SchemaLookupError, match="^unknown schema id: 704 .*no schema registry configured"):
        library.by_id(704)


@pytest_twisted.inlineCallbacks
def test_lookup_off_the_reactor(registry):
    from twisted.internet import reactor

    library = SchemaLibrary(registry_url=registry.url, packaged=False)
    caller = threading.get_ident()
    seen = []
    original = library._fetch

    def fetch(schema_id):
        seen.append(threading.get_ident())
        return original(schema_id)

    library._fetch = fetch
    schema = yield library.lookup(704, reactor)
    assert schema.version == "7.4" and seen and seen[0] != caller  # the HTTP request ran in a thread
    again = library.lookup(704, reactor)
    assert again.called and len(seen) == 1  # from the cache, synchronously


def test_versions_and_identify():
    if LIBRARY.versions("rubin"):
        assert LIBRARY.versions("rubin")[0] == "3.0" and "11.1" in LIBRARY.versions("rubin")
    assert LIBRARY.versions("ztf") == ["3.2", "3.3", "3.5"]
    assert identify({"type": "record", "name": "alert", "namespace": "lsst.v7_4", "fields": []}) == ("rubin", "7.4")
    assert identify({"type": "record", "name": "ztf.alert", "fields": []}, {"schemavsn": "3.3"}) == ("ztf", "3.3")
    with pytest.raises(SchemaLookupError):
        identify({"type": "record", "name": "ztf.alert", "fields": []})
    with pytest.raises(SchemaLookupError):
        LIBRARY.by_version("rubin", "99.0")


def test_final_answers_are_remembered_for_a_while(registry):
    library = SchemaLibrary(registry_url=registry.url, packaged=False, negative_ttl=60)
    for _ in range(3):
        with pytest.raises(SchemaLookupError) as caught:
            library.by_id(4242)
        assert not caught.value.transient
    assert registry.requests == ["/schemas/ids/4242"]
    forgetful = SchemaLibrary(registry_url=registry.url, packaged=False, negative_ttl=0)
    for _ in range(2):
        with pytest.raises(SchemaLookupError):
            forgetful.by_id(4242)
    assert len(registry.requests) == 3


def test_an_unreachable_registry_is_transient_and_not_remembered():
    port = free_port()
    library = SchemaLibrary(registry_url=f"http://127.0.0.1:{port}", packaged=False, timeout=5)
    with pytest.raises(SchemaLookupError) as caught:
        library.by_id(704)
    assert caught.value.transient and caught.value.reason.startswith("schema registry unreachable")
    server = Registry({"704": LIBRARY.by_version("rubin", "7.4").definition}, port=port)
    try:
        assert library.by_id(704).version == "7.4"  # the registry is back: no stale "no"
    finally:
        server.close()
