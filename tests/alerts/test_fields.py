"""fields: the survey-independent view, for every Rubin schema version's sample alert and the real ZTF alerts."""

import math

import fastavro
import pytest

from gateway.alerts import Alert
from gateway.alerts import fields

from alertdata import rubin_files, version_key, ztf_real_files

ZTF_FILES = ztf_real_files()
RUBIN_FILES = rubin_files()


def load(path, survey, version=None):
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        records = list(reader)
    if version is None:
        version = records[0]["schemavsn"]
    return [Alert(survey, version, r, source=str(path), position=i) for i, r in enumerate(records)]


@pytest.fixture(params=sorted(RUBIN_FILES, key=version_key))
def rubin_alert(request):
    """lsst-alert-packet's fake alert of each schema version (bundled under samples/rubin/M.m/)."""
    return load(RUBIN_FILES[request.param], "rubin", request.param)[0]


def test_rubin_detection(rubin_alert):
    major = int(rubin_alert.schema.split(".")[0])
    src = rubin_alert.record["diaSource"]
    det = fields.detection(rubin_alert)
    assert det.source_id == src["diaSourceId"]
    assert det.ra == pytest.approx(src["ra"])
    assert det.dec == pytest.approx(src["decl" if major < 5 else "dec"])
    assert det.time_scale == "tai" and det.time_ref == "mid"
    assert det.mjd == src["midPointTai" if major < 5 else "midpointMjdTai"]
    assert det.band == src["filterName" if major < 5 else "band"]
    flux = src["psFlux" if major < 5 else "psfFlux"]
    assert det.psf_flux == pytest.approx(flux)
    assert det.mag == pytest.approx(31.4 - 2.5 * math.log10(flux))
    assert det.mag_err == pytest.approx(2.5 / math.log(10) * det.psf_flux_err / flux)
    assert det.snr == pytest.approx(src["snr"])
    if major >= 5:
        assert det.reliability == (None if src["reliability"] is None else pytest.approx(src["reliability"]))
    else:
        assert det.reliability is None  # 3.0/4.0 only have "spuriousness", a different quantity
    # diaSource.diaObjectId is null in the fake alerts: the alert's diaObject supplies the object
    assert det.object_id == rubin_alert.record["diaObject"]["diaObjectId"]
    assert det.extra is src


def test_rubin_ids_and_keys(rubin_alert):
    record = rubin_alert.record
    expected = record["alertId"] if "alertId" in record else record["diaSourceId"]
    assert fields.alert_id(rubin_alert) == expected
    assert fields.object_key(rubin_alert) == f"diaObject:{record['diaObject']['diaObjectId']}"


def test_rubin_previous_and_summary(rubin_alert):
    record = rubin_alert.record
    previous = fields.previous_detections(rubin_alert)
    assert len(previous) == len(record["prvDiaSources"]) == fields.n_previous(rubin_alert)
    assert all(isinstance(d, fields.Detection) and d.time_scale == "tai" for d in previous)
    summary = fields.object_summary(rubin_alert)
    assert {"n_detections", "first_mjd", "last_mjd", "ra", "dec", "time_scale"} <= set(summary)
    assert summary["ra"] == pytest.approx(record["diaObject"]["ra"])
    for key, value in summary.items():
        band = key.split("_")[0]
        if key.endswith("_psf_flux_mean"):
            major = int(rubin_alert.schema.split(".")[0])
            raw = record["diaObject"][f"{band}PSFluxMean" if major < 5 else f"{band}_psfFluxMean"]
            assert value == pytest.approx(raw)
    if "nDiaSources" in record["diaObject"]:
        assert summary["n_detections"] == record["diaObject"]["nDiaSources"]
        assert summary["first_mjd"] == pytest.approx(record["diaObject"]["firstDiaSourceMjdTai"])
    assert fields.cutouts(rubin_alert) == {}  # the fake alerts ship null cutouts


