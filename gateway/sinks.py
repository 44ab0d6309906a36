"""Small sinks that belong to no bigger concern: write each event to a directory."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import threads

from gateway.event import Event


def file_name(event: Event) -> str:
    """The whole IVORN but its ``ivo://``, made safe for a file system (``ivo://example.org/gateway/rubin#123`` ->
    ``example.org_gateway_rubin_123.xml``): Rubin, ZTF and every author's events may share a localID, so the
    localID alone would let one overwrite another. As Comet names the events it saves, by the whole IVORN."""
    name = event.ivorn.removeprefix("ivo://")
    return "".join(c if c.isalnum() or c in "-.+=" else "_" for c in name) + ".xml"


class DirectorySink:
    """Writes every event as ``<directory>/<IVORN>.xml`` (:func:`file_name`; atomically: write, then rename), off
    the reactor."""

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
