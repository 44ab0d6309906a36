"""The TAP 1.1 HTTP tree on twisted.web: /sync, /async (UWS 1.1), /capabilities, /availability, /tables.

Mount what :func:`tap_resource` returns at ``/tap`` in a ``twisted.web.server.Site`` created with
``parsePOSTFormSubmission=False``: request bodies (form-encoded or multipart, also chunked) are parsed here with
the ``multipart`` package, because Twisted's own multipart parsing rejects the boundary STILTS uses
(``<<<---...--->>>``) with a 400 before any resource runs.

Every error is a VOTable with ``INFO name="QUERY_STATUS" value="ERROR"`` and a message a person can act on:
400 for mistakes in the request, 404 for unknown jobs and paths, 503 when a limit is reached.
"""

from __future__ import annotations

import threading
import time
from typing import Optional
from urllib.parse import parse_qs

import multipart
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web import resource as web_resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from gateway import __version__
from gateway.tap import vosi
from twisted import version as twisted_version
from gateway.tap.catalog import Catalog
from gateway.tap.query import Cancel, Limits, QueryError, QuerySpec, Runner
from gateway.tap.uws import PHASES, JobManager, check_lang, parse_iso
from gateway.tap.votable import error_document

log = Logger()

MAX_WAIT = 60.0  # seconds a blocking WAIT=-1 waits at most
MAX_BODY = 64 * 1024 * 1024
#: the software identification TAP validators look for (IVOA SoftID note)
SERVER = f"vogateway/{__version__} IVOA-TAP/1.1 TwistedWeb/{twisted_version.short()}".encode()


# -- requests ------------------------------------------------------------------------------------------------------

def read_params(request) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    """(parameters by lower-case name, multipart file parts by name) from the query string and the body."""
    params: dict[str, list[str]] = {}
    parts: dict[str, bytes] = {}

    def add(name, value):
        params.setdefault(name.lower(), []).append(value)

    uri = request.uri.decode("latin-1")
    if "?" in uri:
        for name, values in parse_qs(uri.split("?", 1)[1], keep_blank_values=True).items():
            for v in values:
                add(name, v)
    if request.method in (b"POST", b"PUT") and request.content is not None:
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        kind, options = multipart.parse_options_header(ctype)
        request.content.seek(0)
        if kind == "multipart/form-data":
            boundary = options.get("boundary")
            if not boundary:
                raise QueryError("multipart/form-data body without a boundary")
            try:
                for part in multipart.MultipartParser(request.content, boundary, memory_limit=MAX_BODY,
                                                      partsize_limit=MAX_BODY, part_limit=1000):
                    if part.filename is not None or (part.content_type or "").startswith(
                            ("application/x-votable", "text/xml", "application/xml")):
                        parts[part.name] = part.raw
                        parts[part.name.lower()] = part.raw
                    else:
                        add(part.name, part.value)
            except multipart.MultipartError as e:
                raise QueryError(f"cannot read the multipart/form-data body: {e}") from None
        elif kind == "application/x-www-form-urlencoded" or (kind == "" and request.content.getvalue()):
            body = request.content.read().decode("utf-8", "replace")
            for name, values in parse_qs(body, keep_blank_values=True).items():
                for v in values:
                    add(name, v)
        request.content.seek(0)
    return params, parts


def first(params: dict[str, list[str]], name: str) -> Optional[str]:
    values = params.get(name)
    return values[0] if values else None


def single(params: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in params.items() if values}


def resolve_uploads(value: Optional[str], parts: dict[str, bytes]) -> dict[str, bytes]:
    """UPLOAD=name,param:part[;name2,param:part2] -> {name: VOTable bytes}."""
    uploads = {}
    if not value:
        return uploads
    for item in value.split(";"):
        if not item.strip():
            continue
        if "," not in item:
            raise QueryError(f"UPLOAD {item!r}: expected table_name,param:part_name")
        name, uri = (s.strip() for s in item.split(",", 1))
        if uri.startswith(("http://", "https://")):
            uploads[name] = uri  # fetched by the query's worker thread
            continue
        if not uri.startswith("param:"):
            raise QueryError(f"UPLOAD {name}: use param:PART (the table in a multipart part) or an http(s) URL, "
                             f"not {uri!r}")
        part = uri[len("param:"):]
        data = parts.get(part, parts.get(part.lower()))
        if data is None:
            raise QueryError(f"UPLOAD {name}: the request has no multipart part named {part!r}")
        uploads[name] = data
    return uploads


