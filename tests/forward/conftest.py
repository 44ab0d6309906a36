"""Fixtures of the forward tests: a store Database (SQLite file per test; PostgreSQL where it answers)."""

import pytest

from gateway.store.db import Database


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/gateway.db")
    yield db
    db.stop()


@pytest.fixture(scope="module")
def pg_url():
    """A fresh PostgreSQL database for this module, dropped afterwards; skips loudly without a server."""
    import uuid

    from support import skip_or_fail

    try:
        import psycopg
    except ImportError:
        skip_or_fail("psycopg is not installed")
    name = f"gw_forward_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        skip_or_fail(f"PostgreSQL on 127.0.0.1:5432 does not answer: {error}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
