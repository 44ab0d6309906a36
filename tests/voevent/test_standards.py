"""What the VOEvent 2.0 text and schema (and the IVOA vocabularies it points at) ask of our packets, checked against
those texts: the IVORN forms of their examples, the ObservatoryLocation of a topocentric system, Reference
meanings from the datalink/core vocabulary (tests/data/vocabularies), the Who/Author element, Citations for
re-issued and reprocessed alerts, and line numbers that say where a schema error is."""

import csv
from pathlib import Path

import pytest
import voeventparse
from astropy.coordinates import Angle
from lxml import etree

from gateway.alerts import Alert
from gateway.alerts.files import iter_inputs
from gateway.resources import SAMPLES, resource
from gateway.voevent.build import Converter, MemoryHistory
from gateway.voevent.ivorn import event_stream, is_event_ivorn, parse_ivorn
from gateway.voevent.parse import parse_event
from gateway.voevent.validate import validate

XSD = etree.parse(str(resource("xml", "VOEvent-v2.0.xsd")))
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
VOCABULARY = Path(__file__).parent.parent / "data" / "vocabularies" / "datalink-core-terms.csv"
DATALINK = "http://www.ivoa.net/rdf/datalink/core#"
AUTHORITY, STREAM, URL = "test.vogateway", "alerts", "http://127.0.0.1:8080"


def enumeration(type_name: str) -> set[str]:
    """The values the VOEvent 2.0 schema allows for a simple type."""
    return set(XSD.xpath(f"//xs:simpleType[@name='{type_name}']//xs:enumeration/@value", namespaces=XS))


def converter(**options) -> Converter:
    return Converter(AUTHORITY, STREAM, URL, clock=lambda: 1_800_000_000.0, **options)


@pytest.fixture(scope="module")
def samples() -> list[Alert]:
    return list(iter_inputs([SAMPLES]))


@pytest.fixture(scope="module")
def events(samples):
    convert = converter()
    return [(alert, convert(alert)) for alert in samples]


# -- IVORNs ---------------------------------------------------------------------------------------------------------

#: (identifier, its stream, its local id), as the texts give them: VOEvent 2.0 sections 2.2 (catot), 3.1.3 and 3.7.1
#: (Tycho), 3.9 and 4 (RAPTOR); VOEvent 2.1 section 2.2 for the query form of IVOA Identifiers 2.0 section 4.1
EXAMPLES = [
    ("ivo://nvo.caltech/voeventnet/catot#1004071150784109051", "ivo://nvo.caltech/voeventnet/catot",
     "1004071150784109051"),
    ("ivo://uraniborg.hven#1572-11-11/0001", "ivo://uraniborg.hven", "1572-11-11/0001"),
    ("ivo://raptor.lanl#235649409/sn2005k", "ivo://raptor.lanl", "235649409/sn2005k"),
    ("ivo://raptor.lanl/VOEvent#235649409", "ivo://raptor.lanl/VOEvent", "235649409"),
    ("ivo://example.org/catot?100407", "ivo://example.org/catot", "100407"),
]


@pytest.mark.parametrize("ivorn,stream,local", EXAMPLES)
def test_the_standards_example_ivorns_are_read(ivorn, stream, local):
    parsed = parse_ivorn(ivorn)
    assert (parsed.stream, parsed.local_id) == (stream, local)
    event = parse_event(f'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" '
                        f'ivorn="{ivorn}" role="test"/>'.encode(), origin="x")
    assert event.ivorn == ivorn


@pytest.mark.parametrize("stream", ["ivo://nvo.caltech/voeventnet/catot", "ivo://uraniborg.hven/Tycho",
                                    "ivo://raptor.lanl/organization"])
def test_stream_and_author_identifiers_are_identifiers_but_not_events(stream):
    assert parse_ivorn(stream).stream == stream and not is_event_ivorn(stream)