def send_error(request, message: str, status: int = 400) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/x-votable+xml")
    return error_document(message)


def send_xml(request, body: bytes, content_type: bytes = b"text/xml") -> bytes:
    request.setHeader(b"content-type", content_type)
    return body


def redirect(request, url: str) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"location", url.encode("utf-8"))
    request.setHeader(b"content-type", b"text/plain")
    return f"See {url}\n".encode("utf-8")


class TapResource(web_resource.Resource):
    """A resource whose errors and unsupported methods are VOTable error documents, never HTML."""

    def render(self, request):
        request.setHeader(b"server", SERVER)
        try:
            return super().render(request)
        except web_resource.UnsupportedMethod:
            return send_error(request, f"{request.method.decode()} is not supported on {request.path.decode()}",
                              405)
        except QueryError as e:
            return send_error(request, e.message, e.status)
        except Exception as e:  # noqa: BLE001 - a TAP client gets a VOTable, never Twisted's HTML traceback
            log.failure("TAP request {path} failed", path=request.path)
            return send_error(request, f"internal error: {type(e).__name__}: {e}", 500)

    def getChild(self, path, request):
        return ErrorResource(f"no such resource: {request.path.decode('utf-8', 'replace')}", 404)


class ErrorResource(TapResource):
    isLeaf = True

    def __init__(self, message: str, status: int):
        super().__init__()
        self.message, self.status = message, status

    def render(self, request):
        return send_error(request, self.message, self.status)


# -- streaming to the client ----------------------------------------------------------------------------------------

@implementer(IPushProducer)
class RequestSink:
    """Feeds a twisted.web request from a worker thread with back-pressure: the thread blocks in ``write``
    while the transport is paused or ``max_chunks`` chunks are queued for the reactor."""

    def __init__(self, request, reactor, cancel: Cancel, max_chunks: int = 4, stall_timeout: float = 300.0):
        self.request = request
        self.stall_timeout = stall_timeout
        self.reactor = reactor
        self.cancel = cancel
        self.started = False
        self._gone = False
        self._slots = threading.Semaphore(max_chunks)
        self._running = threading.Event()
        self._running.set()
        request.notifyFinish().addErrback(lambda _: self.stopProducing())

    # IPushProducer (reactor thread)
    def pauseProducing(self):
        self._running.clear()

    def resumeProducing(self):
        self._running.set()

    def stopProducing(self):
        self._gone = True
        self.cancel.cancel()
        self._running.set()

    # called from the worker thread
    def start(self, content_type: str) -> None:
        self.started = True

        def begin():
            if self._gone:
                return
            self.request.setResponseCode(200)
            self.request.setHeader(b"content-type", content_type.encode("latin-1"))
            self.request.registerProducer(self, True)
        self.reactor.callFromThread(begin)

    def write(self, data: bytes) -> None:
        if not data:
            return
        stalled_since = time.monotonic()
        while not self._gone and not (self._running.wait(1.0) and self._slots.acquire(timeout=1.0)):
            if time.monotonic() - stalled_since > self.stall_timeout:
                # the client stopped reading: free the query thread and the read transaction
                log.info("TAP client read nothing for {s:.0f} s; dropping it", s=self.stall_timeout)
                self.stopProducing()
                self.reactor.callFromThread(self._abort)
        if self._gone:
            return

        def deliver():
            self._slots.release()
            if not self._gone:
                self.request.write(data)
        self.reactor.callFromThread(deliver)

    def _abort(self) -> None:
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def finish(self) -> None:
        def end():
            if self._gone:
                return
            self.request.unregisterProducer()
            self.request.finish()
        self.reactor.callFromThread(end)


# -- /sync ------------------------------------------------------------------------------------------------------------

