"""``/scs``: IVOA Simple Cone Search over the alert DB's objects (``diaobject``).

``GET /scs?RA=&DEC=&SR=`` (decimal degrees, ICRS; parameter names in any case) returns a VOTable with one RESOURCE
``type="results"`` holding one TABLE of the objects within SR of (RA, DEC), in objectid order:

- the three fields SCS requires, with the UCDs the Recommendation (SCS 1.03) names and pyvo's ``SCSRecord`` reads
  (``.id``, ``.pos``): ``objectid`` ``ID_MAIN``, ``ra`` ``POS_EQ_RA_MAIN``, ``dec`` ``POS_EQ_DEC_MAIN``. They are
  UCD1 words, so the document is VOTable 1.1, whose UCDs they are (SCS allows any VOTable 1 version). The 1.1
  working draft renames them to UCD1+ ``meta.id;meta.main`` and so on, which pyvo's records do not find.
- ``VERB`` 1 (those three), 2 (default: also survey, detections, last time, TNS name), 3 (every column we have).
- ``MAXREC`` (DALI): at most that many rows, at most ``max_records`` (:data:`MAX_RECORDS`); more matches are signalled by
  ``INFO name="QUERY_STATUS" value="OVERFLOW"`` in the RESOURCE. ``MAXREC=0`` or ``SR=0``: the fields, no rows (a
  metadata query).
- a bad request (a parameter missing, not a number, out of range, SR over ``max_radius``, :data:`MAX_RADIUS`) is the error document SCS
  prescribes: ``INFO name="Error"`` as a direct child of VOTABLE whose value is one sentence, and an empty
  RESOURCE; HTTP 200 as SCS services answer (pyvo raises ``DALQueryError`` with the sentence).

The query runs in a reader thread of the store (``Store.cone``); the reactor only formats the result.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import quoteattr

from twisted.logger import Logger
from twisted.web import resource

from gateway.store.queries import CONE_COLUMNS
from gateway.store.schema import DIAOBJECT
from gateway.web.later import respond_later

log = Logger()

CONTENT_TYPE = b"text/xml;content=x-votable"
#: the most rows one answer holds (MAXREC is capped to it) and the largest SR accepted, deg (SCS's MaxSR)
MAX_RECORDS, MAX_RADIUS = 10_000, 10.0
_NS = 'version="1.1" xmlns="http://www.ivoa.net/xml/VOTable/v1.1"'
#: UCDs SCS requires on the id and position columns
REQUIRED_UCDS = {"objectid": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}
#: the columns of each VERB, in CONE_COLUMNS order
VERB_COLUMNS = {
    1: ("objectid", "ra", "dec"),
    2: ("objectid", "survey", "ra", "dec", "ndetections", "last_mjd", "tns_name"),
    3: CONE_COLUMNS,
}
_VOTABLE_TYPES = {"VARCHAR": ('datatype="char" arraysize="*"'), "DOUBLE": 'datatype="double"',
                  "INTEGER": 'datatype="int"', "BIGINT": 'datatype="long"'}


class ConeSearchError(ValueError):
    """A request SCS says must be answered with an error document; the message is the sentence sent."""


def _number(args: dict, name: str, low: float, high: float) -> float:
    text = args.get(name)
    if text is None or not text.strip():
        raise ConeSearchError(f"parameter {name} is missing: a cone search needs RA, DEC and SR in decimal degrees")
    try:
        value = float(text)
    except ValueError:
        raise ConeSearchError(f"parameter {name}: {text.strip()[:40]!r} is not a number in decimal degrees") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConeSearchError(f"parameter {name}: {text.strip()[:40]} is out of range ({low:g} to {high:g} deg)")
    return value


def parse_request(args: dict, max_records: int, max_radius: float) -> tuple[float, float, float, int, int]:
    """(RA, DEC, SR, VERB, MAXREC) of a request's arguments (upper-case names, text values); ConeSearchError."""
    ra = _number(args, "RA", 0.0, 360.0)
    dec = _number(args, "DEC", -90.0, 90.0)
    radius = _number(args, "SR", 0.0, 180.0)
    if radius > max_radius:
        raise ConeSearchError(f"parameter SR: {radius:g} deg is larger than this service's largest radius, "
                              f"{max_radius:g} deg")
    verb = args.get("VERB", "").strip() or "2"
    if verb not in ("1", "2", "3"):
        raise ConeSearchError(f"parameter VERB: {verb[:20]!r} is not 1, 2 or 3")
    maxrec_text = args.get("MAXREC", "").strip()
    if not maxrec_text:
        maxrec = max_records
    elif maxrec_text.isdigit():
        maxrec = min(int(maxrec_text), max_records)
    else:
        raise ConeSearchError(f"parameter MAXREC: {maxrec_text[:20]!r} is not a whole number of records")
    return ra, dec, radius, int(verb), maxrec


