"""ADQL translation: what is refused and why, geometry on both backends against brute force, index use."""

import random

import pytest
from tap_helpers import N_OBJECTS, database_url, fill, object_position, rows

from gateway.sky import distance as sky_distance
from gateway.sky import in_polygon, ra_ranges
from gateway.store.db import Database
from gateway.tap.adql import DIALECTS, AdqlError, dialect_for, translate
from gateway.tap.catalog import Catalog, ColumnMeta

CATALOG = Catalog.default()
SQLITE, POSTGRESQL = DIALECTS["sqlite"], DIALECTS["postgresql"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reader(request, tmp_path_factory):
    """A read-only connection (as the TAP service gets) to a filled alert DB, and the backend's dialect."""
    with database_url(request.param, tmp_path_factory.mktemp("adql")) as url:
        fill(url)
        database = Database(url)
        dialect = dialect_for(database.kind)
        conn = database.reader(30)
        dialect.prepare(conn)
        yield conn, dialect
        conn.close()
        database.stop()


def run(reader, adql, catalog=CATALOG, maxrec=None):
    conn, dialect = reader
    t = translate(adql, dialect, catalog, maxrec)
    return [tuple(r) for r in conn.execute(t.sql).fetchall()]


# -- refusals -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("adql, words", [
    ("SELECT ra FROM gateway.diasource WHERE ra >", ["syntax error", "line 1"]),
    ("SELECT ra FROM gateway.diasource; DROP TABLE gateway.diasource", ["exactly one SELECT", "2 statements"]),
    ("DELETE FROM gateway.diasource", ["only SELECT", "DELETE"]),
    ("WITH RECURSIVE x AS (SELECT ra FROM gateway.diasource) SELECT * FROM x", ["not RECURSIVE"]),
    ("SELECT * FROM (WITH x AS (SELECT ra FROM gateway.diasource) SELECT ra FROM x) AS y", ["at the start"]),
    ("SELECT ra FROM gateway.diasource WHERE ra IN (SELECT 1 FROM sqlite_master)", ["unknown table", "sqlite_master"]),
    ("SELECT ra FROM pg_catalog.pg_tables", ["unknown table"]),
    ("SELECT ra FROM main.gateway.diasource", ["too many parts"]),
    ("SELECT nope FROM gateway.diasource", ["'nope'"]),
    ("SELECT pg_sleep(10) FROM gateway.diasource", ["unknown function", "PG_SLEEP"]),
    ("SELECT randomblob(1000000000) FROM gateway.diasource", ["unknown function"]),
    ("SELECT ROW_NUMBER() OVER (ORDER BY ra) FROM gateway.diasource", ["not allowed"]),
    ("SELECT CAST(ra AS BLOB) FROM gateway.diasource", ["CAST"]),
    ("SELECT ra FROM gateway.diasource WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 3)) = 2",
     ["0 or 1"]),
    ("SELECT ra FROM gateway.diasource WHERE 1 = CONTAINS(CIRCLE('ICRS', 1, 2, 3), POINT('ICRS', ra, dec))",
     ["CONTAINS of CIRCLE and POINT"]),
    ("SELECT ra FROM gateway.diasource WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', ra, dec, 1, 2, 3, 4))",
     ["numeric constants"]),
    ("SELECT TOP -1 ra FROM gateway.diasource", ["syntax error"]),
    ("SELECT 1", ["FROM"]),
    ("SELECT * FROM (SELECT ra FROM gateway.diasource)", ["needs a name"]),
    ("SELECT * FROM gateway.diasource AS a INNER JOIN gateway.alert AS b", ["ON or USING"]),
    ("SELECT CONCAT(objectid, 'x') FROM gateway.diasource", ["||"]),
    ("SELECT ra FROM gateway.diasource WHERE ra > " + "(" * 20000 + "1" + ")" * 20000, ["nested too deeply"]),
    ("SELECT ra FROM gateway.diasource WHERE ra IN (" + ", ".join(["1"] * 40000) + ")", ["limit is 100,000"]),
])
def test_refused_with_a_message(adql, words):
    for dialect in DIALECTS.values():
        with pytest.raises(AdqlError) as error:
            translate(adql, dialect, CATALOG)
        for word in words:
            assert word.lower() in str(error.value).lower(), str(error.value)


