"""The HTTP side on ``http.listen``: ``/tap`` (the TAP service over the alert DB) and ``/cutouts``."""

from __future__ import annotations

from typing import Optional

from twisted.web import resource, server

from gateway.tap.resource import tap_resource
from gateway.tap.settings import TapSettings
from gateway.web.common import text_response
from gateway.web.cutouts import Cutouts
from gateway.web.objects import Objects
from gateway.web.scs import ConeSearch


class Root(resource.Resource):
    """``/``: a short plain-text index of what this service offers."""

    def __init__(self, children: dict[str, resource.Resource]):
        super().__init__()
        for name, child in children.items():
            self.putChild(name.encode(), child)
        self.names = sorted(children)

    def getChild(self, path, request):
        if path == b"":
            return self
        return resource.NoResource("no such resource")

    def render_GET(self, request):
        lines = ["vogateway: VOEvents from Rubin and ZTF alerts", ""]
        lines += [f"  /{name}" for name in self.names]
        return text_response(request, 200, "\n".join(lines))


def http_site(store, database, reactor, base_url: Optional[str], tap: TapSettings,
              workdir: Optional[str]) -> server.Site:
    """The Site for ``http.listen``: ``/cutouts`` from ``store``, ``/tap`` over ``database`` with ``tap``.

    ``base_url``: the public URL of this service (None: from each request's Host header); ``workdir``: where async
    TAP results go (None: a temporary directory)."""
    tap_url = None if base_url is None else base_url.rstrip("/") + "/tap"
    tap_root = tap_resource(database, reactor, tap, tap_url, workdir)
    # TAP parses request bodies itself: Twisted's multipart parser rejects STILTS's upload boundary
    site = server.Site(Root({"cutouts": Cutouts(store), "tap": tap_root,
                             "objects": Objects(store), "scs": ConeSearch(store)}), parsePOSTFormSubmission=False)
    site.noisy = False
    return site
