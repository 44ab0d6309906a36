"""The VOSI and DALI resources: ``/capabilities``, ``/availability``, ``/tables`` (and ``/tables/<schema.table>``),
``/examples``; the documents come from :mod:`gateway.tap.vosi`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.tap import vosi
from gateway.tap.request import DocumentResource, ErrorResource, TapResource, first, read_params, send_xml

if TYPE_CHECKING:
    from gateway.tap.resource import TapService

AVAILABLE_NOTE = "TAP service of the alert gateway is accepting queries"


class TablesResource(TapResource):
    def __init__(self, service: TapService):
        super().__init__()
        self.service = service

    def getChild(self, path, request):
        if path == b"":
            return self
        name = path.decode("utf-8", "replace")
        schema, _, table = name.rpartition(".")
        meta = self.service.runner.catalog.get(schema or None, table)
        if meta is None or meta.schema == "tap_upload":
            return ErrorResource(f"no table named {name!r}; /tap/tables lists them", 404)
        return DocumentResource(lambda request: vosi.table(meta))

    def render_GET(self, request):
        params, _ = read_params(request)
        detail = (first(params, "detail") or "max").lower() != "min"
        return send_xml(request, vosi.tableset(self.service.runner.catalog, detail))


def vosi_resources(service: TapService) -> dict[bytes, TapResource]:
    """The VOSI and DALI children of /tap by name."""
    return {
        b"capabilities": DocumentResource(lambda request: vosi.capabilities(service.base(request), service.settings)),
        b"availability": DocumentResource(lambda request: vosi.availability(True, AVAILABLE_NOTE)),
        b"tables": TablesResource(service),
        b"examples": DocumentResource(lambda request: vosi.examples(), b"application/xhtml+xml"),
    }