def test_comments_never_reach_the_database():
    t = translate("-- a remark\nSELECT ra FROM gateway.alert -- x */ ; DROP TABLE y; /*", SQLITE, CATALOG)
    assert "DROP" not in t.sql and "/*" not in t.sql and "--" not in t.sql
    assert translate("SELECT 'a' 'b' AS s FROM gateway.alert", POSTGRESQL, CATALOG).sql.startswith("SELECT 'ab'")


def test_translated_sql_names_only_published_tables():
    t = translate("SELECT TOP 3 * FROM diasource AS d JOIN gateway.diaobject AS o ON d.objectid = o.objectid "
                  "WHERE o.ndetections > 1 ORDER BY d.mjd DESC", SQLITE, CATALOG, maxrec=100)
    assert '"gateway"."diasource"' in t.sql and '"gateway"."diaobject"' in t.sql and t.limit == 3
    assert [c.name for c in t.columns][:2] == ["diasourceid", "objectid"]
    assert translate("SELECT ra FROM gateway.alert", SQLITE, CATALOG, maxrec=10).limit == 11


# -- results on both backends ------------------------------------------------------------------------------------

def test_functions(reader):
    (row,) = run(reader, "SELECT ABS(-2.5), CEILING(1.2), FLOOR(1.8), ROUND(2.567, 2), TRUNCATE(2.567, 1), "
                         "MOD(7, 3), POWER(2, 10), SQRT(16), LOG10(1000), LOG(EXP(2)), DEGREES(PI()), "
                         "RADIANS(180), SIN(0), COS(0), ATAN2(1, 1), COT(PI() / 4), UPPER('ab'), LOWER('AB'), "
                         "'a' || 'b' FROM gateway.diaobject WHERE objectid = 'diaObject:0'")
    expected = (2.5, 2, 1, 2.57, 2.5, 1, 1024, 4, 3, 2, 180, 3.141592653589793, 0, 1, 0.7853981633974483, 1,
                "AB", "ab", "ab")
    for got, want in zip(row, expected):
        if isinstance(want, str):
            assert got == want
        else:
            assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12)
    (rand,) = run(reader, "SELECT RAND() FROM gateway.diaobject WHERE objectid = 'diaObject:0'")[0]
    assert 0 <= rand < 1


def test_aggregates_joins_subqueries(reader):
    _, sources, _ = rows()
    assert run(reader, "SELECT COUNT(*), COUNT(DISTINCT objectid) FROM gateway.diasource") == [
        (len(sources), len({s[1] for s in sources}))]
    got = run(reader, "SELECT o.objectid, COUNT(*) AS n FROM gateway.diaobject AS o JOIN gateway.diasource AS s "
                      "ON s.objectid = o.objectid WHERE o.objectid IN ('diaObject:3', 'diaObject:4') "
                      "GROUP BY o.objectid HAVING COUNT(*) > 1 ORDER BY o.objectid")
    assert got == [("diaObject:3", 4), ("diaObject:4", 4)]
    got = run(reader, "SELECT TOP 2 alertid FROM gateway.alert WHERE diasourceid IN "
                      "(SELECT diasourceid FROM gateway.diasource WHERE band = 'i') ORDER BY alertid")
    assert got == [(1003,), (1007,)]
    got = run(reader, "SELECT COUNT(*) FROM gateway.diaobject AS o WHERE EXISTS (SELECT 1 FROM gateway.alert AS a "
                      "WHERE a.objectid = o.objectid AND a.mjd > 60200)")
    assert got[0][0] == len([i for i in range(300) if 60000 + i + 0.3 > 60200])
    assert run(reader, "SELECT ra FROM gateway.alert", maxrec=5).__len__() == 6  # MAXREC + 1: overflow shows


def test_tap_schema_queries(reader):
    got = run(reader, 'SELECT column_name, "size", principal FROM TAP_SCHEMA.columns WHERE table_name = '
                      "'tap_schema.columns' AND column_name = '\"size\"'")
    assert got == [('"size"', None, 0)]
    tables = {r[0] for r in run(reader, "SELECT table_name FROM tap_schema.tables")}
    assert "gateway.diasource" in tables
    assert run(reader, "SELECT COUNT(*) FROM TAP_SCHEMA.key_columns AS k JOIN TAP_SCHEMA.keys AS j "
                       "ON k.key_id = j.key_id")[0][0] >= 4


