"""The store tests' alert DB: each test runs on SQLite (a file) and on PostgreSQL (where it answers)."""

import pytest
from postgres import fresh_database
from twisted.internet import reactor

from gateway.store import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'alerts.db'}", reactor)
        yield db
        db.stop()
    else:
        with fresh_database("gwstore") as url:
            db = Database(url, reactor)
            yield db
            db.stop()
