"""Avro alerts in: schemas, container files, Confluent wire format, directories, Kafka.

Knows nothing about XML or sockets. Everything here yields :class:`Alert` records or raises
:class:`AlertError` naming the source, the position in it and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

SURVEYS = ("rubin", "ztf")


@dataclass(frozen=True, slots=True)
class Alert:
    """One decoded alert packet.

    ``record`` is the Avro record as fastavro returns it (cutouts included as bytes); ``schema`` is the
    schema version it was decoded with ("7.4" for Rubin, "3.3" for ZTF); ``source`` and ``position`` say
    where it came from (file name and record index, topic/partition and offset, ...).
    """

    survey: str
    schema: str
    record: dict[str, Any] = field(repr=False)
    source: str = ""
    position: Union[int, str] = 0
    simulated: bool = False


class AlertError(Exception):
    """A packet that could not be decoded or converted: says where it came from and why."""

    def __init__(self, source: str, position: Union[int, str, None], reason: str):
        self.source, self.position, self.reason = source, position, reason
        where = source if position is None else f"{source} @ {position}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # pickled by its fields (it crosses from worker processes), not by its message
        return (type(self), (self.source, self.position, self.reason))