def test_random_cones_match_brute_force(reader):
    _, sources, _ = rows()
    rng = random.Random(5)
    for _ in range(25):
        i = rng.randrange(300)
        ra, dec = object_position(i)
        ra += rng.uniform(-0.5, 0.5)
        radius = rng.choice([1e-5, 3e-5, 0.3, 2.0, 15.0])
        got = sorted(r[0] for r in run(reader, f"SELECT diasourceid FROM gateway.diasource WHERE 1 = CONTAINS("
                                               f"POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, {radius}))"))
        want = sorted(s[0] for s in sources if sky_distance(s[3], s[4], ra % 360, dec) <= radius)
        assert got == want, (ra, dec, radius)


def test_polygon_and_box_match_brute_force(reader):
    objects, _, _ = rows()
    for ra, dec, size in ((10.0, 20.0, 8.0), (359.0, -5.0, 6.0), (180.0, 60.0, 10.0)):
        vertices = [(ra - size, dec - size / 2), (ra + size, dec - size / 2), (ra + size / 3, dec + size / 2),
                    (ra - size / 2, dec + size / 3)]
        flat = ", ".join(f"{v}" for vertex in vertices for v in vertex)
        got = {r[0] for r in run(reader, "SELECT objectid FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', "
                                         f"ra, dec), POLYGON('ICRS', {flat}))")}
        flat_values = [v for vertex in vertices for v in vertex]
        want = {o[0] for o in objects if in_polygon(o[2], o[3], *flat_values)}
        # the two backends' polygon tests agree with the great-circle reference, except within 1e-9 of an edge
        assert got == want, (ra, dec, got ^ want)
    box = run(reader, "SELECT COUNT(*) FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                      "BOX('ICRS', 0, 10, 0.01, 0.01))")
    assert box == [(2,)]  # the two objects either side of RA 0


def test_crossmatch_with_upload(reader):
    conn, dialect = reader
    columns = (ColumnMeta("id", "long"), ColumnMeta("ra", "double"), ColumnMeta("dec", "double"))
    # objects either side of RA 0, near the pole, ordinary ones; a target at RA 0.0 whose circle crosses RA 0;
    # one matching nothing
    targets = [(i, *object_position(i)) for i in (0, 1, 2, 50, 51)] + [(98, 0.0, 10.0), (99, 200.0, -85.0)]
    dialect.create_uploads(conn, {"targets": (columns, targets)})
    catalog = CATALOG.with_uploads({"targets": columns})
    got = run(reader, "SELECT t.id, d.objectid FROM TAP_UPLOAD.targets AS t JOIN gateway.diasource AS d ON "
                      "1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', t.ra, t.dec, 2.0 / 3600))", catalog)
    _, sources, _ = rows()
    want = [(t[0], s[1]) for t in targets for s in sources if sky_distance(s[3], s[4], t[1], t[2]) <= 2.0 / 3600]
    assert ("98", "diaObject:0") in {(str(a), b) for a, b in want}  # the RA-0 case is really exercised
    assert sorted(got) == sorted(want)


def test_cone_uses_the_sky_index(reader):
    conn, dialect = reader
    t = translate("SELECT diasourceid FROM gateway.diasource WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                  "CIRCLE('ICRS', 10, 20, 0.01))", dialect, CATALOG)
    if dialect is SQLITE:
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + t.sql))
        assert "diasource USING INDEX diasource_zones (<expr>=? AND ra>? AND ra<?)" in plan and "SCAN" not in plan
    else:
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: show the index is usable at all
            plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + t.sql))
        assert "diasource_sky" in plan and "q3c_ang2ipix" in plan


