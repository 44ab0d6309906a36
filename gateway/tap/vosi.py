"""VOSI documents of the TAP service: capabilities (with TAPRegExt), availability, tables."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from gateway.tap.catalog import Catalog, TableMeta
from gateway.tap.query import Limits
from gateway.tap.votable import ADVERTISED

XSI = "http://www.w3.org/2001/XMLSchema-instance"
GEOMETRY = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE", "COORD1", "COORD2",
            "COORDSYS")


def capabilities(base: str, limits: Limits, retention: float) -> bytes:
    def interface(path, role=None, extra=""):
        role_attr = f' role="{role}"' if role else ""
        return (f'<interface xsi:type="vs:ParamHTTP"{role_attr}><accessURL use="base">{escape(base + path)}'
                f"</accessURL>{extra}</interface>")

    geo = "".join(f"<feature><form>{name}</form></feature>" for name in GEOMETRY)
    formats = ""
    for mime, aliases in ADVERTISED:
        formats += "<outputFormat><mime>" + escape(mime) + "</mime>" + "".join(
            f"<alias>{escape(a)}</alias>" for a in aliases) + "</outputFormat>"
    tap = (
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        + interface("", "std", '<queryType>GET</queryType><queryType>POST</queryType>'
                    '<resultType>application/x-votable+xml</resultType>')
        + '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<description>ADQL 2.0 translated to the SQL of the alert DB (SQLite or PostgreSQL with q3c)</description>'
        '<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">' + geo + "</languageFeatures>"
        '<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adql-string">'
        "<feature><form>LOWER</form></feature><feature><form>UPPER</form></feature>"
        "<feature><form>ILIKE</form></feature></languageFeatures>"
        "</language>"
        + formats
        + '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
        f"<retentionPeriod><default>{int(retention)}</default><hard>{int(retention)}</hard></retentionPeriod>"
        f"<executionDuration><default>{int(limits.async_timeout)}</default>"
        f"<hard>{int(limits.max_async_timeout)}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{limits.maxrec_default}</default>'
        f'<hard unit="row">{limits.maxrec_max}</hard></outputLimit>'
        f'<uploadLimit><hard unit="byte">{limits.upload_max_bytes}</hard></uploadLimit>'
        "</capability>")
    vosi = "".join(
        f'<capability standardID="ivo://ivoa.net/std/VOSI#{name}">' + interface(f"/{name}") + "</capability>"
        for name in ("capabilities", "availability", "tables"))
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
           f'xmlns:xsi="{XSI}" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
           'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">' + tap + vosi + "</vosi:capabilities>\n")
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
        out += f"<column><name>{escape(c.name)}</name>"
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
    from gateway.tap.catalog import SCHEMA_DESCRIPTIONS

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
