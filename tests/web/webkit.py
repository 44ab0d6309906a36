"""The web tests' alert DB: the bundled sample alerts stored on SQLite (a file) or PostgreSQL, and an HTTP site
over it on a loopback port of this test's reactor; blocking clients (pyvo, requests) run in a thread."""

from contextlib import contextmanager

from postgres import fresh_database
from twisted.internet import defer, reactor

from gateway.alerts.files import iter_inputs
from gateway.config import load
from gateway.convert import make_converter
from gateway.resources import SAMPLES
from gateway.store import Database, Store


def sample_events():
    convert = make_converter(load())
    return [convert(alert) for alert in iter_inputs([str(SAMPLES)]) if not isinstance(alert, Exception)]


EVENTS = sample_events()


@contextmanager
def database(backend: str, tmp_path):
    if backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'alerts.db'}", reactor)
        yield db
        db.stop()
    else:
        with fresh_database("gwweb") as url:
            db = Database(url, reactor)
            yield db
            db.stop()


@defer.inlineCallbacks
def stored(db, events=EVENTS):
    """A Store over ``db`` holding ``events``."""
    store = Store(db)
    yield defer.gatherResults([store.accept(e) for e in events])
    return store


def listen(resource):
    """(port, base URL) of ``resource`` served on 127.0.0.1."""
    from twisted.web import server

    site = server.Site(resource)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return port, f"http://127.0.0.1:{port.getHost().port}"
