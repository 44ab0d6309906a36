"""Alert -> VOEvent: every bundled sample of every Rubin schema version and ZTF, checked against the XSD,
voevent-parse, the alert's own values and astropy.time; citations, cutout references, size cap, rejections."""

import math
from datetime import timezone

import pytest
import voeventparse
from astropy import units as u
from astropy.time import Time
from astropy.utils import iers

from gateway.alerts import Alert, AlertError, fields
from gateway.alerts.files import iter_inputs
from gateway.alerts.schemas import packaged_rubin_versions
from gateway.resources import SAMPLES
from gateway.voevent.build import MAX_EVENT_BYTES, MAX_PREVIOUS_ROWS, Converter, MemoryHistory
from gateway.voevent.validate import validate
from support import skip_or_fail

iers.conf.auto_download = False  # astropy must not go to the network for leap seconds in tests

AUTHORITY, STREAM, URL = "test.vogateway", "alerts", "http://127.0.0.1:8080"
PREFIX = {survey: f"ivo://{AUTHORITY}/{STREAM}/{survey}#" for survey in ("rubin", "ztf")}  # a stream per survey
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z: a fixed clock for Who/Date


def converter(**options) -> Converter:
    return Converter(AUTHORITY, STREAM, URL, clock=lambda: NOW, **options)


@pytest.fixture(scope="module")
def samples() -> list[Alert]:
    alerts = list(iter_inputs([SAMPLES]))
    assert all(isinstance(a, Alert) for a in alerts), [a for a in alerts if not isinstance(a, Alert)]
    return alerts


@pytest.fixture(scope="module")
def converted(samples):
    """(alert, event) for the whole bundled set, converted in order by one Converter (as `vogateway convert`)."""
    convert = converter()
    return [(alert, convert(alert)) for alert in samples]


def by_name(params: dict, name: str) -> dict:
    return params[name]


def test_samples_cover_every_shipped_rubin_version_and_ztf(samples):
    shipped = set(packaged_rubin_versions())
    if not shipped:
        skip_or_fail("lsst-alert-packet (the 'rubin' extra) is not installed: cannot list the shipped versions")
    rubin = {a.schema for a in samples if a.survey == "rubin"}
    assert rubin == shipped, "a shipped Rubin schema version has no bundled sample"
    assert {"3.0", "11.1"} <= rubin
    assert {a.schema for a in samples if a.survey == "ztf"} >= {"3.2", "3.3", "3.5"}


def test_every_sample_validates_against_the_xsd_and_voevent_parse(converted):
    for alert, event in converted:
        where = f"{alert.survey} {alert.schema} {alert.source} @ {alert.position}"
        assert validate(event.xml) == [], where
        parsed = voeventparse.loads(event.xml)
        assert voeventparse.valid_as_v2_0(parsed), where
        assert len(event.xml) < MAX_EVENT_BYTES


def test_ivorn_role_position_time_match_the_alert(converted):
    for alert, event in converted:
        det = fields.detection(alert)
        v = voeventparse.loads(event.xml)
        ivorn = PREFIX[alert.survey] + fields.issue_id(alert)
        assert event.ivorn == v.attrib["ivorn"] == ivorn
        assert event.role == v.attrib["role"] == ("test" if alert.simulated else "observation")
        assert event.alert is alert and event.origin == alert.source
        assert event.received.tzinfo is not None
        assert v.Who.AuthorIVORN == f"ivo://{AUTHORITY}/{STREAM}"
        assert v.Who.Date == "2027-01-15T08:00:00"

        position = voeventparse.get_event_position(v)
        assert (position.ra, position.dec) == (det.ra, det.dec)  # every digit kept
        assert position.units == "deg" and position.system == "UTC-ICRS-TOPO"
        if det.ra_err is not None:
            assert position.err == pytest.approx(max(det.ra_err, det.dec_err), rel=1e-6)
        else:  # survey default: Rubin 0.1", ZTF 0.2"
            assert position.err * 3600 == pytest.approx(0.1 if alert.survey == "rubin" else 0.2, rel=1e-6)

        # WhereWhen's time is mid-exposure for both surveys: ZTF's jd is the start, Rubin's midpoint the middle
        exposure = det.extra.get("exptime") or 30.0
        assert det.time_ref == ("start" if alert.survey == "ztf" else "mid")
        shift = exposure / 2 if det.time_ref == "start" else 0.0
        expected = (Time(det.mjd, format="mjd", scale=det.time_scale) + shift * u.s).utc.to_datetime(
            timezone=timezone.utc)
        got = voeventparse.get_event_time_as_utc(v)
        assert abs((got - expected).total_seconds()) <= 0.001, (alert.schema, got, expected)
        time = v.WhereWhen.ObsDataLocation.ObservationLocation.AstroCoords.Time
        assert float(time.Error) == exposure / 2  # the detection happened within half an exposure of it


