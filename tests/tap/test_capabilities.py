"""Every optional ADQL 2.1 feature /tap/capabilities declares (TAPRegExt languageFeatures) runs, on both backends,
with the right answer; a feature declared without a case here fails the first test."""

import math
import xml.etree.ElementTree as ET

import pytest
from tap_helpers import N_OBJECTS, PER_OBJECT, assert_error, object_position, rows, votable

from gateway.sky import distance as sky_distance

TR = "ivo://ivoa.net/std/TAPRegExt#"
GEO, STRING, SETS = TR + "features-adqlgeo", TR + "features-adql-string", TR + "features-adql-sets"
RA5, DEC5 = object_position(5)
RA9, DEC9 = object_position(9)
RA7, DEC7 = object_position(7)
_, SOURCES, _ = rows()
OCTANT = "POLYGON('ICRS', 0.0, 0.0, 90.0, 0.0, 0.0, 90.0)"  # an eighth of the sky: 4 pi / 8 sr
OCTANT_DEG2 = 4 * math.pi / 8 * (180 / math.pi) ** 2


def one(table, name):
    assert len(table) == 1, len(table)
    return table[name][0]


def approx(value, **kw):
    return pytest.approx(value, rel=kw.get("rel", 1e-9), abs=kw.get("abs", 1e-9))


def objects(table):
    return sorted(table["objectid"])


def near(ra, dec, radius):
    return sorted(f"diaObject:{i}" for i in range(N_OBJECTS) if sky_distance(*object_position(i), ra, dec) <= radius)


OBJECT5 = "FROM gateway.diaobject WHERE objectid = 'diaObject:5'"
SETS_QUERY = ("SELECT objectid FROM gateway.diaobject WHERE objectid IN ('diaObject:1', 'diaObject:2') {op} "
              "SELECT objectid FROM gateway.diaobject WHERE objectid IN ('diaObject:2', 'diaObject:3')")

