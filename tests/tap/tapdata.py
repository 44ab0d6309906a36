"""Test data for the TAP tests: a deterministic alert DB with known positions, written with plain SQL."""

import random

from gateway.store.db import Database

#: a target list for the cross-match test: (name, ra, dec) of some diasource rows, plus one far from all
N_OBJECTS = 300
PER_OBJECT = 4


def object_position(i: int) -> tuple[float, float]:
    rng = random.Random(i)
    if i == 0:
        return 359.9995, 10.0  # straddles RA 0 for the wrap-around cone
    if i == 1:
        return 0.0004, 10.0
    return rng.uniform(0, 360), rng.uniform(-80, 80)


def rows():
    objects, sources, alerts = [], [], []
    sid = 1000
    for i in range(N_OBJECTS):
        ra, dec = object_position(i)
        oid = f"diaObject:{i}"
        objects.append((oid, "rubin", ra, dec, PER_OBJECT, 60000.0 + i, 60000.0 + i + PER_OBJECT, sid + PER_OBJECT,
                        f"ivo://test/rubin#{sid + PER_OBJECT}", None, "2026-11-30T00:00:00"))
        for k in range(PER_OBJECT):
            sid += 1
            # detections scatter ~0.1 arcsec about the object
            sources.append((sid, oid, "rubin", ra + (k - 1.5) * 1e-5, dec + (k - 1.5) * 1e-5, 1e-5, 1e-5,
                            60000.0 + i + k, "gri"[k % 3], 1000.0 + k, 10.0, 23.9 - k * 0.1, 0.01, 50.0, 0.9,
                            0, 0, None, sid))
            alerts.append((sid, f"ivo://test/rubin#{sid}", "rubin", "7.4", oid, sid, ra, dec, 60000.0 + i + k,
                           "2026-11-30T00:00:00.000", "test", 1))
    return objects, sources, alerts


def fill(url: str) -> Database:
    """Create the alert DB at ``url`` and fill it; returns the (stopped) Database for row counts."""
    database = Database(url)
    objects, sources, alerts = rows()

    def insert(conn, table, batch):
        marks = ", ".join([database.placeholder] * len(batch[0]))
        cur = conn.cursor()
        cur.executemany(f"INSERT INTO {database.table(table)} VALUES ({marks})", batch)

    def write(conn):
        insert(conn, "diaobject", objects)
        insert(conn, "diasource", sources)
        insert(conn, "alert", alerts)
    database.run_write(write)
    database.stop()
    return database
