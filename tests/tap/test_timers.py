"""The TAP service's timers on a Clock: a stalled sync client is dropped, async jobs are deleted at their
destruction time, and a blocking WAIT ends at its time limit, without sleeping."""

from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from gateway.tap.query import Cancel, Runner
from gateway.tap.settings import TapSettings
from gateway.tap.sync import RequestSink
from gateway.tap.uws import JobManager, iso

STALL = 300.0


class ThreadlessClock(MemoryReactorClock):
    """A Clock whose callFromThread runs the call at once (these tests have no worker thread)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class FakeTransport:
    aborted = False

    def abortConnection(self):
        self.aborted = True


class FakeRequest:
    def __init__(self):
        self.finished = defer.Deferred()
        self.channel = SimpleNamespace(transport=FakeTransport())
        self.producer = None
        self.done = False

    def notifyFinish(self):
        return self.finished

    def setResponseCode(self, code):
        self.code = code

    def setHeader(self, name, value):
        pass

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def finish(self):
        self.done = True


def sink_on_clock():
    clock, request, cancel = ThreadlessClock(), FakeRequest(), Cancel()
    return clock, request, cancel, RequestSink(request, clock, cancel, STALL)


def test_client_paused_for_the_stall_timeout_is_dropped():
    clock, request, cancel, sink = sink_on_clock()
    sink.start("text/csv")
    sink.pauseProducing()
    clock.advance(STALL - 1)
    assert not request.channel.transport.aborted and not cancel.cancelled
    clock.advance(1)
    assert request.channel.transport.aborted
    assert cancel.cancelled and sink.gone


def test_reading_again_restarts_the_stall_timer():
    clock, request, cancel, sink = sink_on_clock()
    sink.pauseProducing()
    clock.advance(STALL - 1)
    sink.resumeProducing()
    sink.pauseProducing()
    clock.advance(STALL - 1)
    assert not request.channel.transport.aborted and not cancel.cancelled
    clock.advance(1)
    assert request.channel.transport.aborted


def test_a_finished_response_is_not_dropped_later():
    clock, request, cancel, sink = sink_on_clock()
    sink.start("text/csv")
    sink.pauseProducing()  # the last bytes wait in the transport
    sink.finish()
    assert request.done and request.producer is None
    clock.advance(2 * STALL)
    assert not request.channel.transport.aborted and not cancel.cancelled
    assert clock.getDelayedCalls() == []


def job_manager(clock, **settings):
    runner = Runner(SimpleNamespace(kind="sqlite"), TapSettings(**settings))
    return JobManager(runner, clock)


def test_jobs_are_deleted_at_their_destruction_time():
    clock = MemoryReactorClock()
    jobs = job_manager(clock, retention=100.0)
    try:
        kept = jobs.create({"lang": "ADQL", "query": "SELECT 1"}, {})
        early = jobs.create({"lang": "ADQL", "query": "SELECT 2"}, {})
        jobs.set_destruction(early, iso(30.0))
        clock.advance(29.9)
        assert set(jobs.jobs) == {kept.id, early.id}
        clock.advance(0.1)
        assert set(jobs.jobs) == {kept.id} and early.phase == "ABORTED"
        clock.advance(69.9)
        assert set(jobs.jobs) == {kept.id}
        clock.advance(0.1)
        assert jobs.jobs == {} and kept.phase == "ABORTED"
        assert clock.getDelayedCalls() == []
    finally:
        jobs.stop()


def test_later_destruction_asked_for_is_capped_at_the_retention_period():
    clock = MemoryReactorClock()
    jobs = job_manager(clock, retention=100.0)
    try:
        job = jobs.create({"lang": "ADQL", "query": "SELECT 1", "destruction": iso(1000.0)}, {})
        assert job.destruction == 100.0
        clock.advance(100.0)
        assert jobs.jobs == {}
    finally:
        jobs.stop()


def test_deleted_job_leaves_no_timer():
    clock = MemoryReactorClock()
    jobs = job_manager(clock)
    try:
        job = jobs.create({"lang": "ADQL", "query": "SELECT 1"}, {})
        jobs.delete(job.id)
        assert clock.getDelayedCalls() == []
    finally:
        jobs.stop()


def test_blocking_wait_ends_at_its_time_limit_or_at_a_phase_change():
    clock = MemoryReactorClock()
    jobs = job_manager(clock)
    try:
        job = jobs.create({"lang": "ADQL", "query": "SELECT 1"}, {})
        waited = jobs.wait(job, 10.0)
        clock.advance(9.9)
        assert not waited.called
        clock.advance(0.1)
        assert waited.called and job.phase == "PENDING"
        waited = jobs.wait(job, 10.0)
        jobs.abort(job)
        assert waited.called and job.phase == "ABORTED"
    finally:
        jobs.stop()