def test_rubin_cutouts_and_solar_system(rubin_alert):
    record = dict(rubin_alert.record)
    record["cutoutDifference"] = b"SIMPLE  =                    T"
    source = dict(record["diaSource"], ssObjectId=42)
    record["diaSource"] = source
    record["diaObject"] = None
    alert = Alert("rubin", rubin_alert.schema, record)
    assert fields.cutouts(alert) == {"difference": b"SIMPLE  =                    T"}
    assert fields.is_solar_system(alert)
    assert fields.object_key(alert) == "ssObject:42"
    assert fields.detection(alert).object_id == 42


def test_rubin_nan_and_null_position(rubin_alert):
    major = int(rubin_alert.schema.split(".")[0])
    dec = "decl" if major < 5 else "dec"
    for bad in (float("nan"), None):
        record = dict(rubin_alert.record, diaSource=dict(rubin_alert.record["diaSource"], ra=bad, **{dec: bad}))
        det = fields.detection(Alert("rubin", rubin_alert.schema, record))
        assert det.ra is None and det.dec is None


def test_rubin_orphan_source_key(rubin_alert):
    record = dict(rubin_alert.record, diaObject=None, diaSource=dict(rubin_alert.record["diaSource"], diaObjectId=None, ssObjectId=None))
    for key in ("ssObject", "ssSource"):
        if key in record:
            record[key] = None
    alert = Alert("rubin", rubin_alert.schema, record)
    assert fields.object_key(alert) == f"diaSource:{record['diaSource']['diaSourceId']}"
    assert not fields.is_solar_system(alert)


def test_negative_flux_has_no_magnitude(rubin_alert):
    major = int(rubin_alert.schema.split(".")[0])
    flux = "psFlux" if major < 5 else "psfFlux"
    record = dict(rubin_alert.record, diaSource=dict(rubin_alert.record["diaSource"], **{flux: -500.0}))
    det = fields.detection(Alert("rubin", rubin_alert.schema, record))
    assert det.psf_flux == -500.0 and det.mag is None and det.mag_err is None


@pytest.mark.parametrize("path", ZTF_FILES, ids=[p.name for p in ZTF_FILES])
def test_ztf(path):
    (alert,) = load(path, "ztf")
    c = alert.record["candidate"]
    det = fields.detection(alert)
    assert fields.alert_id(alert) == alert.record["candid"] == det.source_id
    assert fields.object_key(alert) == alert.record["objectId"] and fields.object_key(alert).startswith("ZTF")
    assert det.mjd == pytest.approx(c["jd"] - 2400000.5) and det.time_scale == "utc" and det.time_ref == "start"
    assert det.band == {1: "g", 2: "r", 3: "i"}[c["fid"]]
    assert det.mag == pytest.approx(c["magpsf"])
    assert abs(det.psf_flux) == pytest.approx(10 ** ((31.4 - c["magpsf"]) / 2.5))
    assert det.is_negative == (c["isdiffpos"] in ("f", "0"))
    assert (det.psf_flux < 0) == det.is_negative
    # flux error back to a magnitude error
    assert 2.5 / math.log(10) * det.psf_flux_err / abs(det.psf_flux) == pytest.approx(c["sigmapsf"])
    assert det.ra_err is None and det.dec_err is None
    assert det.reliability == pytest.approx(c["drb"] if c.get("drb") is not None else c["rb"])
    prv = alert.record["prv_candidates"] or []
    detections, limits = fields.previous_detections(alert), fields.upper_limits(alert)
    assert len(detections) + len(limits) == len(prv)
    assert fields.n_previous(alert) == len(detections)
    assert all(d.object_id == alert.record["objectId"] and d.source_id for d in detections)
    assert all(lim.scale == "utc" and lim.limiting_mag > 15 and lim.band in ("g", "r", "i") for lim in limits)
    summary = fields.object_summary(alert)
    assert summary["n_detections"] == c["ndethist"]
    assert summary["first_mjd"] == pytest.approx(c["jdstarthist"] - 2400000.5)
    kinds = fields.cutouts(alert)
    assert set(kinds) == {"difference", "science", "template"}
    assert all(data[:2] == b"\x1f\x8b" for data in kinds.values())  # gzipped FITS as shipped
    assert fields.is_solar_system(alert) is False


