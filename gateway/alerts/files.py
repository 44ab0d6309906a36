"""Alerts from files: Avro container files and directories of them, once each, across restarts.

:func:`iter_inputs` is the plain iterator (``vogateway convert``); :class:`DirectorySource` is the service
(``vogateway serve``): it feeds every alert to the pipeline without freezing the reactor, keeps a bounded number
of alerts in flight, and marks a file finished (in ``<state_dir>/files-done.jsonl``, keyed by absolute path,
size and modification time) only once every alert of it has been handled downstream, so a restart does not redo
finished files, and a file whose alerts could not all be delivered is read again.

In a directory, hidden files (".*") and documentation beside the data (``README*``, ``manifest.json``) are
skipped; any other file that is not an Avro container is reported as rejected.

Simulated data: a ``manifest.json`` in the file's folder or any folder above it may list simulated files
(``{"simulated": ["sub/dir/", "file.avro"]}``, paths relative to the manifest; a trailing "/" covers a whole
folder). Alerts from those files get ``simulated=True`` unless the caller says otherwise.
"""

from __future__ import annotations

import json
import os
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.alerts import Alert, AlertError
from gateway.alerts.decode import CONTAINER_MAGIC
from gateway.alerts.packets import Packet, container_packets, read_file

log = Logger()

MANIFEST = "manifest.json"
CHECKPOINTS = "files-done.jsonl"


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.startswith("README") or name == MANIFEST


def _files(path: Path, not_avro: Optional[list] = None) -> list[Path]:
    """The files of one input: itself, or the Avro files below a directory, sorted.

    In a directory, a file that does not start like an Avro container (notes, a README, a stray download) is left
    out and appended to ``not_avro``; a file named explicitly is always read (and rejected if it is not Avro).
    """
    if not path.is_dir():
        return [path]
    found = []
    for p in sorted(path.rglob("*")):
        if not p.is_file() or _skipped(p) or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        if _looks_like_avro(p):
            found.append(p)
        elif not_avro is not None:
            not_avro.append(p)
    return found


