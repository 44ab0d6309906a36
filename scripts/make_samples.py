#!/usr/bin/env python
"""Regenerate the bundled sample alerts under gateway/data/samples/ (a developer script, not run by the gateway).

    .venv/bin/python scripts/make_samples.py [--out gateway/data/samples]

Needs lsst-alert-packet (the optional extra ``rubin``: its schemas, sample alerts and simulator) and the real
ZTF alerts in ../shared/data/ztf/. Deterministic: a fixed random seed, so a rerun gives the same files.
What each file is, and where it came from, is written to README.rst beside them; ``manifest.json`` lists the
simulated ones (their VOEvents get role "test").
"""

from __future__ import annotations

import argparse
import copy
import gzip
import io
import json
import math
import random
import shutil
import string
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import numpy as np
from astropy.io import fits

from gateway.alerts.decode import write_container
from gateway.alerts.schemas import SchemaLibrary, packaged_rubin_versions

HERE = Path(__file__).resolve().parent.parent
ZTF_REAL = HERE.parent / "shared" / "data" / "ztf"
BANDS = "ugrizy"


def mag_to_njy(mag: float) -> float:
    return 10 ** ((31.4 - mag) / 2.5)


def njy_to_mag(flux: float) -> float:
    return 31.4 - 2.5 * math.log10(flux)


def fits_stamp(rng: np.random.Generator, size: int, peak: float, gzipped: bool) -> bytes:
    """A small FITS image: a Gaussian point source on noise (float32), gzipped as ZTF ships them."""
    y, x = np.mgrid[:size, :size] - size // 2
    image = (peak * np.exp(-(x**2 + y**2) / (2 * 1.6**2)) + rng.normal(0, peak / 40, (size, size))).astype("float32")
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.round(image, 1)).writeto(buffer)
    data = buffer.getvalue()
    return gzip.compress(data, mtime=0) if gzipped else data


# --------------------------------------------------------------------------------------------------------- Rubin


def nullable_names(schema, found=None) -> set[str]:
    """Names of every nullable field anywhere in a (fully expanded) schema."""
    found = set() if found is None else found
    if isinstance(schema, dict):
        for field in schema.get("fields", ()):
            kind = field["type"]
            if isinstance(kind, list) and "null" in kind:
                found.add(field["name"])
            nullable_names(kind, found)
        if schema.get("type") == "array":
            nullable_names(schema["items"], found)
    elif isinstance(schema, list):
        for member in schema:
            nullable_names(member, found)
    return found


def record_schema(definition: dict, name: str) -> dict:
    """The (expanded) record definition of field ``name`` of the alert."""
    for field in definition["fields"]:
        if field["name"] == name:
            kind = field["type"]
            if isinstance(kind, list):
                kind = next(k for k in kind if k != "null")
            return kind
    raise KeyError(name)


def blank(schema: dict, rng: random.Random) -> dict:
    """A record of ``schema`` with nullable fields null and required ones at plain, plausible values.

    (lsst-alert-packet's ``simulate_alert`` is not used for this: it stops at the timestamp logical types of
    8.0 and later, and fills required fields with values over the whole range of their type.)
    """
    record = {}
    for field in schema["fields"]:
        kind, name = field["type"], field["name"]
        if isinstance(kind, list):
            record[name] = None if "null" in kind else blank_value(kind[0], name, rng)
        else:
            record[name] = blank_value(kind, name, rng)
    return record


def blank_value(kind, name: str, rng: random.Random):
    if isinstance(kind, dict):
        if kind.get("logicalType", "").startswith("timestamp"):
            return datetime(2025, 9, 1, tzinfo=timezone.utc)
        if kind.get("type") == "record":
            return blank(kind, rng)
        if kind.get("type") == "array":
            return []
        kind = kind.get("type")
    if kind in ("int", "long"):
        return 0 if name == "flags" else rng.randint(1, 10**9) if name.endswith("Id") else rng.randint(1, 40)
    if kind in ("float", "double"):
        return 0.0
    if kind == "string":
        return ""
    if kind == "boolean":
        return False
    if kind == "bytes":
        return b""
    raise ValueError(f"no blank value for {name}: {kind!r}")


class RubinNames:
    def __init__(self, major: int):
        old = major < 5
        self.dec, self.dec_err = ("decl", "declErr") if old else ("dec", "decErr")
        self.mjd, self.band = ("midPointTai", "filterName") if old else ("midpointMjdTai", "band")
        self.flux, self.flux_err = ("psFlux", "psFluxErr") if old else ("psfFlux", "psfFluxErr")
        self.obj_mean = "{b}PSFluxMean" if old else "{b}_psfFluxMean"
        self.obj_mean_err = "{b}PSFluxMeanErr" if old else "{b}_psfFluxMeanErr"
        self.obj_ndata = "{b}PSFluxNdata" if old else "{b}_psfFluxNdata"


