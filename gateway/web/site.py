"""The HTTP side on ``http.listen``: ``/tap`` (the TAP service over the alert DB), ``/cutouts``, and, for a running
gateway, the status page ``/`` with its live data ``/status.json`` and assets ``/static``, ``/voevent``,
``/metrics``, ``/health`` and ``/ready``."""

from __future__ import annotations

from typing import Optional

from twisted.web import resource, server

from gateway.tap.resource import tap_resource
from gateway.tap.settings import TapSettings
from gateway.web.common import text_response
from gateway.web.cutouts import Cutouts
from gateway.web.health import Health, Ready
from gateway.web.metrics import MetricsResource
from gateway.web.objects import Objects
from gateway.web.scs import ConeSearch
from gateway.web.status import STATIC, RecentVOEvent, StatusData, render_page, wants_html


class Root(resource.Resource):
    """``/``: the status page for a browser (``status``: a :class:`StatusData`), else a short plain-text index
    of what this service offers (curl, or a site without a gateway behind it)."""

    def __init__(self, children: dict[str, resource.Resource], status: Optional[StatusData] = None):
        super().__init__()
        for name, child in children.items():
            self.putChild(name.encode(), child)
        self.names = sorted(children)
        self.status = status

    def getChild(self, path, request):
        if path == b"":
            return self
        return resource.NoResource("no such resource")

    def render_GET(self, request):
        if self.status is not None and wants_html(request):
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return render_page(self.status.snapshot()).encode()
        lines = ["vogateway: VOEvents from Rubin and ZTF alerts", ""]
        lines += [f"  /{name}" for name in self.names]
        return text_response(request, 200, "\n".join(lines))


class Assets(resource.Resource):
    """GET /static/<name>: the page's script and style sheet, shipped in the package (no CDN: no internet needed)."""

    isLeaf = True
    TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}

    def __init__(self):
        super().__init__()
        self.files = {path.name: path for path in STATIC.iterdir() if path.suffix in self.TYPES}

    def render_GET(self, request):
        name = "/".join(part.decode("utf-8", "replace") for part in request.postpath)
        path = self.files.get(name)
        if path is None:
            return text_response(request, 404, f"no such file: /static/{name}")
        request.setHeader(b"content-type", self.TYPES[path.suffix])
        request.setHeader(b"cache-control", b"max-age=300")
        return path.read_bytes()


#: paths asked for every few seconds by scrapers, orchestrators and the status page: not written to the access log
_POLLED = (b"/metrics", b"/health", b"/ready", b"/status.json", b"/static/")


class _Site(server.Site):
    def log(self, request):
        if not request.path.startswith(_POLLED):
            super().log(request)


def http_site(store, database, reactor, base_url: Optional[str], tap: TapSettings,
              workdir: Optional[str], gateway=None) -> server.Site:
    """The Site for ``http.listen``: ``/cutouts`` from ``store``, ``/tap`` over ``database`` with ``tap``.

    ``base_url``: the public URL of this service (None: from each request's Host header); ``workdir``: where async
    TAP results go (None: a temporary directory); ``gateway``: the running ``service.Gateway``, whose status,
    metrics and health pages are added."""
    tap_url = None if base_url is None else base_url.rstrip("/") + "/tap"
    tap_root = tap_resource(database, reactor, tap, tap_url, workdir)
    children = {"cutouts": Cutouts(store, reactor), "tap": tap_root, "objects": Objects(store),
                "scs": ConeSearch(store)}
    status = None
    if gateway is not None:
        tap_root.service.runner.observers.append(gateway.metrics.tap_query)
        status = StatusData(gateway, reactor)
        children.update({"metrics": MetricsResource(gateway.metrics), "health": Health(),
                         "ready": Ready(database, gateway.sources, reactor), "status.json": status.resource(),
                         "static": Assets(), "voevent": RecentVOEvent(gateway.recent)})
    # TAP parses request bodies itself: Twisted's multipart parser rejects STILTS's upload boundary
    site = _Site(Root(children, status), parsePOSTFormSubmission=False)
    site.noisy = False
    return site
