"""Cutout bytes beside the alert DB: append-only pack files, and the DB row that says where each cutout is.

A Rubin alert carries three FITS stamps (~60 kB together, ten times the rest of its rows). Written as BLOBs they
went through SQLite's WAL and again at each checkpoint, a third of every alert's write; appended to a pack file
they are one sequential write per batch. With a worker pool the workers append them (each to packs of its own), so
the stamps never cross back to the reactor process; the DB's writer appends those of alerts built in-process. The
``cutout_pack`` table (alertid, kind, pack, offset, length) is written in the same transaction as the alert's other
rows, after the bytes are in the pack:

- a crash before the commit leaves bytes no row points at (space, never a wrong cutout);
- like the DB's own WAL commits (``synchronous=NORMAL``), a pack survives a process crash at once and a power loss
  once the system has flushed it; a row whose bytes a power loss took is served as "missing", never as other bytes.

Where: beside a SQLite DB file (``PATH.cutouts/``) unless ``store.cutouts`` names a directory; PostgreSQL keeps
cutouts in the DB (every gateway process of a consumer group reaches them there) unless ``store.cutouts`` names
one, which all those processes must then reach (a shared filesystem; pack names never collide, see
:meth:`CutoutPacks._open_next`).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Optional

from gateway.store.schema import SCHEMA

#: a pack is closed and the next one begun past this size
PACK_BYTES = 1 << 30
_NAME = re.compile(r"^cutouts-(\d{6})\.pack$")
#: buffers per writev call (the system's IOV_MAX is at least 1024)
_IOV = 512


def read_located(conn, packs: Optional["CutoutPacks"], marker: str, alert_id: int, kind: str) -> Optional[bytes]:
    """The bytes of one cutout on a reader connection (either backend; ``marker``: its parameter marker): from the
    ``cutout`` table, else from the pack ``cutout_pack`` points at (None: the alert has no such cutout)."""
    where = (alert_id, kind)
    row = conn.execute(f"SELECT content FROM {SCHEMA}.cutout WHERE alertid = {marker} AND kind = {marker}",
                       where).fetchone()
    if row is not None:  # in the DB: a DB in memory, a PostgreSQL DB without packs, or written before packs
        return bytes(row[0])
    row = conn.execute(f"SELECT pack, byte_offset, byte_length FROM {SCHEMA}.cutout_pack "
                       f"WHERE alertid = {marker} AND kind = {marker}", where).fetchone()
    if row is None or packs is None:
        return None
    return packs.read(*row)


class PackError(ValueError):
    """A cutout the DB points at cannot be read from its pack (a name that is no pack, bytes missing)."""


class CutoutPacks:
    """The pack files in ``directory``; ``append`` runs in the DB's writer thread, ``read`` in any reader thread."""

    def __init__(self, directory: str | Path, pack_bytes: int = PACK_BYTES):
        self.directory = Path(directory)
        self.pack_bytes = pack_bytes
        self._lock = threading.Lock()
        self._fd = None
        self._name = ""
        self._size = 0

    def check(self) -> None:
        """Make the directory if need be; PackError if this process cannot write packs there."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PackError(f"cannot make the cutout directory {self.directory}: {error.strerror}") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise PackError(f"cannot write cutout packs in {self.directory}: permission denied")

    def append(self, cutouts: list[tuple]) -> list[tuple]:
        """Write the bytes of ``cutouts`` ((alertid, kind, content) rows) at the end of the current pack; the
        rows of ``cutout_pack`` that locate them: (alertid, kind, pack, offset, length)."""
        if not cutouts:
            return []
        with self._lock:
            if self._fd is None or self._size >= self.pack_bytes:
                self._open_next()
            located, offset = [], self._size
            for alert_id, kind, content in cutouts:
                located.append((alert_id, kind, self._name, offset, len(content)))
                offset += len(content)
            buffers = [content for _, _, content in cutouts]
            for start in range(0, len(buffers), _IOV):
                chunk = buffers[start:start + _IOV]
                written = os.writev(self._fd, chunk)
                expected = sum(len(b) for b in chunk)
                if written != expected:  # a short write (disk full): finish it or fail the batch
                    rest = b"".join(chunk)[written:]
                    while rest:
                        rest = rest[os.write(self._fd, rest):]
            self._size = offset
            return located

    def read(self, pack: str, offset: int, length: int) -> bytes:
        if not _NAME.match(pack or ""):
            raise PackError(f"{pack!r} is not a cutout pack name")
        try:
            with open(self.directory / pack, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
        except FileNotFoundError:
            raise PackError(f"cutout pack {pack} is missing from {self.directory}") from None
        if len(data) != length:
            raise PackError(f"cutout pack {pack} ends before the cutout at byte {offset} (lost in a crash?)")
        return data

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open_next(self) -> None:
        # a new pack of its own, never one another writer may have open: the DB's writer thread and each worker
        # process append to packs side by side, and an offset is only right in a file one writer appends to
        if self._fd is not None:
            os.close(self._fd)
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for m in map(_NAME.match, os.listdir(self.directory)) if m]
        number = max(numbers, default=0)
        while True:
            number += 1
            path = self.directory / f"cutouts-{number:06d}.pack"
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                break
            except FileExistsError:  # another writer took this number first
                continue
        self._name = path.name
        self._size = 0