def set_if(record: dict, key: str, value) -> None:
    if key in record:
        record[key] = value


def rubin_source(schema, names, rng, *, source_id, object_id, ra, dec, mjd, band, flux, ss_object=None):
    src = blank(schema, rng)
    err = max(abs(flux) * rng.uniform(0.015, 0.05), 80.0)
    src.update({"diaSourceId": source_id, "diaObjectId": object_id, names.mjd: mjd, "ra": ra, names.dec: dec,
                names.band: band, names.flux: flux, names.flux_err: err})
    set_if(src, "ssObjectId", ss_object)
    set_if(src, "raErr", 0.05 / 3600)
    set_if(src, names.dec_err, 0.05 / 3600)
    set_if(src, "snr", abs(flux) / err)
    set_if(src, "apFlux", flux * 1.02)
    set_if(src, "apFluxErr", err * 1.1)
    set_if(src, "reliability", round(rng.uniform(0.6, 0.99), 3))
    set_if(src, "isDipole", False)
    negative = flux < 0
    set_if(src, "isNegative", negative)
    set_if(src, "is_negative", negative)
    set_if(src, "extendedness", round(rng.uniform(0, 0.3), 3))
    set_if(src, "x", rng.uniform(100, 3900))
    set_if(src, "y", rng.uniform(100, 3900))
    set_if(src, "timeProcessedMjdTai", mjd + 0.0005)
    if ss_object:
        set_if(src, "trailLength", round(rng.uniform(1.0, 4.0), 2))  # arcsec: a moving object trails
    return src


def rubin_object(schema, names, rng, object_id, ra, dec, sources):
    obj = blank(schema, rng)
    obj.update({"diaObjectId": object_id, "ra": ra, names.dec: dec})
    set_if(obj, "raErr", 0.03 / 3600)
    set_if(obj, names.dec_err, 0.03 / 3600)
    mjds = [s[names.mjd] for s in sources]
    for key in ("radecTai", "radecMjdTai", "validityStartMjdTai"):
        set_if(obj, key, max(mjds))
    set_if(obj, "nDiaSources", len(sources))
    set_if(obj, "firstDiaSourceMjdTai", min(mjds))
    set_if(obj, "lastDiaSourceMjdTai", max(mjds))
    for b in BANDS:
        fluxes = [s[names.flux] for s in sources if s[names.band] == b]
        ndata = names.obj_ndata.format(b=b)
        if ndata in obj:
            obj[ndata] = len(fluxes)
        if fluxes:
            set_if(obj, names.obj_mean.format(b=b), sum(fluxes) / len(fluxes))
            set_if(obj, names.obj_mean_err.format(b=b), 120.0 / math.sqrt(len(fluxes)))
    return obj


def rubin_alerts(version: str, definition: dict, index: int, np_rng) -> list[dict]:
    """Five alerts: one object seen three times (rising, g r r), a fading (negative) source, an asteroid."""
    rng = random.Random(1000 + index)
    major = int(version.split(".")[0])
    names = RubinNames(major)
    src_schema, obj_schema = record_schema(definition, "diaSource"), record_schema(definition, "diaObject")
    base_id = 100_000_000_000 * (index + 1)  # unique across versions: the IVORN is built from these ids
    t0 = 60930.05 + 3.1 * index
    alerts = []

    def alert(src, prv, obj, cutouts=None):
        record = blank(definition, rng)
        for key in ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits", "ssObject", "ssSource",
                    "MPCORB", "mpc_orbits", "observation_reason", "target_name",
                    "cutoutDifference", "cutoutScience", "cutoutTemplate"):
            if key in record:
                record[key] = None
        record.update({"diaSource": src, "prvDiaSources": prv or None, "diaObject": obj})
        if "alertId" in record:
            record["alertId"] = src["diaSourceId"]
        else:
            record["diaSourceId"] = src["diaSourceId"]
        for key, data in (cutouts or {}).items():
            if key in record:
                record[key] = data
        return record

    # object A: a rising transient, three visits
    ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1.0, 0.45)))
    a_id = base_id + 1
    history = []
    for n, (dt, band, mag) in enumerate(((0.0, "g", 21.3), (1.93, "r", 20.6), (4.11, "r", 19.9))):
        src = rubin_source(src_schema, names, rng, source_id=base_id + 10 + n, object_id=a_id,
                           ra=ra + rng.gauss(0, 0.05 / 3600), dec=dec + rng.gauss(0, 0.05 / 3600),
                           mjd=t0 + dt, band=band, flux=mag_to_njy(mag + rng.gauss(0, 0.03)))
        obj = rubin_object(obj_schema, names, rng, a_id, ra, dec, history + [src])
        stamps = None
        if version in ("7.4", "11.1"):  # a few alerts with cutouts (FITS, as Rubin ships them): small on purpose
            peak = src[names.flux] / 50
            stamps = {"cutoutDifference": fits_stamp(np_rng, 21, peak, False),
                      "cutoutScience": fits_stamp(np_rng, 21, peak * 1.5, False),
                      "cutoutTemplate": fits_stamp(np_rng, 21, peak * 0.5, False)}
        alerts.append(alert(src, list(history), obj, stamps))
        history.append(src)
    # object B: a variable star fainter than its template (negative difference flux)
    ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1.0, 0.45)))
    src = rubin_source(src_schema, names, rng, source_id=base_id + 20, object_id=base_id + 2, ra=ra, dec=dec,
                       mjd=t0 + 2.5, band="i", flux=-mag_to_njy(20.8))
    alerts.append(alert(src, [], rubin_object(obj_schema, names, rng, base_id + 2, ra, dec, [src])))
    # an asteroid: no diaObject, an ssObjectId
    ra, dec = rng.uniform(0, 360), rng.uniform(-25, 10)
    src = rubin_source(src_schema, names, rng, source_id=base_id + 30, object_id=None, ra=ra, dec=dec,
                       mjd=t0 + 3.0, band="r", flux=mag_to_njy(21.0), ss_object=base_id + 3)
    alerts.append(alert(src, [], None))
    return alerts


