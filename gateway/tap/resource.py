"""The TAP 1.1 HTTP tree on twisted.web: /sync, /async (UWS 1.1), /capabilities, /availability, /tables,
/examples, assembled over one :class:`TapService`.

Mount what :func:`tap_resource` returns at ``/tap`` in a ``twisted.web.server.Site`` created with
``parsePOSTFormSubmission=False`` (see :mod:`gateway.tap.request`); :func:`gateway.web.http_site` does.

Every error is a VOTable with ``INFO name="QUERY_STATUS" value="ERROR"`` and a message a person can act on:
400 for mistakes in the request, 404 for unknown jobs and paths, 503 when a limit is reached.
"""

from __future__ import annotations

from typing import Optional

from twisted.python.threadpool import ThreadPool

from gateway.tap.admission import SyncAdmission
from gateway.tap.catalog import Catalog
from gateway.tap.datalink import LinksResource
from gateway.tap.jobs import AsyncResource
from gateway.tap.query import Runner
from gateway.tap.request import TapResource
from gateway.tap.settings import TapSettings
from gateway.tap.sync import SyncResource
from gateway.tap.uws import JobManager
from gateway.tap.vosi_resources import vosi_resources


class RootResource(TapResource):
    def __init__(self, service: TapService):
        super().__init__()
        self.service = service
        self.putChild(b"sync", SyncResource(service))
        self.putChild(b"async", AsyncResource(service))
        self.putChild(b"links", LinksResource(service))
        for name, child in vosi_resources(service).items():
            self.putChild(name, child)

    def getChildWithDefault(self, path, request):
        # the URL of this resource, for job links and redirects, as the client reached it
        request.tap_base = "/" + "/".join(p.decode("utf-8", "replace") for p in request.prepath[:-1])
        return super().getChildWithDefault(path, request)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (b"TAP 1.1 service of the alert gateway: /sync, /async, /capabilities, /availability, /tables. "
                b"ADQL: SELECT TOP 10 * FROM gateway.diasource\n")


class TapService:
    """State shared by the resources: the settings, the runner, the job manager, the sync thread pool."""

    def __init__(self, database, reactor, settings: TapSettings, base_url: Optional[str] = None,
                 workdir: Optional[str] = None, catalog: Optional[Catalog] = None):
        self.reactor = reactor
        self.settings = settings
        self.base_url = base_url.rstrip("/") if base_url else None
        self.runner = Runner(database, settings, catalog)
        self.jobs = JobManager(self.runner, reactor, workdir)
        # one thread per sync slot: admission keeps the rest waiting in the reactor, not in the pool's queue
        self.sync_admission = SyncAdmission(reactor, settings.sync_max_running, settings.sync_max_per_client,
                                            settings.sync_max_queued, settings.sync_timeout)
        self.sync_pool = ThreadPool(1, settings.sync_max_running, name="tap-sync")
        self.sync_pool.start()
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def stop(self):
        self.jobs.stop()
        if self.sync_pool.started:
            self.sync_pool.stop()

    def base(self, request) -> str:
        """The public URL of /tap: ``base_url``, else from the request's Host header."""
        if self.base_url:
            return self.base_url
        host = (request.getHeader(b"host") or b"localhost").decode("latin-1")
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}{getattr(request, 'tap_base', '/tap')}"


def tap_resource(database, reactor, settings: TapSettings, base_url: Optional[str] = None,
                 workdir: Optional[str] = None, **options) -> TapResource:
    """The /tap resource tree over ``database`` (gateway.store.db.Database). ``base_url``: the public URL of
    /tap (default: from each request's Host header); ``workdir``: where async results go (default: a temporary
    directory, removed at stop). ``options``: catalog."""
    return RootResource(TapService(database, reactor, settings, base_url, workdir, **options))
