"""The HTTP side on ``http.listen``: ``/tap`` (the TAP service over the alert DB) and ``/cutouts``.

``/cutouts/<alertId>/<kind>.fits`` serves the cutout images that VOEvent References point at.
"""

from __future__ import annotations

import re
from typing import Optional

from twisted.logger import Logger
from twisted.web import resource, server

from gateway.tap.resource import tap_resource
from gateway.tap.settings import TapSettings
from gateway.voevent.build import CUTOUT_KINDS

log = Logger()

_CUTOUT_PATH = re.compile(r"^(\d{1,20})/(%s)\.fits$" % "|".join(CUTOUT_KINDS))


class Cutouts(resource.Resource):
    """GET /cutouts/<alertId>/<kind>.fits -> the FITS bytes from the store, ``application/fits``."""

    isLeaf = True

    def __init__(self, store):
        super().__init__()
        self.store = store

    def render_GET(self, request):
        path = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        match = _CUTOUT_PATH.match(path)
        if not match:
            return _text(request, 404, f"no such cutout: /cutouts/{path} (expected /cutouts/<alertId>/<kind>.fits "
                                       f"with kind one of {', '.join(CUTOUT_KINDS)})")
        alert_id, kind = int(match.group(1)), match.group(2)

        def found(content):
            if content is None:
                request.write(_text(request, 404, f"alert {alert_id} has no {kind} cutout"))
            else:
                request.setHeader(b"content-type", b"application/fits")
                request.setHeader(b"content-disposition", f'inline; filename="{alert_id}-{kind}.fits"'.encode())
                request.setHeader(b"content-length", str(len(content)).encode())
                request.write(content)
            request.finish()

        def failed(failure):
            if failure.check(ValueError):  # stored bytes that do not unpack (corrupt, or a gzip bomb)
                log.warn("cutout {alert_id}/{kind} not served: {why}", alert_id=alert_id, kind=kind,
                         why=failure.getErrorMessage())
                request.write(_text(request, 500, f"the {kind} cutout of alert {alert_id} cannot be served: "
                                                  f"{failure.getErrorMessage()}"))
            else:
                log.failure("cutout {alert_id}/{kind}", failure, alert_id=alert_id, kind=kind)
                request.write(_text(request, 503, "the alert DB could not be read; try again"))
            request.finish()

        self.store.cutout(alert_id, kind).addCallbacks(found, failed)
        return server.NOT_DONE_YET


def _text(request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode()


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
        return _text(request, 200, "\n".join(lines))


def http_site(store, database, reactor, base_url: Optional[str], tap: TapSettings,
              workdir: Optional[str]) -> server.Site:
    """The Site for ``http.listen``: ``/cutouts`` from ``store``, ``/tap`` over ``database`` with ``tap``.

    ``base_url``: the public URL of this service (None: from each request's Host header); ``workdir``: where async
    TAP results go (None: a temporary directory)."""
    tap_url = None if base_url is None else base_url.rstrip("/") + "/tap"
    tap_root = tap_resource(database, reactor, tap, tap_url, workdir)
    # TAP parses request bodies itself: Twisted's multipart parser rejects STILTS's upload boundary
    site = server.Site(Root({"cutouts": Cutouts(store), "tap": tap_root}), parsePOSTFormSubmission=False)
    site.noisy = False
    return site