class SyncResource(TapResource):
    isLeaf = True

    def __init__(self, service: "TapService"):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        return self.render_POST(request)

    def render_POST(self, request):
        service = self.service
        params, parts = read_params(request)
        values = single(params)
        check_lang(values)
        spec = QuerySpec(values["query"], values.get("responseformat") or values.get("format"),
                         service.runner.parse_maxrec(values.get("maxrec")),
                         resolve_uploads(values.get("upload"), parts))
        cancel = Cancel()
        sink = RequestSink(request, service.reactor, cancel, stall_timeout=service.runner.limits.stall_timeout)
        d = threads.deferToThreadPool(service.reactor, service.sync_pool, service.runner.run, spec, sink, cancel,
                                      service.runner.limits.sync_timeout)

        def failed(failure):
            if sink.started or sink._gone:
                if not failure.check(QueryError):
                    log.failure("sync query failed after the response started", failure)
                return
            if failure.check(QueryError):
                body = send_error(request, failure.value.message, failure.value.status)
            else:
                log.failure("sync query failed", failure)
                body = send_error(request, f"internal error: {failure.getErrorMessage()}", 500)
            request.write(body)
            request.finish()
        d.addErrback(failed)
        return NOT_DONE_YET


# -- /async -------------------------------------------------------------------------------------------------------------

class AsyncResource(TapResource):
    def __init__(self, service: "TapService"):
        super().__init__()
        self.service = service

    def getChild(self, path, request):
        job_id = path.decode("utf-8", "replace")
        if not job_id:
            return self
        job = self.service.jobs.jobs.get(job_id)
        if job is None:
            return ErrorResource(f"no async job with id {job_id!r}: it never existed, was deleted, or passed its "
                                 "destruction time", 404)
        return JobResource(self.service, job)

    def render_GET(self, request):
        params, _ = read_params(request)
        phases = [p.strip().upper() for p in params.get("phase", [])]
        for p in phases:
            if p not in PHASES:
                raise QueryError(f"PHASE={p!r} is not a UWS phase: use one of {', '.join(PHASES)}")
        after = None
        if first(params, "after"):
            try:
                after = parse_iso(first(params, "after"))
            except ValueError as e:
                raise QueryError(f"AFTER: {e}") from None
        last = None
        if first(params, "last") is not None:
            try:
                last = int(first(params, "last"))
                if last <= 0:
                    raise ValueError
            except ValueError:
                raise QueryError(f"LAST must be a positive whole number, not {first(params, 'last')!r}") from None
        return send_xml(request, self.service.jobs.list_xml(self.service.base(request), phases, after, last))

    def render_POST(self, request):
        params, parts = read_params(request)
        values = single(params)
        uploads = resolve_uploads(values.get("upload"), parts)
        job = self.service.jobs.create(values, uploads)
        if (values.get("phase") or "").strip().upper() == "RUN":
            self.service.jobs.run(job)
        return redirect(request, f"{self.service.base(request)}/async/{job.id}")


class JobResource(TapResource):
    def __init__(self, service: "TapService", job):
        super().__init__()
        self.service, self.job = service, job

    def getChild(self, path, request):
        name = path.decode("utf-8", "replace")
        if name == "":
            return self
        if name == "results":
            return ResultsResource(self.service, self.job)
        if name in JobProperty.NAMES:
            return JobProperty(self.service, self.job, name)
        return super().getChild(path, request)

    def render_GET(self, request):
        params, _ = read_params(request)
        jobs, job = self.service.jobs, self.job
        wait = first(params, "wait")
        if wait is None:
            return send_xml(request, jobs.job_xml(job, self.service.base(request)))
        try:
            seconds = float(wait)
        except ValueError:
            raise QueryError(f"WAIT must be a number of seconds, not {wait!r}") from None
        seconds = MAX_WAIT if seconds < 0 else min(seconds, MAX_WAIT)
        phase = (first(params, "phase") or "").strip().upper()
        if phase and phase != job.phase:
            return send_xml(request, jobs.job_xml(job, self.service.base(request)))
        base = self.service.base(request)
        d = jobs.wait(job, seconds)
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(_):
            if not gone:
                request.setHeader(b"content-type", b"text/xml")
                request.write(jobs.job_xml(job, base))
                request.finish()
        d.addCallback(answer)
        return NOT_DONE_YET

    def render_POST(self, request):
        params, _ = read_params(request)
        values = single(params)
        base = self.service.base(request)
        if (values.get("action") or "").strip().upper() == "DELETE":
            self.service.jobs.delete(self.job.id)
            return redirect(request, f"{base}/async")
        if "action" in values:
            raise QueryError(f"ACTION={values['action']!r} is not supported: use ACTION=DELETE")
        jobs = self.service.jobs
        rest = {k: v for k, v in values.items() if k not in ("phase",)}
        if rest:
            jobs.set_parameters(self.job, rest)
        apply_phase(jobs, self.job, values.get("phase"))
        return redirect(request, f"{base}/async/{self.job.id}")

    def render_DELETE(self, request):
        self.service.jobs.delete(self.job.id)
        return redirect(request, f"{self.service.base(request)}/async")