def test_rubin_and_ztf_have_their_own_streams_and_old_ivorns_still_read(events):
    streams = {alert.survey: parse_ivorn(event.ivorn).stream for alert, event in events}
    assert streams == {survey: event_stream(AUTHORITY, STREAM, survey) for survey in ("rubin", "ztf")}
    assert streams["rubin"] != streams["ztf"]
    old = parse_ivorn("ivo://vogateway.local/alerts#2297864483059920826")  # what earlier versions wrote
    assert (old.stream, old.local_id) == ("ivo://vogateway.local/alerts", "2297864483059920826")


# -- WhereWhen --------------------------------------------------------------------------------------------------------

#: the telescopes' coordinates as their projects' software gives them (Rubin: lat -30.244639, lon -70.749417,
#: 2663 m; ZTF's scheduler for P48: 33d21m26.35s, -116d51m32.04s, 1707 m)
SITES = {"rubin": (Angle("-70.749417d").wrap_at("360d").deg, -30.244639, 2663.0),
         "ztf": (Angle("-116d51m32.04s").wrap_at("360d").deg, Angle("33d21m26.35s").deg, 1707.0)}


def test_a_topocentric_system_comes_with_the_observatory_coordinates(events):
    systems = enumeration("idValues")
    for alert, event in events:
        root = etree.fromstring(event.xml)
        data = root.find("WhereWhen/ObsDataLocation")
        system = data.find("ObservationLocation/AstroCoordSystem").get("id")
        assert system in systems and system.endswith("-TOPO")
        observatory = data.find("ObservatoryLocation")
        # VOEvent 2.0 section 3.4.2, second form: "the actual coordinate values of longitude, latitude and
        # altitude on the surface of the Earth", in UTC-GEOD-TOPO (the schema's value "for ObservatoryLocation")
        assert observatory.find("AstroCoordSystem").get("id") == "UTC-GEOD-TOPO" in systems
        assert observatory.find("AstroCoords").get("coord_system_id") == "UTC-GEOD-TOPO"
        value3 = observatory.find("AstroCoords/Position3D/Value3")
        got = tuple(float(value3.findtext(c)) for c in ("C1", "C2", "C3"))
        assert got == pytest.approx(SITES[alert.survey], abs=1e-6)
        assert observatory.get("id") == ("Palomar" if alert.survey == "ztf" else "Rubin Observatory, Cerro Pachon")
        assert "mid-exposure" in root.findtext("WhereWhen/Description")
        assert float(data.findtext("ObservationLocation/AstroCoords/Time/Error")) > 0


# -- Reference@meaning ------------------------------------------------------------------------------------------------

def datalink_terms() -> set[str]:
    with open(VOCABULARY, newline="") as f:
        return {row[0] for row in csv.reader(f, delimiter=";") if row and not row[0].startswith("#")}


def test_every_reference_says_what_it_is_with_a_datalink_term(events):
    terms = datalink_terms()
    assert {"cutout", "documentation"} <= terms and "model" not in terms  # '#model' is commented out there
    seen = set()
    for _, event in events:
        for reference in etree.fromstring(event.xml).iter("Reference"):
            meaning = reference.get("meaning")
            assert meaning and meaning.startswith(DATALINK), etree.tostring(reference)
            assert meaning[len(DATALINK):] in terms
            seen.add(meaning[len(DATALINK):])
    assert seen == {"cutout", "documentation"}


# -- Who --------------------------------------------------------------------------------------------------------------

def test_who_names_an_author_with_contact(samples):
    event = converter(author_name="Ada Operator", author_email="ada@example.org")(samples[0])
    assert validate(event.xml) == []
    author = voeventparse.loads(event.xml).Who.Author
    assert (author.contactName, author.contactEmail, author.shortName) == ("Ada Operator", "ada@example.org",
                                                                          AUTHORITY)
    default = voeventparse.loads(converter()(samples[0]).xml).Who.Author
    assert default.contactName == "vogateway operator" and default.find("contactEmail") is None
    with pytest.raises(ValueError, match="author_name"):
        converter(author_name="bad\x00name")


# -- Citations --------------------------------------------------------------------------------------------------------

def _rubin(samples, schema: str, **changes) -> Alert:
    alert = next(a for a in samples if a.survey == "rubin" and a.schema == schema)
    record = dict(alert.record, diaSource=dict(alert.record["diaSource"], **changes))
    return Alert("rubin", schema, record, "re.avro", 1, alert.simulated)