def error_document(message: str) -> bytes:
    """The SCS error response: ``INFO name="Error"`` under VOTABLE (where SCS prefers it), an empty RESOURCE."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE {_NS}>\n'
            f'  <INFO ID="Error" name="Error" value={quoteattr(message)}/>\n'
            f'  <RESOURCE type="results"/>\n</VOTABLE>\n').encode()


def _field(name: str) -> str:
    column = DIAOBJECT.column(name)
    ucd = REQUIRED_UCDS.get(name, column.ucd)
    unit = f" unit={quoteattr(column.unit)}" if column.unit else ""
    unit += ' ref="icrs"' if name in ("ra", "dec") else ""
    return (f'      <FIELD name="{name}" ID="{name}" {_VOTABLE_TYPES[column.datatype]} ucd={quoteattr(ucd)}{unit}>'
            f"<DESCRIPTION>{_escape(column.description)}</DESCRIPTION></FIELD>\n")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(value) -> str:
    if value is None:
        return "<TD/>"
    if isinstance(value, float):
        return "<TD/>" if not math.isfinite(value) else f"<TD>{value!r}</TD>"
    return f"<TD>{_escape(str(value))}</TD>"


def result_document(columns: tuple[str, ...], rows: list[tuple], overflow: bool, ra: float, dec: float,
                    radius: float) -> bytes:
    """The results VOTable: ``rows`` are tuples of :data:`CONE_COLUMNS`; ``columns`` the ones to show."""
    picks = [CONE_COLUMNS.index(name) for name in columns]
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE {_NS}>\n',
             '  <RESOURCE type="results">\n',
             f'    <INFO name="QUERY_STATUS" value="{"OVERFLOW" if overflow else "OK"}"/>\n',
             f'    <INFO name="request" value="RA={ra!r} DEC={dec!r} SR={radius!r}"/>\n',
             '    <COOSYS ID="icrs" system="ICRS"/>\n',
             '    <TABLE name="objects">\n',
             "      <DESCRIPTION>Objects of the gateway's alert DB (gateway.diaobject) within the cone</DESCRIPTION>\n"]
    parts += [_field(name) for name in columns]
    parts.append("      <DATA><TABLEDATA>\n")
    parts += ["        <TR>" + "".join(_cell(row[i]) for i in picks) + "</TR>\n" for row in rows]
    parts.append("      </TABLEDATA></DATA>\n    </TABLE>\n  </RESOURCE>\n</VOTABLE>\n")
    return "".join(parts).encode()


class ConeSearch(resource.Resource):
    """``GET /scs?RA=&DEC=&SR=[&VERB=][&MAXREC=]``, over ``store`` (see the module docstring)."""

    isLeaf = True

    def __init__(self, store, max_records: int = MAX_RECORDS, max_radius: float = MAX_RADIUS):
        super().__init__()
        self.store, self.max_records, self.max_radius = store, max_records, max_radius

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE)
        args = {key.decode("utf-8", "replace").upper(): values[-1].decode("utf-8", "replace")
                for key, values in request.args.items() if values}
        try:
            ra, dec, radius, verb, maxrec = parse_request(args, self.max_records, self.max_radius)
        except ConeSearchError as error:
            return error_document(str(error))
        columns = VERB_COLUMNS[verb]
        if radius == 0 or maxrec == 0:  # a metadata query: the fields, no rows
            return result_document(columns, [], False, ra, dec, radius)

        def found(result):
            rows, overflow = result
            return result_document(columns, rows, overflow, ra, dec, radius)

        def failed(failure):
            log.failure("cone search RA={ra} DEC={dec} SR={sr}", failure, ra=ra, dec=dec, sr=radius)
            return error_document("the alert DB could not be read; try again")

        return respond_later(request, self.store.cone(ra, dec, radius, maxrec).addCallbacks(found, failed))
