"""The CPU part of the pipeline (decode, view, VOEvent, store rows) in worker processes, fed in bounded batches.

The reactor process reads bytes (:class:`gateway.alerts.packets.Packet`) and hands them to :meth:`WorkerPool.submit`;
packets submitted in one reactor turn (up to ``batch_size``) go to a worker as one batch. Each packet's Deferred
fires with its prepared Events (and rejections) **in submission order**, whichever worker finished first, so the
pipeline cites, deduplicates and routes alerts in the order they arrived: per object, and overall.

Crash semantics: a worker that dies (killed, out of memory) breaks the pool; the Deferreds of every batch not yet
delivered fail with :class:`WorkerDied`, so their sources do not commit (a file is read again, a Kafka offset
redelivered; the store's IVORN dedup drops what did get through), and the next submission starts a new pool.
Nothing is retried here: retrying is the source's business, which knows what it may commit.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Optional

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.alerts.packets import Packet
from gateway.pool import work
from gateway.pool.work import WorkerSettings

__all__ = ["WorkerDied", "WorkerPool", "WorkerSettings", "default_workers"]

log = Logger()


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class WorkerDied(Exception):
    """A worker process ended while it held these alerts; they were not handled (the source keeps them)."""


class WorkerPool:
    """``workers`` processes building Events from packets; see the module doc for order and crash semantics."""

    def __init__(self, settings: WorkerSettings, workers: int, reactor=None, batch_size: int = 32):
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {workers}")
        if reactor is None:
            from twisted.internet import reactor
        self.settings, self.workers, self.reactor, self.batch_size = settings, workers, reactor, batch_size
        self._executor: Optional[ProcessPoolExecutor] = None
        self._batch: list[tuple[Packet, defer.Deferred]] = []
        self._flush_call = None
        self._next = 0
        # batches sent, by number, oldest first: their Deferreds and, once back, their result (a list or a Failure)
        self._sent: OrderedDict[int, list] = OrderedDict()
        self.batches = self.deaths = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the reactor process has threads (DB writer, readers, Kafka), which fork would copy
            # in whatever state they were
            self._executor = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                                 initializer=work.start, initargs=(self.settings,))
        return self._executor

    def start(self) -> defer.Deferred:
        """Start the worker processes now (each imports the gateway: ~1 s), so the first alerts do not wait."""
        pool = self._pool()
        futures = [pool.submit(work.build, []) for _ in range(self.workers)]
        return threads.deferToThread(lambda: [f.result() for f in futures])

    def stop(self) -> defer.Deferred:
        """Stop the workers; batches not delivered yet fail (their sources keep them)."""
        executor, self._executor = self._executor, None
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        for _, d in self._batch:
            d.errback(Failure(WorkerDied("the gateway stopped before these alerts were built")))
        self._batch = []
        if executor is None:
            return defer.succeed(None)
        return threads.deferToThread(executor.shutdown, wait=True, cancel_futures=True)

    # -- work --------------------------------------------------------------------------------------------------

    def submit(self, packet: Packet) -> defer.Deferred:
        """A Deferred firing with ``packet``'s Events and AlertErrors, after every packet submitted before it."""
        d = defer.Deferred()
        self._batch.append((packet, d))
        if len(self._batch) >= self.batch_size:
            self._flush()
        elif self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        number, self._next = self._next, self._next + 1
        entry = self._sent[number] = [[d for _, d in batch], None]
        self.batches += 1
        executor = self._pool()
        try:
            future = executor.submit(work.build, [packet for packet, _ in batch])
        except (BrokenProcessPool, RuntimeError) as error:  # broken, or shut down under us
            entry[1] = Failure(WorkerDied(f"the worker pool is not running: {error}"))
            self._executor = None
            self._deliver()
            return
        future.add_done_callback(lambda f: self.reactor.callFromThread(self._returned, number, f, executor))

    def _returned(self, number: int, future, executor) -> None:
        entry = self._sent.get(number)
        if entry is None:
            return
        try:
            entry[1] = future.result()
        except (BrokenProcessPool, CancelledError) as error:
            if isinstance(error, BrokenProcessPool) and self._executor is executor:
                self.deaths += 1
                log.error("a worker process died; {n} batches in flight fail and their sources keep them",
                          n=len(self._sent))
                self._executor = None  # the next submission starts a new pool
            entry[1] = Failure(WorkerDied("a worker process died while building these alerts"))
        except Exception:  # a bug in the worker's code: fail these alerts, not the pool
            entry[1] = Failure()
        self._deliver()

    def _deliver(self) -> None:
        """Fire every finished batch at the head of the line, in order."""
        while self._sent:
            number, (deferreds, result) = next(iter(self._sent.items()))
            if result is None:
                return
            del self._sent[number]
            if isinstance(result, Failure):
                for d in deferreds:
                    d.errback(result)
            else:
                for d, items in zip(deferreds, result):
                    d.callback(items)
