"""UWS 1.1 jobs for TAP /async: phases, a bounded run queue, result files, destruction.

Jobs live in memory (nothing survives a restart, by design) with their result file in a work directory. At most
``max_running`` queries run at once, each in a thread of the job pool; further jobs wait in phase QUEUED; at most
``max_jobs`` exist at all (creating more is refused with a message). Each job is deleted at its destruction
time by a timer of the injected reactor, so tests drive time with a Clock.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Optional
from xml.sax.saxutils import escape, quoteattr

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from gateway import times
from gateway.tap.query import Cancel, QueryError, QuerySpec, Runner
from gateway.times import optional_iso

log = Logger()

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED", "UNKNOWN", "HELD", "SUSPENDED",
          "ARCHIVED")
ACTIVE = ("PENDING", "QUEUED", "EXECUTING")


def iso(t: Optional[float]) -> Optional[str]:
    """UNIX time -> ISO 8601 UTC with a trailing Z (pyvo needs the Z)."""
    return optional_iso(t)


def parse_iso(text: str) -> float:
    """ISO 8601 (Z, offset, or naive = UTC) -> UNIX time; ValueError with a message otherwise."""
    return times.parse_iso(text).timestamp()


@dataclass
class Job:
    id: str
    parameters: dict[str, str]  # lower-case names
    uploads: dict[str, bytes]
    creation: float
    destruction: float
    execution_duration: float
    phase: str = "PENDING"
    run_id: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    error: Optional[str] = None
    result_path: Optional[str] = None
    result_type: Optional[str] = None
    rows: Optional[int] = None
    cancel: Cancel = field(default_factory=Cancel)
    waiters: list = field(default_factory=list)
    #: the reactor's DelayedCall that deletes the job at its destruction time
    destroyer: object = None


class FileSink:
    """Where an async job's result goes: a file in the job's directory."""

    def __init__(self, path: str):
        self.path = path
        self.content_type = None
        self._file = None

    def start(self, content_type: str) -> None:
        self.content_type = content_type
        self._file = open(self.path, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def finish(self) -> None:
        self._file.close()


class JobManager:
    """The async jobs of one TAP service; limits from ``runner.settings``, time from ``reactor``."""

    def __init__(self, runner: Runner, reactor, workdir: Optional[str] = None):
        self.runner = runner
        self.settings = runner.settings
        self.reactor = reactor
        self._own_workdir = workdir is None  # a temporary directory of ours is removed at stop
        self.workdir = workdir or tempfile.mkdtemp(prefix="gateway-tap-")
        os.makedirs(self.workdir, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._slots = defer.DeferredSemaphore(self.settings.max_running)
        self._pool = ThreadPool(1, self.settings.max_running, name="tap-async")
        self._started = False

    def start(self):
        if not self._started:
            self._started = True
            self._pool.start()
            self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)

    def stop(self):
        if self._started:
            self._started = False
            for job in self.jobs.values():
                job.cancel.cancel()
                self._forget_destruction(job)
            self._pool.stop()
            for job_id in list(self.jobs):  # results do not outlive the process
                shutil.rmtree(os.path.join(self.workdir, job_id), ignore_errors=True)
            self.jobs.clear()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def now(self) -> float:
        return self.reactor.seconds()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def create(self, parameters: dict[str, str], uploads: dict[str, bytes]) -> Job:
        self.start()
        if len(self.jobs) >= self.settings.max_jobs:
            raise QueryError(f"this service holds at most {self.settings.max_jobs} async jobs and has that many; "
                             "delete finished jobs (DELETE /tap/async/<id>) or try again later", status=503)
        job_id = secrets.token_hex(8)
        now = self.now()
        job = Job(job_id, {}, dict(uploads), now, now + self.settings.retention, self.settings.async_timeout,
                  run_id=None)
        self.set_parameters(job, parameters)
        self.jobs[job_id] = job
        self._schedule_destruction(job)
        return job

    def set_parameters(self, job: Job, parameters: dict[str, str]) -> None:
        if job.phase != "PENDING":
            raise QueryError(f"job {job.id} is {job.phase}: parameters can only change while it is PENDING",
                             status=400)
        for name, value in parameters.items():
            name = name.lower()
            if name == "runid":
                job.run_id = value
            elif name == "executionduration":
                self.set_execution_duration(job, value)
            elif name == "destruction":
                self.set_destruction(job, value)
            elif name not in ("phase", "action"):
                job.parameters[name] = value

    def set_execution_duration(self, job: Job, value: str) -> None:
        try:
            seconds = float(value)
        except ValueError:
            raise QueryError(f"EXECUTIONDURATION must be a number of seconds, not {value!r}") from None
        limit = self.settings.max_async_timeout
        job.execution_duration = limit if seconds <= 0 else min(seconds, limit)

    def set_destruction(self, job: Job, value: str) -> None:
        try:
            when = parse_iso(value)
        except ValueError as e:
            raise QueryError(f"DESTRUCTION: {e}") from None
        job.destruction = min(when, self.now() + self.settings.retention)  # never later than the retention period
        self._schedule_destruction(job)

    def _schedule_destruction(self, job: Job) -> None:
        if job.id not in self.jobs:
            return  # a job being created: scheduled once it is listed
        self._forget_destruction(job)
        job.destroyer = self.reactor.callLater(max(0.0, job.destruction - self.now()), self.delete, job.id)

    @staticmethod
    def _forget_destruction(job: Job) -> None:
        if job.destroyer is not None and job.destroyer.active():
            job.destroyer.cancel()
        job.destroyer = None

    def run(self, job: Job) -> None:
        if job.phase != "PENDING":
            return  # RUN on a job that already ran is a no-op, as UWS allows
        self._set_phase(job, "QUEUED")
        self._slots.run(self._execute, job).addErrback(lambda f: log.failure("async job {id}", f, id=job.id))

    def abort(self, job: Job) -> None:
        if job.phase in ("PENDING", "QUEUED"):
            job.end = self.now()
            self._set_phase(job, "ABORTED")
        elif job.phase == "EXECUTING":
            job.cancel.cancel()  # the thread ends, then the phase becomes ABORTED

    def delete(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.cancel.cancel()
        self._forget_destruction(job)
        if job.phase in ACTIVE:
            job.end = self.now()
            self._set_phase(job, "ABORTED")
        shutil.rmtree(os.path.join(self.workdir, job.id), ignore_errors=True)

    def wait(self, job: Job, seconds: float) -> defer.Deferred:
        """Fires when the job's phase changes or after ``seconds`` (UWS blocking WAIT)."""
        d = defer.Deferred()
        if job.phase not in ACTIVE or seconds == 0:
            d.callback(None)
            return d
        job.waiters.append(d)

        def timeout():
            if d in job.waiters:
                job.waiters.remove(d)
                d.callback(None)
        call = self.reactor.callLater(seconds, timeout)
        d.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return d

    def _set_phase(self, job: Job, phase: str) -> None:
        job.phase = phase
        waiters, job.waiters = job.waiters, []
        for d in waiters:
            d.callback(None)

    @defer.inlineCallbacks
    def _execute(self, job: Job):
        if job.phase != "QUEUED" or job.id not in self.jobs:
            return
        job.start = self.now()
        self._set_phase(job, "EXECUTING")
        directory = os.path.join(self.workdir, job.id)
        os.makedirs(directory, exist_ok=True)
        sink = FileSink(os.path.join(directory, "result"))
        spec = QuerySpec(job.parameters.get("query", ""), job.parameters.get("responseformat")
                         or job.parameters.get("format"), None, job.uploads)
        try:
            spec.maxrec = self.runner.parse_maxrec(job.parameters.get("maxrec"))
            check_lang(job.parameters)
            rows = yield threads.deferToThreadPool(self.reactor, self._pool, self.runner.run, spec, sink,
                                                   job.cancel, job.execution_duration)
        except QueryError as e:
            job.end = self.now()
            job.error = e.message
            self._set_phase(job, "ABORTED" if job.cancel.cancelled else "ERROR")
            return
        except Exception as e:  # noqa: BLE001 - a job must end in a phase, whatever happened
            log.failure("async job {id} failed", id=job.id)
            job.end = self.now()
            job.error = f"internal error: {type(e).__name__}: {e}"
            self._set_phase(job, "ERROR")
            return
        job.end = self.now()
        job.rows = rows
        if job.cancel.cancelled:
            self._set_phase(job, "ABORTED")
            return
        job.result_path, job.result_type = sink.path, sink.content_type
        self._set_phase(job, "COMPLETED")

    # -- documents -------------------------------------------------------------------------------------------

    def job_xml(self, job: Job, base: str) -> bytes:
        def element(name, value):
            if value is None:
                return f'<uws:{name} xsi:nil="true"/>'
            return f"<uws:{name}>{escape(str(value))}</uws:{name}>"

        parts = [f'<uws:job xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" xmlns:xsi="{XSI_NS}" version="1.1">',
                 element("jobId", job.id)]
        if job.run_id is not None:
            parts.append(element("runId", job.run_id))
        parts += [element("ownerId", None), element("phase", job.phase), element("quote", None),
                  element("creationTime", iso(job.creation)), element("startTime", iso(job.start)),
                  element("endTime", iso(job.end)), element("executionDuration", int(job.execution_duration)),
                  element("destruction", iso(job.destruction)), "<uws:parameters>"]
        for name, value in sorted(job.parameters.items()):
            parts.append(f"<uws:parameter id={quoteattr(name)}>{escape(value)}</uws:parameter>")
        parts.append("</uws:parameters><uws:results>")
        if job.phase == "COMPLETED":
            href = f"{base}/async/{job.id}/results/result"
            parts.append(f'<uws:result id="result" xlink:type="simple" xlink:href={quoteattr(href)} '
                         f'mime-type={quoteattr(job.result_type or "")}/>')
        parts.append("</uws:results>")
        if job.error is not None:
            parts.append(f'<uws:errorSummary type="fatal" hasDetail="true"><uws:message>{escape(job.error)}'
                         "</uws:message></uws:errorSummary>")
        parts.append("</uws:job>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n' + "".join(parts) + "\n").encode("utf-8")

    def list_xml(self, base: str, phases: list[str], after: Optional[float], last: Optional[int]) -> bytes:
        jobs = sorted(self.jobs.values(), key=lambda j: j.creation)
        if phases:
            jobs = [j for j in jobs if j.phase in phases]
        else:
            jobs = [j for j in jobs if j.phase != "ARCHIVED"]
        if after is not None:
            jobs = [j for j in jobs if j.creation > after]
        if last is not None:
            jobs = sorted(jobs, key=lambda j: j.creation, reverse=True)[:last]
        parts = [f'<uws:jobs xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" xmlns:xsi="{XSI_NS}" version="1.1">']
        for j in jobs:
            href = f"{base}/async/{j.id}"
            parts.append(f'<uws:jobref id="{j.id}" xlink:type="simple" xlink:href={quoteattr(href)}>'
                         f"<uws:phase>{j.phase}</uws:phase>"
                         + (f"<uws:runId>{escape(j.run_id)}</uws:runId>" if j.run_id is not None else "")
                         + f"<uws:creationTime>{iso(j.creation)}</uws:creationTime></uws:jobref>")
        parts.append("</uws:jobs>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n' + "".join(parts) + "\n").encode("utf-8")


def check_lang(parameters: dict[str, str]) -> None:
    lang = parameters.get("lang")
    if lang is None:
        raise QueryError("LANG is missing: use LANG=ADQL")
    if lang.strip().upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        raise QueryError(f"LANG={lang!r} is not supported: use LANG=ADQL")
    request = parameters.get("request")
    if request is not None and request.strip().lower() != "doquery":
        raise QueryError(f"REQUEST={request!r} is not supported: use REQUEST=doQuery (or leave it out)")
    if not parameters.get("query", "").strip():
        raise QueryError("QUERY is missing: give an ADQL SELECT statement")