def apply_phase(jobs: JobManager, job, phase: Optional[str]) -> None:
    if phase is None:
        return
    phase = phase.strip().upper()
    if phase == "RUN":
        jobs.run(job)
    elif phase == "ABORT":
        jobs.abort(job)
    else:
        raise QueryError(f"PHASE={phase!r}: a job's phase can be set to RUN or ABORT only")


class JobProperty(TapResource):
    NAMES = ("phase", "quote", "executionduration", "destruction", "error", "parameters", "owner", "runid")
    isLeaf = True

    def __init__(self, service, job, name):
        super().__init__()
        self.service, self.job, self.name = service, job, name

    def render_GET(self, request):
        job, jobs = self.job, self.service.jobs
        request.setHeader(b"content-type", b"text/plain")
        if self.name == "phase":
            return job.phase.encode()
        if self.name == "quote":
            return b""
        if self.name == "executionduration":
            return str(int(job.execution_duration)).encode()
        if self.name == "destruction":
            from gateway.tap.uws import iso
            return iso(job.destruction).encode()
        if self.name == "owner":
            return b""
        if self.name == "runid":
            return (job.run_id or "").encode()
        if self.name == "error":
            if job.error is None:
                return send_error(request, f"job {job.id} has no error (phase {job.phase})", 404)
            return send_error(request, job.error, 200)
        # parameters: the job document's parameter list
        xml = jobs.job_xml(job, self.service.base(request)).decode()
        start, end = xml.index("<uws:parameters>"), xml.index("</uws:parameters>") + len("</uws:parameters>")
        from gateway.tap.uws import UWS_NS
        request.setHeader(b"content-type", b"text/xml")
        return xml[start:end].replace("<uws:parameters>", f'<uws:parameters xmlns:uws="{UWS_NS}">', 1).encode()

    def render_POST(self, request):
        params, _ = read_params(request)
        values = single(params)
        jobs, job = self.service.jobs, self.job
        if self.name == "phase":
            if "phase" not in values:
                raise QueryError("POST to phase needs PHASE=RUN or PHASE=ABORT")
            apply_phase(jobs, job, values["phase"])
        elif self.name == "executionduration":
            if "executionduration" not in values:
                raise QueryError("POST to executionduration needs EXECUTIONDURATION=<seconds>")
            if job.phase != "PENDING":
                raise QueryError(f"job {job.id} is {job.phase}: its execution duration can no longer change")
            jobs.set_execution_duration(job, values["executionduration"])
        elif self.name == "destruction":
            if "destruction" not in values:
                raise QueryError("POST to destruction needs DESTRUCTION=<ISO 8601 date>")
            jobs.set_destruction(job, values["destruction"])
        elif self.name == "parameters":
            jobs.set_parameters(job, values)
        else:
            raise QueryError(f"{self.name} cannot be changed", 403)
        return redirect(request, f"{self.service.base(request)}/async/{job.id}")


class ResultsResource(TapResource):
    def __init__(self, service, job):
        super().__init__()
        self.service, self.job = service, job

    def getChild(self, path, request):
        if path == b"":
            return self
        if path != b"result":
            return ErrorResource(f"job {self.job.id} has no result named {path.decode('utf-8', 'replace')!r}", 404)
        if self.job.phase != "COMPLETED" or self.job.result_path is None:
            return ErrorResource(f"job {self.job.id} has no result: it is {self.job.phase}"
                                 + (f" ({self.job.error})" if self.job.error else ""), 404)
        from twisted.web.static import File

        f = File(self.job.result_path, defaultType=self.job.result_type)
        f.type = self.job.result_type
        f.encoding = None
        return f

    def render_GET(self, request):
        xml = self.service.jobs.job_xml(self.job, self.service.base(request)).decode()
        start, end = xml.index("<uws:results>"), xml.index("</uws:results>") + len("</uws:results>")
        from gateway.tap.uws import UWS_NS, XLINK_NS
        request.setHeader(b"content-type", b"text/xml")
        return xml[start:end].replace("<uws:results>", f'<uws:results xmlns:uws="{UWS_NS}" '
                                      f'xmlns:xlink="{XLINK_NS}">', 1).encode()


