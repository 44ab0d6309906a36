"""``/health`` (liveness: the reactor answers) and ``/ready`` (the alert DB answers a query and every source is
attached) for orchestrators: 200 or 503, with one line per problem a person can act on."""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.web import resource, server

from gateway.store.schema import SCHEMA
from gateway.web.common import Reply, text_response

#: a DB that does not answer ``SELECT 1`` within this many seconds is not ready
DB_TIMEOUT = 5.0


class Health(resource.Resource):
    """GET /health: 200 "ok" whenever the reactor can answer at all."""

    isLeaf = True

    def render_GET(self, request):
        return text_response(request, 200, "ok")


def source_problems(sources) -> list[str]:
    """Why each source that is not attached is not: a stopped service; a Kafka consumer with no partitions."""
    problems = []
    for source in sources:
        name = getattr(source, "name", None) or type(source).__name__
        if not source.running:
            problems.append(f"source {name} is not running")
        elif hasattr(source, "assignment") and not source.assignment:
            problems.append(f"source {name} ({', '.join(source.topics)}) has no Kafka partitions assigned yet")
    return problems


class Ready(resource.Resource):
    """GET /ready: 200 "ready" once the alert DB answers and the sources are attached, else 503 and why."""

    isLeaf = True

    def __init__(self, database, sources, clock):
        super().__init__()
        self.database, self.sources, self.clock = database, sources, clock

    def _probe(self) -> None:
        """A thread: a new connection and a read of a table (a cached connection, or ``SELECT 1``, would not notice
        a database that has gone)."""
        conn = self.database.reader(DB_TIMEOUT)
        try:
            conn.execute(f"SELECT 1 FROM {SCHEMA}.voevent LIMIT 1").fetchall()
        finally:
            conn.close()

    def render_GET(self, request):
        reply = Reply(request)
        probe = threads.deferToThreadPool(self.clock, self.clock.getThreadPool(), self._probe)
        timer = self.clock.callLater(DB_TIMEOUT, probe.cancel)

        def db_answered(_):
            if timer.active():
                timer.cancel()
            return []

        def db_failed(failure):
            if timer.active():
                timer.cancel()
            if failure.check(defer.CancelledError):
                return [f"the alert DB did not answer within {DB_TIMEOUT:g} s"]
            why = failure.getErrorMessage().strip().splitlines()
            return [f"the alert DB cannot be read: {why[0] if why else type(failure.value).__name__}"]

        def answer(problems):
            problems = problems + source_problems(self.sources)
            body = text_response(request, 503, "not ready: " + "; ".join(problems)) if problems else \
                text_response(request, 200, "ready")
            reply.send(body)

        probe.addCallbacks(db_answered, db_failed).addCallback(answer)
        return server.NOT_DONE_YET
