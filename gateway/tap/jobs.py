"""``/async``: UWS 1.1 over HTTP. The job list (GET with PHASE, AFTER, LAST filters; POST creates a job), each
job (GET with blocking WAIT; POST parameters, PHASE or ACTION=DELETE; DELETE), its properties and its result file.
The jobs themselves are kept by :class:`gateway.tap.uws.JobManager`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.web.server import NOT_DONE_YET
from twisted.web.static import File

from gateway.tap.query import QueryError
from gateway.tap.request import (
    ErrorResource,
    TapResource,
    first,
    read_params,
    redirect,
    resolve_uploads,
    send_error,
    send_xml,
    single,
)
from gateway.tap.uws import PHASES, UWS_NS, XLINK_NS, JobManager, iso, parse_iso

if TYPE_CHECKING:
    from gateway.tap.resource import TapService

#: seconds a blocking WAIT=-1 waits at most
MAX_WAIT = 60.0


def job_document_part(xml: str, name: str, namespaces: str) -> bytes:
    """The ``<uws:name>`` element of a job document as a document of its own (with its namespaces declared)."""
    start, end = xml.index(f"<uws:{name}>"), xml.index(f"</uws:{name}>") + len(f"</uws:{name}>")
    return xml[start:end].replace(f"<uws:{name}>", f"<uws:{name} {namespaces}>", 1).encode()


class AsyncResource(TapResource):
    def __init__(self, service: TapService):
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
    def __init__(self, service: TapService, job):
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
        return send_xml(request, job_document_part(xml, "parameters", f'xmlns:uws="{UWS_NS}"'))

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
        f = File(self.job.result_path, defaultType=self.job.result_type)
        f.type = self.job.result_type
        f.encoding = None
        return f

    def render_GET(self, request):
        xml = self.service.jobs.job_xml(self.job, self.service.base(request)).decode()
        return send_xml(request, job_document_part(xml, "results", f'xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}"'))