# -- VOSI -----------------------------------------------------------------------------------------------------------

class CapabilitiesResource(TapResource):
    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        s = self.service
        return send_xml(request, vosi.capabilities(s.base(request), s.runner.limits, s.jobs.retention))


class AvailabilityResource(TapResource):
    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        return send_xml(request, vosi.availability(True, "TAP service of the alert gateway is accepting queries"))


class TablesResource(TapResource):
    def __init__(self, service):
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
        return TableResource(meta)

    def render_GET(self, request):
        params, _ = read_params(request)
        detail = (first(params, "detail") or "max").lower() != "min"
        return send_xml(request, vosi.tableset(self.service.runner.catalog, detail))


class TableResource(TapResource):
    isLeaf = True

    def __init__(self, meta):
        super().__init__()
        self.meta = meta

    def render_GET(self, request):
        return send_xml(request, vosi.table(self.meta))


class ExamplesResource(TapResource):
    isLeaf = True

    def render_GET(self, request):
        return send_xml(request, vosi.examples(), b"application/xhtml+xml")


class RootResource(TapResource):
    def __init__(self, service):
        super().__init__()
        self.service = service
        self.putChild(b"sync", SyncResource(service))
        self.putChild(b"async", AsyncResource(service))
        self.putChild(b"capabilities", CapabilitiesResource(service))
        self.putChild(b"availability", AvailabilityResource(service))
        self.putChild(b"tables", TablesResource(service))
        self.putChild(b"examples", ExamplesResource())

    def getChildWithDefault(self, path, request):
        # the URL of this resource, for job links and redirects, as the client reached it
        request.tap_base = "/" + "/".join(p.decode("utf-8", "replace") for p in request.prepath[:-1])
        return super().getChildWithDefault(path, request)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (b"TAP 1.1 service of the alert gateway: /sync, /async, /capabilities, /availability, /tables. "
                b"ADQL: SELECT TOP 10 * FROM gateway.diasource\n")


# -- the service --------------------------------------------------------------------------------------------------

class TapService:
    """State shared by the resources: the runner, the job manager, the sync thread pool."""

    def __init__(self, database, reactor, base_url: Optional[str] = None, limits: Optional[Limits] = None,
                 workdir: Optional[str] = None, max_jobs: int = 1000, max_running: int = 2, sync_threads: int = 4,
                 retention: float = 24 * 3600, catalog: Optional[Catalog] = None, reap_interval: float = 10.0):
        self.reactor = reactor
        self.base_url = base_url.rstrip("/") if base_url else None
        self.runner = Runner(database, catalog, limits)
        self.jobs = JobManager(self.runner, reactor, workdir, max_jobs, max_running, retention, reap_interval)
        self.sync_pool = ThreadPool(1, sync_threads, name="tap-sync")
        self.sync_pool.start()
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def stop(self):
        self.jobs.stop()
        if self.sync_pool.started:
            self.sync_pool.stop()

    def base(self, request) -> str:
        if self.base_url:
            return self.base_url
        host = (request.getHeader(b"host") or b"localhost").decode("latin-1")
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}{getattr(request, 'tap_base', '/tap')}"


def tap_resource(database, reactor=None, base_url: Optional[str] = None, limits: Optional[Limits] = None,
                 **options) -> web_resource.Resource:
    """The /tap resource tree over ``database`` (gateway.store.db.Database). ``base_url``: the public URL of
    /tap (default: from each request's Host header). ``limits``: timeouts, MAXREC, upload limits.
    ``options``: workdir, max_jobs, max_running, sync_threads, retention (s), reap_interval (s). Mount in a Site made with
    ``parsePOSTFormSubmission=False``."""
    if reactor is None:
        from twisted.internet import reactor
    root = RootResource(TapService(database, reactor, base_url, limits, **options))
    return root