#: (feature type, form) -> (ADQL, check of the result table)
CASES = {
    (GEO, "POINT"): (f"SELECT POINT('ICRS', ra, dec) AS p {OBJECT5}",
                     lambda t: list(one(t, "p")) == approx([RA5, DEC5])),
    (GEO, "CIRCLE"): (f"SELECT CIRCLE('ICRS', ra, dec, 0.5) AS c {OBJECT5}",
                      lambda t: list(one(t, "c")) == approx([RA5, DEC5, 0.5])),
    (GEO, "BOX"): (f"SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                   f"BOX('ICRS', {RA9}, {DEC9}, 0.2, 0.2))", lambda t: "diaObject:9" in objects(t)),
    (GEO, "POLYGON"): (f"SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                       f"POLYGON('ICRS', {RA9 - 0.1}, {DEC9 - 0.1}, {RA9 + 0.1}, {DEC9 - 0.1}, {RA9}, {DEC9 + 0.1}))",
                       lambda t: objects(t) == ["diaObject:9"]),
    (GEO, "CONTAINS"): (f"SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                        f"CIRCLE('ICRS', {RA7}, {DEC7}, 20.0))", lambda t: objects(t) == near(RA7, DEC7, 20.0)),
    (GEO, "INTERSECTS"): (f"SELECT objectid FROM gateway.diaobject WHERE 1 = INTERSECTS(CIRCLE('ICRS', ra, dec, 5.0), "
                          f"CIRCLE('ICRS', {RA7}, {DEC7}, 10.0))", lambda t: objects(t) == near(RA7, DEC7, 15.0)),
    (GEO, "DISTANCE"): (f"SELECT DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', {RA9}, {DEC9})) AS d {OBJECT5}",
                        lambda t: one(t, "d") == approx(sky_distance(RA5, DEC5, RA9, DEC9), rel=1e-7)),
    (GEO, "COORD1"): (f"SELECT COORD1(POINT('ICRS', ra, dec)) AS c1 {OBJECT5}", lambda t: one(t, "c1") == approx(RA5)),
    (GEO, "COORD2"): (f"SELECT COORD2(POINT('ICRS', ra, dec)) AS c2 {OBJECT5}",
                      lambda t: one(t, "c2") == approx(DEC5)),
    (GEO, "COORDSYS"): (f"SELECT COORDSYS(POINT('ICRS', ra, dec)) AS s {OBJECT5}", lambda t: one(t, "s") == "ICRS"),
    (GEO, "AREA"): (f"SELECT AREA({OCTANT}) AS a, AREA(CIRCLE('ICRS', ra, dec, 1.0)) AS c, "
                    f"AREA(CIRCLE('ICRS', ra, dec, ndetections / 4.0)) AS v {OBJECT5}",
                    lambda t: (one(t, "a") == approx(OCTANT_DEG2, rel=1e-12)
                               and one(t, "c") == approx(2 * math.pi * (1 - math.cos(math.radians(1))) * (180 / math.pi)
                                                         ** 2) and t["v"][0] == approx(t["c"][0]))),
    (GEO, "CENTROID"): (f"SELECT CENTROID({OCTANT}) AS o, COORD1(CENTROID(CIRCLE('ICRS', ra, dec, 2.0))) AS c1 "
                        f"{OBJECT5}", lambda t: (list(one(t, "o")) == approx([45.0, math.degrees(math.asin(
                            1 / math.sqrt(3)))]) and one(t, "c1") == approx(RA5))),
    (STRING, "LOWER"): ("SELECT LOWER(objectid) AS l FROM gateway.diasource WHERE diasourceid = 1001",
                        lambda t: one(t, "l") == "diaobject:0"),
    (STRING, "UPPER"): ("SELECT UPPER(band) AS u FROM gateway.diasource WHERE diasourceid = 1001",
                        lambda t: one(t, "u") == "G"),
    (STRING, "ILIKE"): ("SELECT COUNT(*) AS n FROM gateway.diasource WHERE objectid ILIKE 'DIAOBJECT:1_'",
                        lambda t: one(t, "n") == 10 * PER_OBJECT),
    (SETS, "UNION"): (SETS_QUERY.format(op="UNION"),
                      lambda t: objects(t) == ["diaObject:1", "diaObject:2", "diaObject:3"]),
    (SETS, "EXCEPT"): (SETS_QUERY.format(op="EXCEPT"), lambda t: objects(t) == ["diaObject:1"]),
    (SETS, "INTERSECT"): (SETS_QUERY.format(op="INTERSECT"), lambda t: objects(t) == ["diaObject:2"]),
    (TR + "features-adql-common-table", "WITH"): (
        "WITH faint AS (SELECT objectid, mag FROM gateway.diasource WHERE mag > 23.65), "
        "described AS (SELECT table_name FROM TAP_SCHEMA.tables) "
        "SELECT COUNT(*) AS n, MIN(f.mag) AS m, (SELECT COUNT(*) FROM described) AS t FROM faint AS f",
        lambda t: (one(t, "n") == 3 * N_OBJECTS and t["m"][0] == approx(23.7)
                   and t["t"][0] == 9)),
    (TR + "features-adql-type", "CAST"): (
        "SELECT CAST(diasourceid AS DOUBLE PRECISION) AS d, CAST(diasourceid AS VARCHAR) AS s, "
        "CAST(2.0 AS INTEGER) AS i FROM gateway.diasource WHERE diasourceid = 1001",
        lambda t: one(t, "d") == 1001.0 and t["s"][0] == "1001" and t["i"][0] == 2),
    (TR + "features-adql-unit", "IN_UNIT"): (
        "SELECT IN_UNIT(ra_err, 'arcsec') AS e, IN_UNIT(mjd, 's') AS t FROM gateway.diasource "
        "WHERE diasourceid = 1001",
        lambda t: (one(t, "e") == approx(SOURCES[0][5] * 3600) and t["e"].unit == "arcsec"
                   and t["t"][0] == approx(SOURCES[0][7] * 86400) and t["t"].unit == "s")),
    (TR + "features-adql-offset", "OFFSET"): (
        "SELECT TOP 2 diasourceid FROM gateway.diasource ORDER BY diasourceid OFFSET 3",
        lambda t: list(t["diasourceid"]) == [1004, 1005]),
}


def declared(tap) -> set[tuple[str, str]]:
    root = ET.fromstring(tap.get("/capabilities").content)
    found = set()
    for features in root.iter("languageFeatures"):
        for form in features.iter("form"):
            found.add((features.get("type"), form.text))
    return found


def test_every_declared_feature_has_a_case(tap):
    assert declared(tap) == set(CASES)


@pytest.mark.parametrize("feature", sorted(CASES), ids=[form for _, form in sorted(CASES)])
def test_declared_feature_runs(tap, feature):
    query, check = CASES[feature]
    r = tap.sync(query)
    assert r.status_code == 200, r.text[:500]
    table = votable(r.content)
    assert check(table), table


def test_in_unit_refuses_what_it_cannot_convert(tap):
    assert_error(tap.sync("SELECT IN_UNIT(ra, 'm') FROM gateway.diasource"), 400, "cannot convert deg to m")
    assert_error(tap.sync("SELECT IN_UNIT(ra + 1, 'arcsec') FROM gateway.diasource"), 400, "unit is known")
    assert_error(tap.sync("SELECT IN_UNIT(ra, 'furlongs') FROM gateway.diasource"), 400, "not a unit")


def test_coalesce_runs_and_is_described(tap):
    """COALESCE is not a languageFeature (taplint does not know ADQL 2.1's features-adql-conditional key): the
    language description names it, and it runs."""
    assert b"COALESCE" in tap.get("/capabilities").content
    r = tap.sync("SELECT COALESCE(trail_length, -1.0) AS c FROM gateway.diasource WHERE diasourceid = 1001")
    assert one(votable(r.content), "c") == -1.0
