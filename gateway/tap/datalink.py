"""DataLink 1.1 ``{links}`` for alerts: ``/tap/links?ID=<alertid>`` lists an alert's cutouts (FITS at
``/cutouts``), its VOEvent and its object's light curve (TAP sync queries), and a TAP result that carries alert ids
gets a service descriptor (``RESOURCE type="meta" utype="adhoc:service"``) pointing here, so TOPCAT and pyvo reach
the cutouts from a row. Every URL is built from the public URL of the service (``[gateway] public_url``) or, without
one, from the request's Host header: never from a listener's default address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional
from urllib.parse import urlencode

from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET

from gateway.store.schema import SCHEMA
from gateway.tap.catalog import ColumnMeta
from gateway.tap.request import TapResource, read_params, send_error
from gateway.tap.votable import write_votable

if TYPE_CHECKING:
    from gateway.tap.resource import TapService

log = Logger()

#: the DataLink 1.1 {links} response columns (with their standard UCDs)
LINK_COLUMNS = [ColumnMeta(name, datatype, arraysize, ucd=ucd) for name, datatype, arraysize, ucd in (
    ("ID", "char", "*", "meta.id;meta.main"), ("access_url", "char", "*", "meta.ref.url"),
    ("service_def", "char", "*", "meta.ref"), ("error_message", "char", "*", "meta.code.error"),
    ("semantics", "char", "*", "meta.code"), ("description", "char", "*", "meta.note"),
    ("content_type", "char", "*", "meta.code.mime"), ("content_length", "long", None, "phys.size;meta.file"),
    ("content_qualifier", "char", "*", "meta.code.class"), ("local_semantics", "char", "*", "meta.code"),
)]
MAX_IDS = 100


def _sync_url(tap: str, adql: str) -> str:
    return f"{tap}/sync?" + urlencode({"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": adql})


def link_rows(site: str, tap: str, found: dict) -> list[tuple]:
    """The {links} rows: for each requested ID, its links, or one row with an error_message."""
    rows = []
    for given, alert in found.items():
        if alert is None:
            rows.append((given, None, None, f"NotFoundFault: no alert with alertid {given}", None, None, None, None,
                         None, None))
            continue
        alert_id, ivorn, object_id, kinds = alert
        for kind in kinds:
            rows.append((given, f"{site}/cutouts/{alert_id}/{kind}.fits", None, None, "#cutout",
                         f"{kind} image cutout of the alert (FITS)", "application/fits", None, None, kind))
        quoted_ivorn = ivorn.replace("'", "''")
        rows.append((given, _sync_url(tap, f"SELECT ivorn, xml FROM {SCHEMA}.voevent WHERE ivorn = '{quoted_ivorn}'"),
                     None, None, "#auxiliary", "the VOEvent built from the alert (TAP query; its xml column)",
                     "application/x-votable+xml", None, None, "voevent"))
        quoted_object = object_id.replace("'", "''")
        rows.append((given, _sync_url(tap, f"SELECT diasourceid, mjd, band, mag, mag_err, psf_flux, psf_flux_err FROM "
                                           f"{SCHEMA}.diasource WHERE objectid = '{quoted_object}' ORDER BY mjd"),
                     None, None, "#auxiliary", f"light curve of {object_id}: every stored detection (TAP query)",
                     "application/x-votable+xml", None, None, "lightcurve"))
    return rows


class LinksResource(TapResource):
    """``/tap/links?ID=...``: DataLink 1.1 {links} for one or more alert ids."""

    isLeaf = True

    def __init__(self, service: TapService):
        super().__init__()
        self.service = service

    def render_POST(self, request):
        return self.render_GET(request)

    def render_GET(self, request):
        params, _ = read_params(request)
        ids = params.get("id") or []
        if not ids:
            return send_error(request, "ID is missing: give ID=<alertid> (one or more ID parameters)")
        if len(ids) > MAX_IDS:
            return send_error(request, f"at most {MAX_IDS} ID parameters per request")
        tap = self.service.base(request)
        site = tap[: -len("/tap")] if tap.endswith("/tap") else tap
        database = self.service.runner.database
        p = database.placeholder

        def lookup(conn):
            found = {}
            for given in ids:
                alert_id = _alert_id(given)
                row = None if alert_id is None else conn.execute(
                    f"SELECT alertid, ivorn, objectid FROM {SCHEMA}.alert WHERE alertid = {p}", (alert_id,)).fetchone()
                if row is None:
                    found[given] = None
                    continue
                kinds = [k for (k,) in conn.execute(f"SELECT kind FROM {SCHEMA}.cutout WHERE alertid = {p} "
                                                    "ORDER BY kind", (alert_id,)).fetchall()]
                found[given] = (row[0], row[1], row[2], kinds)
            return found

        def answer(found):
            request.setHeader(b"content-type", b"application/x-votable+xml;content=datalink")
            out = _Buffer()
            write_votable(LINK_COLUMNS, [link_rows(site, tap, found)], out, tabledata=True)
            request.write(out.data)
            request.finish()

        def failed(failure):
            log.failure("DataLink {ids}", failure, ids=ids)
            request.write(send_error(request, f"the links cannot be listed: {failure.getErrorMessage()}", 500))
            request.finish()
        database.read(lookup).addCallbacks(answer, failed)
        return NOT_DONE_YET


def _alert_id(text: str) -> Optional[int]:
    """An alert id from an ID value: the number, or an IVORN-like ``...#<number>``; None otherwise."""
    tail = text.strip().rsplit("#", 1)[-1]
    try:
        return int(tail)
    except ValueError:
        return None


class _Buffer:
    def __init__(self):
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data