@pytest.mark.parametrize("radius", [2.0 / 3600, 0.2, 3.0])  # within one zone's height (3'), and beyond it
def test_crossmatch_seeks_the_zone_index_and_matches_brute_force(reader, radius):
    conn, dialect = reader
    columns = (ColumnMeta("id", "long"), ColumnMeta("ra", "double"), ColumnMeta("dec", "double"))
    targets = [(i, *object_position(i)) for i in (0, 1, 2, 50, 51, 150)] + [(98, 0.0, 10.0), (99, 200.0, -85.0)]
    name = f"targets_{int(radius * 3600)}"  # one upload per case on the module's connection
    if dialect is SQLITE and any(row[1] == "tap_upload" for row in conn.execute("PRAGMA database_list")):
        conn.execute("DETACH DATABASE tap_upload")
    dialect.create_uploads(conn, {name: (columns, targets)})
    catalog = CATALOG.with_uploads({name: columns})
    query = (f"SELECT t.id, d.diasourceid FROM TAP_UPLOAD.{name} AS t JOIN gateway.diasource AS d ON "
             f"1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', t.ra, t.dec, {radius}))")
    _, sources, _ = rows()
    want = sorted((t[0], s[0]) for t in targets for s in sources if sky_distance(s[3], s[4], t[1], t[2]) <= radius)
    assert want and sorted(run(reader, query, catalog)) == want
    if dialect is SQLITE:
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + translate(query, dialect, catalog).sql))
        assert "d USING INDEX diasource_zones (<expr>" in plan and "SCAN d" not in plan, plan


def test_ra_ranges():
    assert ra_ranges(10, 0, 1) == [pytest.approx((9 - 1e-6, 11 + 1e-6))]
    low, high = ra_ranges(0.5, 0, 1)
    assert low[0] == pytest.approx(359.5 - 1e-6) and high[1] == pytest.approx(1.5 + 1e-6)
    assert ra_ranges(0, 89.5, 1) == [(0.0, 360.0)]
    half = ra_ranges(100, 60, 1)[0]
    assert (half[1] - half[0]) / 2 == pytest.approx(2.0, rel=0.01)  # 1 deg at dec 60 is ~2 deg of RA


_, _SOURCES, _ = rows()


@pytest.mark.parametrize("adql, expected_rows", [
    ("SELECT TOP 1 a.alertid FROM gateway.alert AS a LEFT OUTER JOIN gateway.diaobject AS o "
     "ON a.objectid = o.objectid", 1),
    ("SELECT TOP 1 alertid FROM gateway.alert JOIN gateway.diaobject USING (objectid)", 1),
    ("SELECT TOP 1 alertid FROM gateway.alert NATURAL JOIN gateway.voevent", 0),  # the test DB has no VOEvents
    ("SELECT TOP 1 a.alertid FROM gateway.alert AS a RIGHT JOIN gateway.diaobject AS o ON a.objectid = o.objectid", 1),
    ("SELECT TOP 1 a.alertid FROM gateway.alert AS a FULL OUTER JOIN gateway.diaobject AS o "
     "ON a.objectid = o.objectid", 1),
    ("SELECT TOP 1 a.alertid FROM gateway.alert AS a CROSS JOIN gateway.diaobject AS o", 1),
    ("SELECT a.objectid FROM gateway.alert AS a INTERSECT SELECT o.objectid FROM gateway.diaobject AS o", N_OBJECTS),
    ("SELECT a.objectid FROM gateway.alert AS a EXCEPT SELECT o.objectid FROM gateway.diaobject AS o", 0),
    ("SELECT TOP 5 objectid, COUNT(*) AS n FROM gateway.diasource GROUP BY objectid HAVING COUNT(*) > 2 "
     "ORDER BY n DESC", 5),
    ("SELECT objectid FROM gateway.diasource WHERE band BETWEEN 'a' AND 'h' AND mag IS NOT NULL "
     "AND objectid NOT LIKE 'x%' AND NOT (ra < 0)", sum(1 for s in _SOURCES if "a" <= s[8] <= "h")),
    ("SELECT CASE WHEN mag > 20 THEN 'faint' ELSE 'bright' END AS b, COALESCE(trail_length, 0) AS t "
     "FROM gateway.diasource", len(_SOURCES)),
    ("SELECT ra FROM gateway.diasource ORDER BY ra OFFSET 5", len(_SOURCES) - 5),
    ("SELECT x.n FROM (SELECT COUNT(*) AS n FROM gateway.diasource) AS x", 1),
    ("SELECT \"ra\", \"dec\" FROM gateway.diasource WHERE \"mjd\" > 60100", sum(1 for s in _SOURCES if s[7] > 60100)),
])
def test_adql_forms_run(reader, adql, expected_rows):
    assert len(run(reader, adql)) == expected_rows
