"""``/cutouts/<alertId>/<kind>.fits``: the cutout images that VOEvent References point at, from the store; and
``.png``: the same stamp rendered for a browser (the status page), in a thread."""

from __future__ import annotations

import re

from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import resource, server

from gateway.voevent.build import CUTOUT_KINDS
from gateway.web.common import Reply, text_response
from gateway.web.png import StampError, stamp_png

log = Logger()

_CUTOUT_PATH = re.compile(r"^(\d{1,20})/(%s)\.(fits|png)$" % "|".join(CUTOUT_KINDS))


class Cutouts(resource.Resource):
    """GET /cutouts/<alertId>/<kind>.fits -> the FITS bytes from the store, ``application/fits``; ``.png``: the
    stamp as an image (``reactor``: where the rendering threads come from)."""

    isLeaf = True

    def __init__(self, store, reactor=None):
        super().__init__()
        self.store = store
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor

    def render_GET(self, request):
        path = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        match = _CUTOUT_PATH.match(path)
        if not match:
            return text_response(request, 404, f"no such cutout: /cutouts/{path} (expected /cutouts/<alertId>/<kind>.fits "
                                       f"with kind one of {', '.join(CUTOUT_KINDS)})")
        alert_id, kind, image = int(match.group(1)), match.group(2), match.group(3)
        if image == "png":
            return self._png(request, alert_id, kind)

        def found(content):
            if content is None:
                request.write(text_response(request, 404, f"alert {alert_id} has no {kind} cutout"))
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
                request.write(text_response(request, 500, f"the {kind} cutout of alert {alert_id} cannot be served: "
                                                  f"{failure.getErrorMessage()}"))
            else:
                log.failure("cutout {alert_id}/{kind}", failure, alert_id=alert_id, kind=kind)
                request.write(text_response(request, 503, "the alert DB could not be read; try again"))
            request.finish()

        self.store.cutout(alert_id, kind).addCallbacks(found, failed)
        return server.NOT_DONE_YET

    def _png(self, request, alert_id: int, kind: str):
        reply = Reply(request)

        def render(content):
            if content is None:
                return None
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), stamp_png, content)

        def found(png):
            if png is None:
                reply.send(text_response(request, 404, f"alert {alert_id} has no {kind} cutout"))
            else:
                request.setHeader(b"content-type", b"image/png")
                request.setHeader(b"cache-control", b"max-age=86400")  # a stored cutout never changes
                reply.send(png)

        def failed(failure):
            if failure.check(StampError, ValueError):
                reply.send(text_response(request, 422, f"the {kind} cutout of alert {alert_id} cannot be shown as "
                                                       f"an image: {failure.getErrorMessage()}"))
            else:
                log.failure("cutout {alert_id}/{kind} as PNG", failure, alert_id=alert_id, kind=kind)
                reply.send(text_response(request, 503, "the alert DB could not be read; try again"))

        self.store.cutout(alert_id, kind).addCallback(render).addCallbacks(found, failed)
        return server.NOT_DONE_YET
