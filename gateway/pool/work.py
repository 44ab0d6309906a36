"""What a worker process of the pool does: packets in, prepared Events out (decode, view, VOEvent, store rows).

Everything here is a pure function of the packet, so any worker may take any batch; what depends on the order
of arrival (Citations, duplicates) is left to the reactor process (:meth:`Pipeline.ingest_packet`). An Event
crosses back slim: its view without the raw records behind it, its alert with only the record fields that the
configured filters read (``raw_fields``), its store rows made here.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from typing import Optional, Union

from gateway.alerts import Alert, AlertError
from gateway.alerts.packets import Packet, close_blocks, decode_packet
from gateway.alerts.schemas import SchemaLibrary
from gateway.errors import in_words
from gateway.event import Event
from gateway.store.packs import CutoutPacks
from gateway.store.rows import alert_rows
from gateway.voevent.build import DEFAULT_AUTHOR_NAME, Converter
from gateway.voevent.history import MemoryHistory

#: raw record fields a Detection keeps when it crosses to the reactor process (TNS reports read the exposure time
#: and ZTF's limiting magnitude: alerts.fields.exposure_time, limiting_mag)
KEPT_EXTRA = ("exptime", "exposureTime", "diffmaglim")


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to build VOEvents as the reactor process would (picklable, plain values)."""

    authority: str
    stream: str
    public_url: str
    role: str = "auto"
    schema_registry: Optional[str] = None
    #: top-level alert record fields the configured filters read (``diaSource``, ``candidate``, ...): only these
    #: cross back with the event
    raw_fields: frozenset[str] = frozenset()
    #: keep the earlier detections and upper limits in the view (TNS reports read them); they cost more to send
    #: back than the rest of the event (~30 Detection objects), so only when a sink needs them
    light_curves: bool = False
    #: Who/Author of the VOEvents (config gateway.author_name, author_email)
    author_name: str = DEFAULT_AUTHOR_NAME
    author_email: str = ""
    #: the SQLite alert DB's pack directory: the worker writes the cutouts there itself (they are ~60 kB of an
    #: alert's ~80 kB) and only their locations cross back; "": they cross back (PostgreSQL keeps them in the DB)
    cutout_dir: str = ""


class Worker:
    """One worker's state: a converter whose history is never asked (Citations are added in the reactor process,
    by ``Converter.link``; the worker only calls ``prepare``)."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.converter = Converter(settings.authority, settings.stream, settings.public_url, role=settings.role,
                                   history=MemoryHistory(0), author_name=settings.author_name,
                                   author_email=settings.author_email)
        self.library = SchemaLibrary(registry_url=settings.schema_registry)
        self.packs = CutoutPacks(settings.cutout_dir) if settings.cutout_dir else None

    def build(self, packets: list[Packet]) -> list[list[Union[Event, AlertError]]]:
        """For each packet, its prepared Events and rejections, in order."""
        try:
            return [[self._prepare(item) for item in decode_packet(packet, self.library)] for packet in packets]
        finally:
            close_blocks()

    def _prepare(self, item: Union[Alert, AlertError]) -> Union[Event, AlertError]:
        if isinstance(item, AlertError):
            return item
        try:
            event = self.converter.prepare(item)
        except AlertError as error:
            return error
        except Exception as error:  # a converter bug must not stop the stream; the reactor process counts it
            return AlertError(item.source, item.position, f"conversion failed: {in_words(error)} (a gateway bug; please report it)")
        return slim(event, self.settings.raw_fields, self.settings.light_curves, self.packs)


def slim(event: Event, raw_fields: frozenset[str], light_curves: bool = False,
         packs: Optional[CutoutPacks] = None) -> Event:
    """``event`` with its store rows made, and without what need not cross a process boundary; with ``packs``, its
    cutouts written there (before the DB row that locates them is committed: a crash leaves bytes no row points at,
    never a row without its bytes)."""
    view = event.view
    rows = alert_rows(event, view)
    if packs is not None and rows.cutout:
        rows.cutout_pack, rows.cutout = packs.append(rows.cutout), []
    detection = view.detection and replace(view.detection, extra=_kept(view.detection.extra))
    if light_curves:
        previous, limits = tuple(replace(d, extra=_kept(d.extra)) for d in view.previous), view.upper_limits
    else:
        previous, limits = (), ()
    view = replace(view, detection=detection, previous=previous, upper_limits=limits, cutouts={})
    alert = event.alert
    record = {name: alert.record[name] for name in raw_fields if name in alert.record}
    return replace(event, view=view, alert=replace(alert, record=record), rows=rows)


def _kept(extra: dict) -> dict:
    return {key: extra[key] for key in KEPT_EXTRA if key in extra}


_worker: Optional[Worker] = None


def start(settings: WorkerSettings) -> None:
    """Process initializer of the pool."""
    global _worker
    # Ctrl-C reaches the whole process group: the reactor process stops the workers itself, in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = Worker(settings)


def build(packets: list[Packet]) -> list[list[Union[Event, AlertError]]]:
    """The pool's task: :meth:`Worker.build` in this worker process."""
    return _worker.build(packets)
