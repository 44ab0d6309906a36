"""Fuzzing the ADQL translator (hypothesis): whatever the query, it translates or raises AdqlError with one
readable sentence, never another exception; over HTTP a bad query is a VOTable error with that sentence."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tap_helpers import query_status

from gateway.tap.adql import DIALECTS, AdqlError, translate
from gateway.tap.catalog import Catalog

CATALOG = Catalog.default()
WORDS = ["SELECT", "TOP", "DISTINCT", "FROM", "WHERE", "AND", "OR", "NOT", "GROUP", "BY", "ORDER", "HAVING", "AS",
         "JOIN", "ON", "USING", "LEFT", "OUTER", "UNION", "EXCEPT", "INTERSECT", "WITH", "OFFSET", "IN", "BETWEEN",
         "LIKE", "ILIKE", "IS", "NULL", "CASE", "WHEN", "THEN", "ELSE", "END", "EXISTS", "CAST", "INTEGER",
         "VARCHAR", "TIMESTAMP", "COUNT", "MAX", "AVG", "POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS",
         "INTERSECTS", "DISTANCE", "AREA", "CENTROID", "COORD1", "IN_UNIT", "COALESCE", "LOWER", "TRUNCATE", "LOG",
         "gateway.diasource", "gateway.alert", "TAP_SCHEMA.tables", "TAP_UPLOAD.t", "diaobject", "d", "ra", "dec",
         "mjd", "objectid", "mag", "alertid", "*", ",", "(", ")", "=", "<", ">", "<>", "+", "-", "/", "||", ".",
         ";", "'ICRS'", "'arcsec'", "'x'", "1", "0", "0xFF", "2.5", "1e3", "-1", "--", "\"ra\"", "?", "$1"]
TEMPLATES = [
    "SELECT {a} FROM gateway.diasource", "SELECT TOP 3 ra FROM gateway.diasource WHERE {a}",
    "SELECT ra FROM gateway.diasource AS d WHERE 1 = CONTAINS(POINT('ICRS', {a}), CIRCLE('ICRS', {b}))",
    "WITH x AS (SELECT {a} FROM gateway.alert) SELECT {b} FROM x", "SELECT {a}, {b} FROM gateway.diaobject {a}",
]
SENTENCE = re.compile(r"^[^\n]{10,2000}$")


def tokens():
    return st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(" ".join)


queries = st.one_of(
    tokens().map(lambda t: "SELECT " + t),
    st.builds(lambda t, a, b: t.format(a=a, b=b), st.sampled_from(TEMPLATES), tokens(), tokens()),
    st.text(max_size=200).map(lambda t: "SELECT " + t),
    st.text(max_size=60),
)


def assert_readable(message: str) -> None:
    assert SENTENCE.match(message), repr(message)
    assert "Traceback" not in message and "Error(" not in message and "object at 0x" not in message, message


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries, st.sampled_from(sorted(DIALECTS)))
def test_translation_raises_only_adql_errors(query, kind):
    try:
        translation = translate(query, DIALECTS[kind], CATALOG, maxrec=10)
    except AdqlError as error:
        assert_readable(str(error))
    else:
        assert translation.sql and translation.columns is not None


@pytest.mark.parametrize("query", [
    "SELECT ra FROM gateway.diasource WHERE (((", "SELECT IN_UNIT(ra, 'zorg') FROM gateway.diasource",
    "SELECT AREA(1) FROM gateway.diasource", "SELECT CENTROID(POINT(1)) FROM gateway.diasource",
    "WITH x AS (SELECT 1 FROM gateway.alert) SELECT nope FROM x", "SELECT 0xZZ FROM gateway.alert",
    "SELECT ra FROM gateway.diasource OFFSET -1", "SELECT \u00e9t\u00e9 FROM gateway.alert",
])
def test_bad_queries_are_one_sentence_in_a_votable(tap, query):
    r = tap.sync(query)
    assert r.status_code == 400, r.text[:300]
    statuses = query_status(r.content)
    assert [s for s, _ in statuses] == ["ERROR"]
    assert_readable(statuses[0][1])