def test_ztf_upper_limits_and_detections_split():
    # 3.2 file mixes detections (with candid) and upper limits (candid null)
    (alert,) = load(next(p for p in ZTF_FILES if p.name.startswith("2019_01_10")), "ztf")
    detections, limits = fields.previous_detections(alert), fields.upper_limits(alert)
    assert detections and limits
    assert [d.mjd for d in detections] == sorted(d.mjd for d in detections)


def test_ztf_solar_system():
    (alert,) = load(ZTF_FILES[0], "ztf")
    candidate = dict(alert.record["candidate"], ssnamenr="1234", ssdistnr=1.2)
    record = dict(alert.record, candidate=candidate)
    assert fields.is_solar_system(Alert("ztf", alert.schema, record))
    far = dict(record, candidate=dict(candidate, ssdistnr=25.0))
    assert not fields.is_solar_system(Alert("ztf", alert.schema, far))


def test_ztf_missing_optional_fields():
    (alert,) = load(ZTF_FILES[0], "ztf")
    candidate = dict(alert.record["candidate"], drb=None, rb=None, magpsf=None, sigmapsf=None, isdiffpos=None)
    record = dict(alert.record, candidate=candidate, prv_candidates=None, cutoutScience=None)
    alert = Alert("ztf", alert.schema, record)
    det = fields.detection(alert)
    assert det.reliability is None and det.psf_flux is None and det.mag is None and det.is_negative is None
    assert fields.previous_detections(alert) == [] and fields.upper_limits(alert) == [] and fields.n_previous(alert) == 0
    assert set(fields.cutouts(alert)) == {"difference", "template"}


def test_flux_mag_roundtrip():
    flux, err = fields.mag_to_flux(20.0, 0.1)
    assert flux == pytest.approx(10 ** (11.4 / 2.5))
    mag, mag_err = fields.flux_to_mag(flux, err)
    assert mag == pytest.approx(20.0) and mag_err == pytest.approx(0.1)
    assert fields.flux_to_mag(0.0) == (None, None) and fields.flux_to_mag(float("nan")) == (None, None)


@pytest.mark.parametrize("version", sorted(RUBIN_FILES, key=version_key))
def test_simulated_rubin_samples_repeat_objects(version):
    alerts = load(RUBIN_FILES[version].with_name("simulated.avro"), "rubin", version)
    keys = [fields.object_key(a) for a in alerts]
    repeated = keys[0]
    assert keys.count(repeated) == 3 and repeated.startswith("diaObject:")
    series = [a for a in alerts if fields.object_key(a) == repeated]
    assert [fields.n_previous(a) for a in series] == [0, 1, 2]
    mjds = [fields.detection(a).mjd for a in series]
    assert mjds == sorted(mjds) and 60000 < mjds[0] < 62000  # real MJDs (TAI)
    # the earlier detections shipped with the latest alert are the earlier alerts' sources
    assert [d.source_id for d in fields.previous_detections(series[-1])] == [fields.alert_id(a) for a in series[:2]]
    assert len({fields.alert_id(a) for a in alerts}) == len(alerts)
    negative = [fields.detection(a) for a in alerts if fields.detection(a).psf_flux < 0]
    assert len(negative) == 1 and negative[0].mag is None
    assert [fields.is_solar_system(a) for a in alerts].count(True) == 1
    assert any(k.startswith("ssObject:") for k in keys)


def test_simulated_ztf_samples():
    path = ZTF_FILES[0].with_name("simulated.avro")
    alerts = load(path, "ztf")
    assert len(alerts) >= 15
    by_object = {}
    for alert in alerts:
        by_object.setdefault(fields.object_key(alert), []).append(alert)
    assert max(len(v) for v in by_object.values()) >= 3
    for series in by_object.values():
        assert [fields.n_previous(a) for a in series] == list(range(len(series)))
        assert all(fields.upper_limits(a) or fields.n_previous(a) == 0 for a in series)
    detections = [fields.detection(a) for a in alerts]
    assert all(15 <= d.mag <= 21.5 and d.band in ("g", "r", "i") for d in detections)
    assert all(58484 <= d.mjd <= 60676 for d in detections)  # 2019 ... 2024
    assert sum(fields.is_solar_system(a) for a in alerts) == 1
    assert any(d.is_negative for d in detections)
