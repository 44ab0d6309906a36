"""The converter's Citations history, persisted through the alert DB."""

from __future__ import annotations

from gateway.store.db import Database
from gateway.store.schema import SCHEMA
from gateway.voevent.history import MemoryHistory


class StoreHistory(MemoryHistory):
    """The converter's History (``previous``/``remember``), from memory, persisted through the store.

    ``previous`` is called on the reactor for every alert, so it never touches the DB: the most recent
    ``max_objects`` objects are loaded at start from ``diaobject.last_ivorn``, and every alert converted since is
    remembered in memory (the store writes the same IVORN to ``diaobject.last_ivorn``).
    """

    def load(self, database: Database) -> int:
        """Blocking: fill from the DB (call before the reactor runs, or in a thread). Returns objects loaded."""
        conn = database.reader()
        try:
            rows = conn.execute(f"SELECT objectid, last_ivorn FROM {SCHEMA}.diaobject WHERE last_ivorn IS NOT NULL "
                                f"ORDER BY updated DESC LIMIT {int(self.max_objects)}").fetchall()
        finally:
            conn.close()
        for key, ivorn in reversed(rows):  # oldest first, so the newest end up most recently used
            self.remember(key, ivorn)
        return len(rows)
