"""VOSI documents of the TAP service: capabilities (with TAPRegExt), availability, tables."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from gateway.tap.catalog import SCHEMA_DESCRIPTIONS, Catalog, TableMeta
from gateway.tap.settings import TapSettings
from gateway.tap.votable import ADVERTISED

XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: the optional ADQL 2.1 language features this service runs, by TAPRegExt feature type: (form, description);
#: tests/tap/test_capabilities.py runs a query for every one (a declaration without a test fails there).
#: COALESCE works too, but its ADQL 2.1 key (features-adql-conditional) is unknown to TAPRegExt 1.0 and taplint
#: (STILTS 3.4: E-CAP-KEYX), so the language description says it instead
FEATURES = {
    "ivo://ivoa.net/std/TAPRegExt#features-adqlgeo": [
        (name, "") for name in ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE", "COORD1",
                                "COORD2", "COORDSYS", "AREA", "CENTROID")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-string": [
        ("LOWER", "lower-case a string"), ("UPPER", "upper-case a string"),
        ("ILIKE", "case-insensitive LIKE")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-sets": [
        ("UNION", ""), ("EXCEPT", ""), ("INTERSECT", "")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-common-table": [
        ("WITH", "common table expressions, once at the start of a query (not RECURSIVE)")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-type": [
        ("CAST", "to SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR, VARCHAR, TIMESTAMP")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-unit": [
        ("IN_UNIT", "a column converted to another VOUnit, e.g. IN_UNIT(ra, 'arcsec')")],
    "ivo://ivoa.net/std/TAPRegExt#features-adql-offset": [
        ("OFFSET", "skip the first rows of the result")],
}


def _language_features() -> str:
    out = ""
    for kind, forms in FEATURES.items():
        out += f'<languageFeatures type="{kind}">'
        for form, description in forms:
            out += f"<feature><form>{escape(form)}</form>"
            out += f"<description>{escape(description)}</description></feature>" if description else "</feature>"
        out += "</languageFeatures>"
    return out


def capabilities(base: str, settings: TapSettings) -> bytes:
    """The VOSI capabilities of the service at ``base`` (its /tap URL), with TAPRegExt limits."""
    def interface(path, role=None, extra=""):
        role_attr = f' role="{role}" version="1.1"' if role else ""
        return (f'<interface xsi:type="vs:ParamHTTP"{role_attr}><accessURL use="base">{escape(base + path)}'
                f"</accessURL>{extra}</interface>")

    formats = ""
    for mime, aliases in ADVERTISED:
        formats += "<outputFormat><mime>" + escape(mime) + "</mime>" + "".join(
            f"<alias>{escape(a)}</alias>" for a in aliases) + "</outputFormat>"
    tap = (
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        + interface("", "std", '<queryType>GET</queryType><queryType>POST</queryType>'
                    '<resultType>application/x-votable+xml</resultType>')
        + '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        '<description>ADQL 2.1 translated to the SQL of the alert DB (SQLite or PostgreSQL with q3c); the optional '
        'features listed here. Also: COALESCE (ADQL 2.1 features-adql-conditional), hexadecimal literals (0xFF), '
        'POINT and CIRCLE as values in the select list '
        '(DALI point, circle)</description>'
        + _language_features() + "</language>"
        + formats
        + '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
        + ('<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-http"/>'
           '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-https"/>' if settings.http_uploads else "")
        + f"<retentionPeriod><default>{int(settings.retention)}</default>"
        f"<hard>{int(settings.retention)}</hard></retentionPeriod>"
        f"<executionDuration><default>{int(settings.async_timeout)}</default>"
        f"<hard>{int(settings.max_async_timeout)}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{settings.maxrec_default}</default>'
        f'<hard unit="row">{settings.maxrec_max}</hard></outputLimit>'
        f'<uploadLimit><hard unit="byte">{settings.upload_max_bytes}</hard></uploadLimit>'
        "</capability>")
    vosi = "".join(
        f'<capability standardID="ivo://ivoa.net/std/VOSI#{name}">' + interface(f"/{name}") + "</capability>"
        for name in ("capabilities", "availability", "tables"))
    vosi += ('<capability standardID="ivo://ivoa.net/std/DALI#examples"><interface xsi:type="vr:WebBrowser">'
             f'<accessURL use="full">{escape(base)}/examples</accessURL></interface></capability>')
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
           f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
           'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">'
           + tap + vosi + "</vosi:capabilities>\n")
    return doc.encode("utf-8")


def availability(available: bool, note: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
            f"<vosi:available>{'true' if available else 'false'}</vosi:available>"
            f"<vosi:note>{escape(note)}</vosi:note></vosi:availability>\n").encode("utf-8")


def _table_xml(t: TableMeta, detail: bool = True) -> str:
    out = f'<table type="{t.table_type}"><name>{escape(t.qualified)}</name>'
    out += f"<description>{escape(t.description)}</description>"
    if not detail:
        return out + "</table>"
    for c in t.columns:
        out += f"<column><name>{escape(c.adql_name)}</name>"
        if c.description:
            out += f"<description>{escape(c.description)}</description>"
        if c.unit:
            out += f"<unit>{escape(c.unit)}</unit>"
        if c.ucd:
            out += f"<ucd>{escape(c.ucd)}</ucd>"
        attrs = ""
        if c.arraysize:
            attrs += f" arraysize={quoteattr(c.arraysize)}"
        if c.xtype:
            attrs += f" extendedType={quoteattr(c.xtype)}"
        out += f'<dataType xsi:type="vs:VOTableType"{attrs}>{c.datatype}</dataType>'
        for flag, on in (("indexed", c.indexed), ("principal", c.principal), ("std", c.std)):
            if on:
                out += f"<flag>{flag}</flag>"
        out += "</column>"
    for i, (column, target, target_column) in enumerate(t.foreign_keys):
        out += (f"<foreignKey><targetTable>{escape(t.schema + '.' + target)}</targetTable><fkColumn>"
                f"<fromColumn>{escape(column)}</fromColumn><targetColumn>{escape(target_column)}</targetColumn>"
                "</fkColumn></foreignKey>")
    return out + "</table>"


_TABLESET_OPEN = ('<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
                  f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">')


def tableset(catalog: Catalog, detail: bool = True) -> bytes:
    body = ""
    for schema in catalog.schemas():
        body += f"<schema><name>{escape(schema)}</name>"
        if schema in SCHEMA_DESCRIPTIONS:
            body += f"<description>{escape(SCHEMA_DESCRIPTIONS[schema])}</description>"
        body += "".join(_table_xml(t, detail) for t in catalog.published() if t.schema == schema) + "</schema>"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + _TABLESET_OPEN + body + "</vosi:tableset>\n").encode()


def table(t: TableMeta) -> bytes:
    doc = _table_xml(t).replace("<table ", '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
                                f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" ', 1)
    doc = doc[: -len("</table>")] + "</vosi:table>"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + doc + "\n").encode("utf-8")


#: DALI examples (/tap/examples): (id, title, explanation, ADQL); the tests run every one on both backends
EXAMPLES = [
    ("latest", "Latest detections", "The 20 most recent detections, newest first.",
     "SELECT TOP 20 diasourceid, objectid, ra, dec, mjd, band, mag FROM gateway.diasource ORDER BY mjd DESC"),
    ("cone", "Cone search", "Detections within 10 arcsec of a position (uses the sky index).",
     "SELECT diasourceid, ra, dec, mjd, mag FROM gateway.diasource\n"
     "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.1, 2.2, 10.0/3600))"),
    ("distance", "Nearest objects", "Objects within 1 degree of a position with their distance, nearest first.",
     "SELECT TOP 10 objectid, ra, dec, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 150.1, 2.2)) AS dist\n"
     "FROM gateway.diaobject WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.1, 2.2, 1))\n"
     "ORDER BY dist"),
    ("lightcurve", "Light curve", "All detections of one object, in time order.",
     "SELECT mjd, band, mag, mag_err FROM gateway.diasource WHERE objectid = 'diaObject:1' ORDER BY mjd"),
    ("crossmatch", "Cross-match an uploaded target list",
     "Upload a VOTable with columns ra, dec as TAP_UPLOAD.targets (pyvo: uploads={'targets': table}); this "
     "finds detections within 2 arcsec of each target.",
     "SELECT t.*, d.diasourceid, d.mjd, d.mag FROM TAP_UPLOAD.targets AS t JOIN gateway.diasource AS d\n"
     "ON 1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', t.ra, t.dec, 2.0/3600))"),
    ("bands", "Detections per band", "Counts of detections per filter band.",
     "SELECT band, COUNT(*) AS n FROM gateway.diasource GROUP BY band ORDER BY band"),
]


def examples() -> bytes:
    body = ""
    for key, title, text, query in EXAMPLES:
        body += (f'<div id="{key}" resource="#{key}" typeof="example">\n<h2 property="name">{escape(title)}</h2>\n'
                 f"<p>{escape(text)}</p>\n<pre property=\"query\">{escape(query)}</pre>\n</div>\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>ADQL examples for the alert DB</title>'
            '</head>\n<body vocab="http://www.ivoa.net/rdf/examples#">\n<h1>ADQL examples for the alert DB</h1>\n'
            + body + "</body></html>\n").encode("utf-8")
