"""Small sinks that belong to no bigger concern: write each event to a directory."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import threads

from gateway.event import Event


def file_name(event: Event) -> str:
    """``<localID>.xml``: the IVORN's part after '#', made safe for a file system."""
    local = event.ivorn.rpartition("#")[2] or event.ivorn
    return "".join(c if c.isalnum() or c in "-_.+=" else "_" for c in local) + ".xml"


class DirectorySink:
    """Writes every event as ``<directory>/<localID>.xml`` (atomically: write, then rename), off the reactor."""

    def __init__(self, directory: os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _write(self, event: Event) -> None:
        target = self.directory / file_name(event)
        partial = target.with_suffix(".xml.part")
        partial.write_bytes(event.xml)
        partial.replace(target)

    def accept(self, event: Event):
        return threads.deferToThread(self._write, event)