def citations(event) -> list[tuple[str, str]]:
    root = etree.fromstring(event.xml)
    return [(e.get("cite"), e.text) for e in root.iterfind("Citations/EventIVORN")]


def test_a_reprocessed_rubin_diasource_supersedes_its_first_issue(samples):
    convert = converter()
    first = convert(_rubin(samples, "11.1"))
    source = first.alert.record["diaSource"]
    again = convert(_rubin(samples, "11.1", timeProcessedMjdTai=source["timeProcessedMjdTai"] + 1.0,
                           psfFlux=source["psfFlux"] * 1.1))
    assert again.ivorn != first.ivorn and again.view.alert_id == first.view.alert_id
    assert citations(again) == [("supersedes", first.ivorn)]
    assert {"supersedes"} <= enumeration("citeValues")
    assert validate(again.xml) == []
    assert "Supersedes" in etree.fromstring(again.xml).findtext("Citations/Description")
    replay = convert(_rubin(samples, "11.1"))  # the first issue delivered again: same IVORN, cites nothing
    assert replay.ivorn == first.ivorn and citations(replay) == []


def test_a_reissued_alert_with_a_new_alert_id_supersedes_the_old_one(samples):
    convert = converter()
    first = convert(_rubin(samples, "7.4"))
    record = dict(first.alert.record, alertId=first.alert.record["alertId"] + 1)
    again = convert(Alert("rubin", "7.4", record, "re.avro", 2, first.alert.simulated))
    assert again.ivorn != first.ivorn
    assert citations(again) == [("supersedes", first.ivorn)]


def test_supersedes_is_found_from_the_object_history_after_a_restart(samples):
    first = converter()(_rubin(samples, "11.1"))
    history = MemoryHistory()  # as the store loads it at start: each object's latest IVORN
    history.remember(first.view.object_key, first.ivorn)
    source = first.alert.record["diaSource"]
    again = converter(history=history)(_rubin(samples, "11.1",
                                              timeProcessedMjdTai=source["timeProcessedMjdTai"] + 0.5))
    assert citations(again) == [("supersedes", first.ivorn)]


def test_a_new_detection_of_the_object_is_a_followup(samples):
    convert = converter()
    first = convert(_rubin(samples, "11.1"))
    source = first.alert.record["diaSource"]
    other = convert(_rubin(samples, "11.1", diaSourceId=source["diaSourceId"] + 1))
    assert citations(other) == [("followup", first.ivorn)]


# -- pretty-printed packets -------------------------------------------------------------------------------------------

def test_schema_errors_name_the_line_of_the_faulty_element(samples):
    xml = converter()(samples[0]).xml
    lines = xml.decode().splitlines()
    assert len(lines) > 80  # one element a line
    at = next(i for i, line in enumerate(lines, 1) if 'name="n_previous"' in line)
    broken = xml.replace(b'name="n_previous" ucd="meta.number" dataType="int"',
                         b'name="n_previous" ucd="meta.number" dataType="integer"')
    [problem] = validate(broken)
    assert problem.startswith(f"line {at}:") and "dataType" in problem


def test_the_author_comes_from_the_config(samples):
    from gateway import config
    from gateway.convert import make_converter
    from gateway.service import worker_settings

    typed = config.parse({"gateway": {"author_name": "Night Duty", "author_email": "duty@example.org"}})
    author = voeventparse.loads(make_converter(typed)(samples[0]).xml).Who.Author
    assert (author.contactName, author.contactEmail) == ("Night Duty", "duty@example.org")
    settings = worker_settings(typed)  # what the worker processes build with
    assert (settings.author_name, settings.author_email) == ("Night Duty", "duty@example.org")
    assert 'author_name = "vogateway operator"' in config.DEFAULTS and 'author_email = ""' in config.DEFAULTS


def test_a_packet_read_back_says_which_instant_of_the_exposure_its_time_is(events):
    from gateway.voevent.read import view_of_tree

    for alert, event in events:
        view = view_of_tree(etree.fromstring(event.xml))
        assert (view.time_ref, view.mjd) == (event.view.time_ref, event.view.mjd), alert.source