def test_what_carries_the_detection_object_and_counts(converted):
    for alert, event in converted:
        det = fields.detection(alert)
        v = voeventparse.loads(event.xml)
        top = voeventparse.get_toplevel_params(v)
        assert top["alert_id"]["value"] == str(fields.alert_id(alert))
        assert top["object_key"]["value"] == fields.object_key(alert)
        assert top["survey"]["value"] == alert.survey
        assert top["schema_version"]["value"] == alert.schema
        assert int(top["n_previous"]["value"]) == fields.n_previous(alert)
        assert top["solar_system"]["value"] == ("true" if fields.is_solar_system(alert) else "false")

        groups = voeventparse.get_grouped_params(v)
        trigger = groups["trigger"]
        scale = "tai" if alert.survey == "rubin" else "utc"
        assert float(trigger[f"mjd_{scale}"]["value"]) == det.mjd
        assert trigger["ra"]["ucd"] == "pos.eq.ra;meta.main" and trigger["ra"]["unit"] == "deg"
        if det.psf_flux is not None:
            assert float(trigger["psf_flux"]["value"]) == pytest.approx(det.psf_flux, rel=1e-6)
            assert trigger["psf_flux"]["unit"] == "nJy"
            assert trigger["psf_flux"]["ucd"] == "phot.flux.density;em.opt"
        if det.mag is not None:
            assert float(trigger["mag"]["value"]) == pytest.approx(det.mag, rel=1e-6)
        if det.band is not None:
            assert trigger["band"]["value"] == det.band
        if det.reliability is not None:
            assert float(trigger["reliability"]["value"]) == pytest.approx(det.reliability, rel=1e-6)
            assert float(v.Why.attrib["importance"]) == pytest.approx(det.reliability, abs=5e-4)
        else:
            assert "reliability" not in trigger and "importance" not in v.Why.attrib
        for name in ("snr", "is_dipole", "is_negative", "trail_length"):
            assert (name in trigger) == (getattr(det, name) is not None), name
        # every Param says what it is
        for group in groups.values():
            assert all(p.get("ucd") for p in group.values())
        summary = fields.object_summary(alert)
        obj = groups["object"]
        if summary["n_detections"] is not None:
            assert int(obj["n_detections"]["value"]) == summary["n_detections"]


def test_previous_detections_table_lists_the_latest(converted):
    seen = 0
    for alert, event in converted:
        v = voeventparse.loads(event.xml)
        n = fields.n_previous(alert)
        tables = v.What.findall("Table")
        if not n:
            assert not tables
            continue
        seen += 1
        rows = tables[0].Data.findall("TR")
        previous = sorted(fields.previous_detections(alert), key=lambda d: d.mjd)[-MAX_PREVIOUS_ROWS:]
        assert len(rows) == len(previous)
        assert [float(tr.TD[0]) for tr in rows] == [d.mjd for d in previous]
    assert seen >= 10


def test_repeat_objects_cite_their_previous_event(converted):
    latest: dict[str, str] = {}
    cited = 0
    for alert, event in converted:
        key = fields.object_key(alert)
        v = voeventparse.loads(event.xml)
        citations = v.find("Citations")
        if key in latest:
            assert citations is not None, (key, event.ivorn)
            assert citations.EventIVORN == latest[key]
            assert citations.EventIVORN.attrib["cite"] == "followup"
            cited += 1
        else:
            assert citations is None
        latest[key] = event.ivorn
    assert cited >= 20  # Rubin and ZTF repeat objects in the bundled samples


def test_history_protocol_is_used_and_a_replay_never_cites_itself(samples):
    class Recording:
        def __init__(self):
            self.asked, self.told = [], []

        def previous(self, key):
            self.asked.append(key)
            return "ivo://elsewhere.example/stream#earlier" if key.startswith("ZTF") else None

        def remember(self, key, ivorn):
            self.told.append((key, ivorn))

    history = Recording()
    convert = converter(history=history)
    ztf = next(a for a in samples if a.survey == "ztf")
    event = convert(ztf)
    assert history.asked == [fields.object_key(ztf)]
    assert history.told == [(fields.object_key(ztf), event.ivorn)]
    assert voeventparse.loads(event.xml).Citations.EventIVORN == "ivo://elsewhere.example/stream#earlier"

    memory = converter()
    first = memory(ztf)
    again = memory(ztf)  # the same alert replayed: same IVORN, and no citation of itself
    assert again.ivorn == first.ivorn
    assert voeventparse.loads(again.xml).find("Citations") is None