def unix_to_mjd(value):
    # upstream fakeAlert.avro (3.0 ... 7.4) stores the Unix time 1480360995 s where an MJD belongs
    return value / 86400.0 + 40587.0 if value and value > 1e6 else value


def fix_fake_alert(record: dict, index: int, version: str) -> dict:
    """lsst-alert-packet's fake alert with a per-version id (upstream uses 1231321321 everywhere) and MJDs."""
    record = copy.deepcopy(record)
    new_id = 100_000_000_000 * (index + 1)
    if "alertId" in record:
        record["alertId"] = new_id
    else:
        record["diaSourceId"] = new_id
    record["diaSource"]["diaSourceId"] = new_id
    for source in [record["diaSource"], *(record.get("prvDiaSources") or [])]:
        for key in ("midPointTai", "midpointMjdTai"):
            if key in source:
                source[key] = unix_to_mjd(source[key])
    obj = record.get("diaObject") or {}
    for key in ("radecTai", "radecMjdTai"):
        if key in obj:
            obj[key] = unix_to_mjd(obj[key])
    for row in record.get("prvDiaNondetectionLimits") or []:
        for key in ("midPointTai", "midpointMjdTai"):
            if key in row:
                row[key] = unix_to_mjd(row[key])
    return record


# ----------------------------------------------------------------------------------------------------------- ZTF


def ztf_object_id(rng: random.Random, year: int) -> str:
    return f"ZTF{year % 100:02d}" + "".join(rng.choice(string.ascii_lowercase) for _ in range(7))


