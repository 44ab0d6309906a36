"""A fresh PostgreSQL database per test module, on the machine's server (127.0.0.1:5432, trust auth).

Where no server answers, the tests skip loudly, except under CI=true, where they fail (support.skip_or_fail).
"""

import os
import uuid
from contextlib import contextmanager

from support import skip_or_fail

SERVER = os.environ.get("GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def fresh_database(prefix: str = "gw"):
    """Yields the URL of a new, empty database with the q3c extension available; drops it afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means "no PostgreSQL here"
        skip_or_fail(f"PostgreSQL at {SERVER} does not answer: {e}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(f"{SERVER}/{name}", autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS q3c")
            except psycopg.Error as e:
                skip_or_fail(f"the q3c extension is not installed (apt-get install postgresql-15-q3c): {e}")
        yield f"{SERVER}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