def test_cutouts_are_referenced_not_embedded(converted):
    with_cutouts = 0
    for alert, event in converted:
        kinds = fields.cutouts(alert)
        refs = voeventparse.loads(event.xml).What.findall("Reference")
        alert_id = fields.alert_id(alert)
        assert [r.attrib["uri"] for r in refs] == [f"{URL}/cutouts/{alert_id}/{k}.fits"
                                                   for k in ("difference", "science", "template") if k in kinds]
        assert all(r.attrib["type"] in kinds and r.attrib["mimetype"] == "application/fits" for r in refs)
        if kinds:
            with_cutouts += 1
            assert len(event.xml) < min(len(b) for b in kinds.values()) + 10_000  # the bytes stay on the alert
    assert with_cutouts >= 10


def test_how_names_facility_and_instrument(converted):
    for alert, event in converted:
        how = str(voeventparse.loads(event.xml).How.Description)
        assert ("Rubin" in how and "LSSTCam" in how) if alert.survey == "rubin" else ("Palomar" in how and
                                                                                     "ZTF camera" in how)


def _with_previous(alert: Alert, n: int) -> Alert:
    """The alert with ``n`` synthetic previous detections (one a night before it), for the size cap."""
    record = dict(alert.record)
    if alert.survey == "ztf":
        c = record["candidate"]
        record["prv_candidates"] = [dict(c, jd=c["jd"] - 1 - i, candid=c["candid"] - 1 - i) for i in range(n)]
    else:
        src = record["diaSource"]
        name = "midpointMjdTai" if "midpointMjdTai" in src else "midPointTai"
        record["prvDiaSources"] = [dict(src, **{name: src[name] - 1 - i, "diaSourceId": src["diaSourceId"] - 1 - i})
                                   for i in range(n)]
    return Alert(alert.survey, alert.schema, record, alert.source, alert.position, alert.simulated)


@pytest.mark.parametrize("survey,schema", [("rubin", "11.1"), ("rubin", "3.0"), ("ztf", "3.3")])
def test_a_long_light_curve_is_summarised_under_the_frame_cap(samples, survey, schema):
    alert = next(a for a in samples if a.survey == survey and a.schema == schema)
    big = _with_previous(alert, 2_000)
    event = converter()(big)
    assert len(event.xml) < MAX_EVENT_BYTES
    assert validate(event.xml) == []
    v = voeventparse.loads(event.xml)
    assert voeventparse.get_toplevel_params(v)["n_previous"]["value"] == "2000"
    rows = v.What.Table.Data.findall("TR")
    assert len(rows) == MAX_PREVIOUS_ROWS
    newest = sorted(d.mjd for d in fields.previous_detections(big))[-MAX_PREVIOUS_ROWS:]
    assert [float(tr.TD[0]) for tr in rows] == newest


def test_an_event_that_cannot_fit_is_rejected_not_truncated(samples):
    alert = next(a for a in samples if a.survey == "ztf")
    record = dict(alert.record, candidate=dict(alert.record["candidate"], ssnamenr="x" * 120_000))
    with pytest.raises(AlertError) as error:
        converter()(Alert("ztf", alert.schema, record, "big.avro", 7))
    assert error.value.source == "big.avro" and error.value.position == 7
    assert "too large" in error.value.reason


def _rubin_with(samples, schema: str, **changes) -> Alert:
    alert = next(a for a in samples if a.survey == "rubin" and a.schema == schema)
    record = dict(alert.record, diaSource=dict(alert.record["diaSource"], **changes))
    return Alert("rubin", schema, record, "bad.avro", 3, True)


@pytest.mark.parametrize("changes,reason", [
    ({"ra": None}, "no usable position"),
    ({"ra": math.nan}, "no usable position"),
    ({"dec": math.nan}, "no usable position"),
    ({"dec": None}, "no usable position"),
    ({"dec": 91.0}, "position out of range"),
    ({"ra": -1.0}, "position out of range"),
    ({"midpointMjdTai": math.nan}, "no usable time"),
    ({"midpointMjdTai": None}, "no usable time"),
])
def test_alerts_without_usable_position_or_time_are_rejected(samples, changes, reason):
    history = MemoryHistory()
    with pytest.raises(AlertError) as error:
        converter(history=history)(_rubin_with(samples, "11.1", **changes))
    assert (error.value.source, error.value.position) == ("bad.avro", 3)
    assert reason in error.value.reason
    assert len(history) == 0  # a rejected alert is not remembered for citations


