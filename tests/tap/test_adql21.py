"""ADQL beyond 2.0 and result naming: hexadecimal literals, POINT/CIRCLE values (DALI xtypes), names of computed
columns (as DaCHS gives them), metadata through WITH; over HTTP with pyvo on both backends, and in translation."""

import io

import numpy as np
import pytest
import pyvo
from astropy.io.votable import parse
from tap_helpers import object_position, votable

from gateway.tap.adql import DIALECTS, translate
from gateway.tap.adql.geometry import polygon_area, polygon_centroid
from gateway.tap.catalog import Catalog

CATALOG = Catalog.default()
RA5, DEC5 = object_position(5)


@pytest.mark.parametrize("query, value", [("SELECT 0xFF FROM gateway.diaobject", 255),
                                          ("SELECT TOP 1 0x1f + 1 AS v FROM gateway.diaobject", 32)])
def test_hexadecimal_literals(tap, query, value):
    table = votable(tap.sync(query, MAXREC="1").content)
    assert table.colnames == ["expr" if "AS v" not in query else "v"]
    assert table[table.colnames[0]][0] == value


def test_computed_columns_are_named_like_dachs(tap):
    r = tap.sync("SELECT COUNT(*), MAX(mag), MIN(mag), ra + 1, ra + 2, DISTANCE(POINT(ra, dec), POINT(0, 0)), "
                 "objectid, UPPER(objectid), 0xff FROM gateway.diasource GROUP BY objectid, ra, dec", MAXREC="2")
    assert r.status_code == 200, r.text[:300]
    assert votable(r.content).colnames == ["count", "max", "min", "expr", "expr_2", "distance", "objectid", "upper",
                                           "expr_3"]
    assert b"_col_" not in r.content


@pytest.mark.parametrize("fmt", ["votable", "votable/td"])
def test_point_and_circle_values_with_pyvo(tap, fmt):
    service = pyvo.dal.TAPService(tap.url)
    query = ("SELECT objectid, POINT('ICRS', ra, dec) AS pos, CIRCLE('ICRS', ra, dec, 1.0/3600) AS around, "
             "CENTROID(CIRCLE(ra, dec, 2)) FROM gateway.diaobject WHERE objectid IN ('diaObject:5', 'diaObject:6') "
             "ORDER BY objectid")
    result = service.run_sync(query, format=fmt) if fmt != "votable" else service.run_sync(query)
    fields = {f.name: f for f in result.fielddescs}
    assert (fields["pos"].datatype, fields["pos"].arraysize, fields["pos"].xtype) == ("double", "2", "point")
    assert (fields["around"].datatype, fields["around"].arraysize, fields["around"].xtype) == ("double", "3",
                                                                                             "circle")
    assert fields["centroid"].xtype == "point" and str(fields["pos"].unit) == "deg"
    table = result.to_table()
    assert np.allclose(table["pos"][0], [RA5, DEC5]) and np.allclose(table["around"][1][2], 1 / 3600)
    assert np.allclose(table["centroid"][1], object_position(6))
    assert fields["pos"].ref and {c.ID: c for c in result.votable.resources[0].coordinate_systems}[
        fields["pos"].ref].system == "ICRS"


def test_point_values_in_csv_and_json(tap):
    query = "SELECT POINT('ICRS', ra, dec) AS p FROM gateway.diaobject WHERE objectid = 'diaObject:5'"
    csv = tap.sync(query, FORMAT="csv").text.splitlines()
    assert csv[0] == "p" and [float(v) for v in csv[1].split()] == pytest.approx([RA5, DEC5])
    doc = tap.sync(query, FORMAT="json").json()
    assert doc["data"][0][0] == pytest.approx([RA5, DEC5]) and doc["metadata"][0]["xtype"] == "point"


def test_null_point_is_null(tap):
    r = tap.sync("SELECT POINT('ICRS', trail_length, dec) AS p FROM gateway.diasource WHERE diasourceid = 1001")
    assert votable(r.content)["p"].mask.all()


def test_metadata_through_with_and_subqueries(tap):
    for query in ("WITH x AS (SELECT mjd, ra FROM gateway.diasource) SELECT TOP 1 x.mjd, ra FROM x",
                  "SELECT TOP 1 s.mjd, s.ra FROM (SELECT mjd, ra FROM gateway.diasource) AS s"):
        r = tap.sync(query)
        assert r.status_code == 200, r.text[:300]
        resource = parse(io.BytesIO(r.content)).resources[0]
        fields = {f.name: f for f in resource.tables[0].fields}
        assert str(fields["mjd"].unit) == "d" and fields["mjd"].ref == "timesys_tai"
        assert fields["ra"].ucd == "pos.eq.ra;meta.main"


def test_geometry_values_elsewhere_are_refused(tap):
    r = tap.sync("SELECT POINT('ICRS', ra, dec) FROM gateway.diasource UNION SELECT POINT('ICRS', ra, dec) "
                 "FROM gateway.alert")
    assert r.status_code == 400 and b"outer select list" in r.content


def test_spherical_polygon_area_and_centroid():
    octant = [(0.0, 0.0), (90.0, 0.0), (0.0, 90.0)]
    assert polygon_area(octant) == pytest.approx(41252.96124941927 / 8, rel=1e-12)
    assert polygon_area(list(reversed(octant))) == pytest.approx(polygon_area(octant))
    # a small square near the equator: about its flat area
    assert polygon_area([(10, 0), (10.1, 0), (10.1, 0.1), (10, 0.1)]) == pytest.approx(0.01, rel=1e-4)
    ra, dec = polygon_centroid([(350.0, -1.0), (10.0, -1.0), (10.0, 1.0), (350.0, 1.0)])  # across RA 0
    assert (ra if ra < 180 else ra - 360, dec) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_one_with_in_front_when_tap_schema_is_read():
    for dialect in DIALECTS.values():
        sql = translate("WITH t AS (SELECT table_name FROM TAP_SCHEMA.tables) SELECT * FROM t", dialect, CATALOG).sql
        assert sql.count("WITH ") == 1 and '"tap_schema_tables"' in sql and '"t" AS (' in sql