def _looks_like_avro(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError:
        return True  # unreadable: read it, and say so as a rejection
    return start == CONTAINER_MAGIC or len(start) < 4  # a file still being written: not ours to judge yet


@lru_cache(maxsize=256)
def _manifest(folder: Path) -> Optional[tuple[str, ...]]:
    candidate = folder / MANIFEST
    try:
        with open(candidate, encoding="utf-8") as handle:
            listed = json.load(handle).get("simulated", [])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as error:
        log.warn("ignoring unreadable {path}: {error}", path=str(candidate), error=error)
        return None
    return tuple(str(entry) for entry in listed)


def is_simulated(path: Union[str, Path]) -> bool:
    """True when a ``manifest.json`` above ``path`` lists it (or a folder holding it) as simulated."""
    path = Path(path).resolve()
    for folder in path.parents:
        listed = _manifest(folder)
        if listed is None:
            continue
        relative = path.relative_to(folder).as_posix()
        return any(relative == entry or (entry.endswith("/") and relative.startswith(entry)) for entry in listed)
    return False


def iter_inputs(paths: Iterable[Union[str, Path]], simulated: Optional[bool] = None,
                not_avro: Optional[list] = None) -> Iterator[Union[Alert, AlertError]]:
    """Every alert of every file and directory in ``paths``, in order, and an AlertError for each problem.

    ``simulated``: force the flag on every alert; None: take it from a manifest.json (see module doc).
    ``not_avro``: receives the files of directories that were left out as not Avro.
    """
    for name in paths:
        path = Path(name)
        if not path.exists():
            yield AlertError(str(path), None, "no such file or directory")
            continue
        for file in _files(path, not_avro):
            flag = is_simulated(file) if simulated is None else simulated
            yield from read_file(file, str(file), flag)


def _signature(path: Path) -> Optional[tuple[int, int]]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class Checkpoints:
    """Files started and finished, as an append-only JSON-lines log, last line of a path wins:
    {"path", "started": true} when its reading begins, {"path", "size", "mtime_ns"} when it is finished.

    Appending keeps marking a file O(1) however many files were done before; the log is compacted on load.
    A file started and not finished was cut short by a crash: it is read again, and what the store committed
    of it then is not broadcast again (:meth:`started`). A damaged line (a crash mid-write) is skipped: at worst
    that file is read again, and the dedup drops the repeats.
    """

    def __init__(self, state_dir: Union[str, Path]):
        self.path = Path(state_dir) / CHECKPOINTS
        self._done: dict[str, tuple[int, int]] = {}
        self._started: set[str] = set()  # started, not finished since
        lines = 0
        try:
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    lines += 1
                    try:
                        self._load(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        log.warn("{path}: skipping a damaged checkpoint line", path=str(self.path))
        except FileNotFoundError:
            pass
        if lines > 2 * (len(self._done) + len(self._started)) + 100:
            self._rewrite()

    def _load(self, entry: dict) -> None:
        path = entry["path"]
        if entry.get("started") is True:
            self._started.add(path)
        else:
            self._done[path] = (entry["size"], entry["mtime_ns"])
            self._started.discard(path)

    def done(self, path: Path, signature) -> bool:
        return self._done.get(str(path)) == tuple(signature)

    def started(self, path: Path) -> bool:
        """Was reading ``path`` begun, and not finished since (a crash, or alerts that failed downstream)?"""
        return str(path) in self._started

    def mark_started(self, path: Path) -> None:
        if str(path) in self._started:
            return
        self._started.add(str(path))
        self._append(json.dumps({"path": str(path), "started": True}) + "\n")

    def finished(self) -> dict[str, tuple[int, int]]:
        """Absolute path -> (size, mtime_ns) of every finished file."""
        return dict(self._done)

    def mark(self, path: Path, signature) -> None:
        self._done[str(path)] = tuple(signature)
        self._started.discard(str(path))
        self._append(self._line(str(path), signature))

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)

    @staticmethod
    def _line(path: str, signature) -> str:
        return json.dumps({"path": path, "size": signature[0], "mtime_ns": signature[1]}) + "\n"

    def _rewrite(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(self._line(path, signature) for path, signature in self._done.items())
            handle.writelines(json.dumps({"path": path, "started": True}) + "\n" for path in sorted(self._started))
        os.replace(temporary, self.path)


#: alerts in flight from files: decoded here (no worker pool), and built in a worker pool. The visit bench (10,000
#: rich alerts, 2 workers, SQLite) took 12.9-14.5 s with 200 in flight and 10.5-11.7 s with 800 (1,600: the
#: same as 800, 20 MB more), the workers being idle half the time with 200
IN_FLIGHT, IN_FLIGHT_POOLED = 200, 800


class DirectorySource(Service):
    """Reads Avro files and directories into ``pipeline`` (``ingest_alert`` / ``reject``), each file once.

    ``watch``: rescan every ``interval`` seconds for new or changed files (a file is taken once its size and
    modification time did not change between two scans, so half-written files are not read).
    ``max_in_flight``: alerts handed to the pipeline whose Deferred has not fired yet; reading pauses beyond.
    By default :data:`IN_FLIGHT_POOLED` when the pipeline builds in a worker pool (an alert in flight is then a
    block reference or a slim event, ~20 kB: the window must hold a transaction of the alert DB being written
    and enough batches to keep every worker busy meanwhile), else :data:`IN_FLIGHT` (whole decoded alerts).
    ``finished`` fires (with the number of files read) when a non-watching source has handled all its input.
    """

    name = "files"

    def __init__(self, paths, pipeline, state_dir, watch: bool = False, interval: float = 2.0, clock=None,
                 simulated: Optional[bool] = None, max_in_flight: Optional[int] = None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.paths = [Path(p).resolve() for p in paths]
        self.pipeline, self.watch, self.interval, self.clock = pipeline, watch, interval, clock
        self.simulated, self._max_in_flight = simulated, max_in_flight
        self.checkpoints = Checkpoints(state_dir)
        self.finished = defer.Deferred()
        self.files_read = 0
        self._queue: deque[tuple[Path, tuple]] = deque()
        self._queued: set[Path] = set()
        self._seen: dict[Path, tuple] = {}  # watch mode: signature at the previous scan
        self._reported_missing: set[Path] = set()
        self._not_avro: set[Path] = set()  # files of the input directories left out, each logged once
        self._in_flight = 0
        self._pending: set[defer.Deferred] = set()
        self._slot: Optional[defer.Deferred] = None
        self._task = None
        self._loop = None
        self._cooperator = None

    @property
    def max_in_flight(self) -> int:
        if self._max_in_flight is not None:
            return self._max_in_flight
        # asked as it reads: the gateway gives the pipeline its pool after making the sources
        return IN_FLIGHT_POOLED if getattr(self.pipeline, "pool", None) is not None else IN_FLIGHT

    # -- service -------------------------------------------------------------------------------------------------

    def startService(self):
        super().startService()
        # the cooperator gives the reactor a turn between alerts; scheduled on our clock (testable)
        self._cooperator = task.Cooperator(scheduler=lambda work: self.clock.callLater(0, work))
        if self.watch:
            self._loop = task.LoopingCall(self._scan)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=True).addErrback(self._failed)
        else:
            self._scan()

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._task is not None:
            try:
                self._task.stop()
            except (task.TaskDone, task.TaskStopped, task.TaskFailed):
                pass
        self._cooperator.stop()
        # let the alerts already handed to the pipeline finish; their files stay unfinished and are read again
        return defer.DeferredList(list(self._pending), consumeErrors=True)

    def _failed(self, failure):
        log.failure("file source failed", failure)

    # -- scanning --------------------------------------------------------------------------------------------------

    def _scan(self):
        for root in self.paths:
            if not root.exists():
                if root not in self._reported_missing:
                    self._reported_missing.add(root)
                    self.pipeline.reject(AlertError(str(root), None, "no such file or directory"))
                continue
            not_avro: list[Path] = []
            for path in _files(root, not_avro):
                signature = _signature(path)
                if signature is None or path in self._queued or self.checkpoints.done(path, signature):
                    continue
                if self.watch:
                    previous, self._seen[path] = self._seen.get(path), signature
                    if previous != signature:
                        continue  # new or still growing: take it at the next scan if unchanged
                self._queue.append((path, signature))
                self._queued.add(path)
            for path in not_avro:
                if path not in self._not_avro:
                    self._not_avro.add(path)
                    log.info("{path}: not an Avro container file, left out", path=str(path))
        if self._queue and self._task is None:
            self._task = self._cooperator.cooperate(self._work())
            self._task.whenDone().addBoth(self._work_done)
        elif not self._queue and self._task is None and not self.watch and not self.finished.called:
            self.finished.callback(self.files_read)

    def _work_done(self, result):
        self._task = None
        if self.running:
            if self._queue:
                self._scan()
            elif not self.watch and not self.finished.called:
                self.finished.callback(self.files_read)
        return None

    # -- reading ---------------------------------------------------------------------------------------------------

    def _work(self):
        """A cooperative task: yields between alerts, and a Deferred when it must wait (back-pressure)."""
        while self._queue and self.running:
            path, signature = self._queue.popleft()
            simulated = is_simulated(path) if self.simulated is None else self.simulated
            progress = _FileProgress()
            # read before, not finished: what the store committed of it then must not be broadcast again
            recheck = self.checkpoints.started(path)
            self.checkpoints.mark_started(path)
            if recheck:
                log.info("{path}: read again after an interrupted reading; alerts already in the alert DB count "
                         "as duplicates", path=str(path))
            # with a worker pool, the reactor only finds the blocks of the file: the workers read and decode them
            if getattr(self.pipeline, "pool", None) is not None:
                items = container_packets(path, str(path), simulated, by_reference=True)
            else:
                items = read_file(path, str(path), simulated)
            for item in items:
                if isinstance(item, AlertError):
                    self.pipeline.reject(item)
                    continue
                while self._in_flight >= self.max_in_flight:
                    self._slot = defer.Deferred()
                    yield self._slot
                self._deliver(item, progress, recheck)
                yield None
                if not self.running:
                    return
            self.files_read += 1
            yield progress.all_read().addCallback(self._file_done, path, signature)

    def _deliver(self, item: Union[Alert, Packet], progress: "_FileProgress", recheck: bool = False) -> None:
        size = item.count if isinstance(item, Packet) else 1
        self._in_flight += size
        progress.outstanding += 1
        ingest = self.pipeline.ingest_packet if isinstance(item, Packet) else self.pipeline.ingest_alert
        delivery = defer.maybeDeferred(ingest, item, recheck=True) if recheck else defer.maybeDeferred(ingest, item)
        self._pending.add(delivery)

        def release(result):
            self._in_flight -= size
            self._pending.discard(delivery)
            if self._slot is not None and self._in_flight < self.max_in_flight:
                slot, self._slot = self._slot, None
                slot.callback(None)
            progress.delivered(result)
            return None  # counted in the file's progress; nothing of the event is kept

        delivery.addBoth(release)

    def _file_done(self, progress: "_FileProgress", path: Path, signature):
        self._queued.discard(path)
        if progress.failures:
            # not marked finished: the file is read again at the next scan or restart (the dedup drops
            # what did get through)
            log.warn("{path}: {n} alerts not handled downstream ({error}); the file will be read again",
                     path=str(path), n=progress.failures, error=progress.first_error)
            self._seen.pop(path, None)
            return
        self.checkpoints.mark(path, signature)
        log.debug("{path}: done", path=str(path))


class _FileProgress:
    """Deliveries of one file still out, and how many failed: counts, never the deliveries themselves (a file's
    Events, cutouts and all, must not stay in memory until its last alert is handled)."""

    def __init__(self):
        self.outstanding = self.failures = 0
        self.first_error = ""
        self._done: Optional[defer.Deferred] = None

    def delivered(self, result) -> None:
        self.outstanding -= 1
        if isinstance(result, Failure):
            self.failures += 1
            self.first_error = self.first_error or result.getErrorMessage()
        if self._done is not None and not self.outstanding:
            self._done.callback(self)

    def all_read(self) -> defer.Deferred:
        """Fires with this progress once every delivery of the (fully read) file has an outcome."""
        self._done = defer.Deferred()
        if not self.outstanding:
            self._done.callback(self)
        return self._done