def test_old_schema_names_are_rejected_the_same_way(samples):
    with pytest.raises(AlertError, match="no usable position"):
        converter()(_rubin_with(samples, "4.0", decl=math.nan))


def test_malformed_and_unknown_alerts_are_rejected(samples):
    alert = next(a for a in samples if a.survey == "rubin")
    with pytest.raises(AlertError, match="malformed alert"):
        converter()(Alert("rubin", alert.schema, {"something": 1}, "odd.avro", 0))
    with pytest.raises(AlertError, match="unknown survey"):
        converter()(Alert("atlas", "1.0", alert.record, "odd.avro", 1))


def test_role_and_identity_options(samples):
    simulated = next(a for a in samples if a.simulated)
    assert converter(role="observation")(simulated).role == "observation"
    assert converter(role="utility")(simulated).role == "utility"
    with pytest.raises(ValueError, match="role"):
        converter(role="bogus")
    with pytest.raises(ValueError, match="IVORN"):
        Converter("a b", STREAM, URL)
    with pytest.raises(ValueError, match="IVORN"):
        Converter(AUTHORITY, "", URL)
    event = Converter(AUTHORITY, "/deep/stream/", URL + "/")(simulated)
    assert event.ivorn.startswith(f"ivo://{AUTHORITY}/deep/stream/{simulated.survey}#")
    assert b"http://127.0.0.1:8080//" not in event.xml
    # the converter is what Pipeline wants: a callable, also spelled .convert
    c = converter()
    assert c.convert(simulated).ivorn == c(simulated).ivorn


def test_memory_history_is_bounded_lru():
    history = MemoryHistory(max_objects=2)
    history.remember("a", "ivo://x/y#1")
    history.remember("b", "ivo://x/y#2")
    assert history.previous("a") == "ivo://x/y#1"  # a is now the most recently used
    history.remember("c", "ivo://x/y#3")
    assert history.previous("b") is None and history.previous("a") == "ivo://x/y#1"
    assert len(history) == 2


class _Forgetful:
    """A History that never cites: output then depends on the alert alone."""

    def previous(self, key):
        return None

    def remember(self, key, ivorn):
        pass


def test_shapes_do_not_leak_values_between_alerts(samples):
    """The builder reuses one tree per alert shape: an alert must not carry anything of the one before."""
    forward = converter(history=_Forgetful())
    first = {(a.source, a.position): forward(a).xml for a in samples}
    backward = converter(history=_Forgetful())
    for a in reversed(samples):
        assert backward(a).xml == first[a.source, a.position], (a.source, a.position)


def test_one_converter_can_be_used_from_several_threads(samples):
    from concurrent.futures import ThreadPoolExecutor

    expected = {(a.source, a.position): converter(history=_Forgetful())(a).xml for a in samples}
    shared = converter(history=_Forgetful())
    work = samples * 20
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(shared, work))
    for alert, event in zip(work, results):
        assert event.xml == expected[alert.source, alert.position]


def test_text_that_is_not_xml_is_a_rejection_not_a_crash(samples):
    alert = next(a for a in samples if a.survey == "ztf")
    record = dict(alert.record, candidate=dict(alert.record["candidate"], ssnamenr="bad\x00name"))
    convert = converter()
    with pytest.raises(AlertError, match="malformed alert.*XML compatible"):
        convert(Alert("ztf", alert.schema, record, "ctl.avro", 2))
    # the converter is still fine afterwards, for an alert of the same shape
    record = dict(alert.record, candidate=dict(alert.record["candidate"], ssnamenr="12345"))
    event = convert(Alert("ztf", alert.schema, record, "ok.avro", 3))
    assert validate(event.xml) == []
    assert voeventparse.get_grouped_params(voeventparse.loads(event.xml))["trigger"]["ssnamenr"]["value"] == "12345"


def test_non_ascii_text_is_utf8_as_declared(samples):
    alert = next(a for a in samples if a.survey == "ztf")
    record = dict(alert.record, candidate=dict(alert.record["candidate"], ssnamenr="Čeres 2000 ÅB"))
    event = converter()(Alert("ztf", alert.schema, record, "utf8.avro", 0))
    assert event.xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert "Čeres 2000 ÅB".encode() in event.xml
    assert validate(event.xml) == []
    params = voeventparse.get_grouped_params(voeventparse.loads(event.xml))
    assert params["trigger"]["ssnamenr"]["value"] == "Čeres 2000 ÅB"