def ztf_alerts(template: dict, np_rng) -> list[dict]:
    """~20 alerts of 7 objects, 2-4 alerts each, built on a real 3.3 alert's candidate (all fields realistic)."""
    rng = random.Random(7)
    alerts = []
    prv_template = {key: None for key in template["prv_candidates"][0]}
    for n in range(7):
        jd0 = rng.uniform(2458500.5, 2460600.5)  # 2019-01 ... 2024-10
        year = 2019 + int((jd0 - 2458484.5) / 365.25)
        object_id = ztf_object_id(rng, year)
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-0.5, 0.99)))  # ZTF: dec > -30
        field, rcid = rng.randint(245, 880), rng.randint(0, 63)
        peak, rise = rng.uniform(15.5, 19.5), rng.uniform(0.08, 0.4)
        negative = n == 5  # one variable star fading below its template
        history = []  # prv_candidates so far: detections and upper limits
        asteroid = n == 6  # a known asteroid: one alert, ssnamenr set, 0.6" from the candidate
        for k in range(1 if asteroid else 2 + n % 3):
            jd = jd0 + 1.9 * k + rng.uniform(0, 0.2)
            fid = 1 + (k + n) % 2
            mag = min(peak + rise * (3 - k) ** 1.4 + rng.gauss(0, 0.05), 20.9)
            sigma = 0.02 + 0.12 * max(0.0, mag - 16.0) / 5.0
            limit = rng.uniform(20.2, 21.0)
            nid = int(jd - 2458119.5)  # night id: days since 2018-01-01
            pid = int(f"{nid}{int((jd % 1) * 1e6):06d}{rcid:03d}")  # like ZTF: night, time of day, channel
            candid = pid * 1_000_000 + rng.randint(0, 999_999)
            c = dict(template["candidate"])
            c.update({
                "jd": jd, "fid": fid, "pid": pid, "candid": candid, "diffmaglim": limit,
                "ra": ra + rng.gauss(0, 0.08 / 3600), "dec": dec + rng.gauss(0, 0.08 / 3600),
                "magpsf": mag, "sigmapsf": sigma, "magap": mag + rng.gauss(0, 0.05), "sigmagap": sigma * 1.2,
                "isdiffpos": "f" if negative else "t", "field": field, "rcid": rcid, "nid": nid,
                "rb": round(rng.uniform(0.55, 0.98), 4), "drb": round(rng.uniform(0.7, 0.999), 4),
                "ndethist": len([h for h in history if h["candid"]]) + 1, "ncovhist": len(history) + 3,
                "jdstarthist": history[0]["jd"] if history else jd, "jdendhist": jd,
                "ssdistnr": -999.0, "ssmagnr": -999.0, "ssnamenr": None, "programid": 1,
                "pdiffimfilename": f"ztf_{field:06d}_z{'gr'[fid - 1]}_c{rcid // 4 + 1:02d}_o_q{rcid % 4 + 1}_scimrefdiffimg.fits",
                "ranr": ra, "decnr": dec, "magnr": peak - 1.0, "distnr": rng.uniform(0.1, 1.2),
            })
            if asteroid:
                c.update({"ssnamenr": "21285", "ssdistnr": 0.6, "ssmagnr": mag + 0.3})
            peak_counts = 10 ** ((25 - mag) / 2.5)
            stamp = {kind: {"fileName": f"candid{candid}_{suffix}.fits.gz",
                            "stampData": fits_stamp(np_rng, 31, peak_counts * scale, True)}
                     for kind, suffix, scale in (("cutoutScience", "pid_sci", 1.3), ("cutoutTemplate", "ref", 0.3),
                                                 ("cutoutDifference", "pid_scimref", 1.0))}
            alerts.append({"schemavsn": "3.3", "publisher": "ZTF (www.ztf.caltech.edu)", "objectId": object_id,
                           "candid": candid, "candidate": c, "prv_candidates": [dict(h) for h in history] or None,
                           **stamp})
            # what the next alert of this object will show as history: this detection, and an upper limit
            # from a visit in between where nothing was seen
            history.append({**prv_template, **{key: c[key] for key in prv_template if key in c}})
            limit_row = dict(prv_template)
            limit_row.update({"jd": jd + 0.9, "fid": 3 - fid, "pid": pid + 900000, "diffmaglim": rng.uniform(19.0, 20.6),
                              "programid": 1, "field": field, "rcid": rcid, "nid": nid + 1,
                              "magzpsci": 26.2, "magzpsciunc": 1.2e-05, "magzpscirms": 0.04,
                              "clrcoeff": 0.1, "clrcounc": 1.6e-05, "rbversion": "t17_f5_c3"})
            history.append(limit_row)
    alerts.sort(key=lambda a: a["candidate"]["jd"])
    return alerts


# ------------------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "gateway" / "data" / "samples")
    out = parser.parse_args().out
    library = SchemaLibrary()
    np_rng = np.random.default_rng(42)
    np.random.seed(42)
    random.seed(42)

    if (out / "rubin").exists():
        shutil.rmtree(out / "rubin")
    for index, (version, path) in enumerate(packaged_rubin_versions().items()):
        schema = library.by_version("rubin", version)
        folder = out / "rubin" / version
        folder.mkdir(parents=True)
        with open(path.parent / "sample_data" / "fakeAlert.avro", "rb") as handle:
            fake = [fix_fake_alert(record, index, version) for record in fastavro.reader(handle)]
        write_container(folder / "fakeAlert.avro", fake, schema)
        write_container(folder / "simulated.avro", rubin_alerts(version, schema.definition, index, np_rng), schema,
                        codec="deflate")

    ztf = out / "ztf"
    ztf.mkdir(parents=True, exist_ok=True)
    for path in sorted(ZTF_REAL.glob("*.avro")):
        shutil.copyfile(path, ztf / path.name)
    with open(ZTF_REAL / "472263571115115000.avro", "rb") as handle:
        template = next(fastavro.reader(handle))
    write_container(ztf / "simulated.avro", ztf_alerts(template, np_rng), library.by_version("ztf", "3.3"))

    manifest = {"simulated": ["rubin/", "ztf/simulated.avro"],
                "note": "Paths (relative to this folder; a trailing / means everything below) of simulated alerts."}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
