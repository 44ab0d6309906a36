"""Alerts (or VOEvents) from Kafka topics, committed only once handled downstream.

A confluent-kafka Consumer runs in its own thread, never the reactor's: it polls, decodes each message there
(the Confluent wire format as Rubin sends it, or a whole Avro container as ZTF does; a schema-registry
request, when needed, blocks only that thread), and hands each result to
the reactor with ``callFromThread``. The reactor passes it to ``pipeline.ingest_alert`` (or, with
``payload="voevent"``, the raw XML to ``pipeline.ingest_voevent``, as GCN publishes on
``gcn.classic.voevent.*``). With a worker pool (``pipeline.pool``), the consumer thread only checks the size and
that the schema id resolves, and the message goes whole to ``pipeline.ingest_packet``: a worker decodes it and
builds its VOEvents, so a Kafka stream uses every core as files do. An offset is committed only when the pipeline's Deferred has fired for it and for
every earlier offset of its partition; auto-commit is always off.

- Undecodable messages are rejected (``pipeline.reject``, counted and logged, naming
  ``kafka://topic[partition]`` and the offset) and committed: they would fail again.
- A schema registry that cannot be reached (or answers 5xx) holds the partition: the message is kept and
  decoded again with backoff, not rejected, so a registry outage loses nothing.
- A pipeline failure (a sink is down) is retried with backoff (1 s, doubling, up to 60 s) while the
  source runs; until it succeeds its partition's offset is not committed past it, so after a restart the
  message is delivered again.
- At most ``max_in_flight`` messages are in the pipeline at once; beyond that the consumer pauses its
  partitions (it keeps polling, so it stays in its group) and resumes when the pipeline catches up.
- After a partition is assigned (at start, or in a rebalance after another gateway of the group died), its first
  ``max_in_flight`` messages are ingested with ``recheck``: the pipeline asks the store whether it holds each of
  their events, so what the previous owner stored but had not committed is counted as a duplicate and not
  broadcast again. Those are the only messages that can be such; the rest go the fast way.

``settings`` go to librdkafka unchanged (``security.protocol``, ``sasl.*``, ``ssl.*``, ``session.timeout.ms``,
``auto.offset.reset``, ...), so SASL_SSL with OAUTHBEARER/OIDC for Rubin or GCN needs no code here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Iterable, Optional, Union
from urllib.parse import unquote

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from gateway.alerts import AlertError
from gateway.alerts.decode import HEADER_BYTES, MAGIC, MAX_PACKET_BYTES, decode_message
from gateway.alerts.packets import Packet
from gateway.alerts.schemas import SchemaLibrary, SchemaLookupError
from gateway.errors import in_words

log = Logger()

PAYLOADS = ("avro", "voevent")
RETRY_FIRST, RETRY_MAX = 1.0, 60.0
#: seconds between readings of the partitions' high watermarks (for the lag that metrics and the status page show)
WATERMARK_INTERVAL = 2.0


def parse_kafka_url(url: str) -> tuple[str, list[str]]:
    """``kafka://b1:9092,b2:9092/topic1,topic2`` -> ("b1:9092,b2:9092", ["topic1", "topic2"])."""
    prefix = "kafka://"
    if not url.startswith(prefix):
        raise ValueError(f"not a kafka:// URL: {url!r}")
    brokers, _, topics = url[len(prefix):].partition("/")
    broker_list = [b for b in brokers.split(",") if b]
    topic_list = [unquote(t) for t in topics.strip("/").split(",") if t]
    if not broker_list:
        raise ValueError(f"kafka URL without a broker: {url!r} (expected kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC])")
    if not topic_list:
        raise ValueError(f"kafka URL without a topic: {url!r} (expected kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC])")
    return ",".join(broker_list), topic_list


class _Partition:
    """Offsets of one partition in flight, in order; knows how far it may commit."""

    def __init__(self):
        self.offsets: deque[int] = deque()
        self.done: set[int] = set()

    def add(self, offset: int) -> None:
        self.offsets.append(offset)

    def finish(self, offset: int) -> Optional[int]:
        """Mark ``offset`` handled; the offset to commit (next to read) if the front moved, else None."""
        self.done.add(offset)
        commit = None
        while self.offsets and self.offsets[0] in self.done:
            self.done.discard(self.offsets[0])
            commit = self.offsets.popleft() + 1
        return commit


#: messages in the pipeline at once by default. A message in flight holds its whole packet (~66 kB for a rich Rubin
#: alert), and a worker pool needs a deep queue to keep both cores busy: on scripts/bench/visit.py --source kafka
#: (10,000 rich alerts, 2 workers) 500 gave 0.56-0.73x the nearby decode rate with 1.1-1.4 cores busy, 1000 gave
#: 0.75-1.06x at 331-341 MB peak RSS, 2000 0.91-1.10x but 399-447 MB
IN_FLIGHT = 1000


class KafkaSource(Service):
    """Consumes ``topics`` from ``brokers`` into ``pipeline``; see the module docstring.

    ``library`` resolves wire-format schema ids (default: offline schemas only). ``reactor`` is used for
    callFromThread and retry timers.
    """

    name = "kafka"

    def __init__(self, brokers: Union[str, Iterable[str]], topics: Iterable[str], pipeline, group_id: str,
                 settings: Optional[dict] = None, payload: str = "avro", library: Optional[SchemaLibrary] = None,
                 reactor=None, max_in_flight: int = IN_FLIGHT, max_packet_bytes: int = MAX_PACKET_BYTES,
                 poll_timeout: float = 0.2):
        if payload not in PAYLOADS:
            raise ValueError(f"kafka payload must be one of {', '.join(PAYLOADS)}, not {payload!r}")
        if reactor is None:
            from twisted.internet import reactor
        self.brokers = brokers if isinstance(brokers, str) else ",".join(brokers)
        self.topics = list(topics)
        self.pipeline, self.group_id, self.payload = pipeline, group_id, payload
        self.library = library if library is not None else (SchemaLibrary() if payload == "avro" else None)
        self.reactor, self.max_in_flight, self.max_packet_bytes = reactor, max_in_flight, max_packet_bytes
        self.poll_timeout = poll_timeout
        settings = dict(settings or {})
        if str(settings.pop("enable.auto.commit", "false")).lower() not in ("false", "0"):
            log.warn("kafka: ignoring enable.auto.commit=true: offsets are committed after the pipeline handled them")
        self.config = {"bootstrap.servers": self.brokers, "group.id": group_id, **settings,
                       "enable.auto.commit": False, "error_cb": self._kafka_error}
        #: counters: messages received, rejected as undecodable, committed offsets, retries after failures
        self.received = self.rejected = self.commits = self.retries = 0
        #: (topic, partition) -> the next offset to read as far as the pipeline has handled them (committed soon)
        self.positions: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> the partition's high watermark as the consumer last saw it (for lag; no request)
        self.high_watermarks: dict[tuple[str, int], int] = {}
        self.fetch_positions: dict[tuple[str, int], int] = {}  # next offset to fetch (read ahead of positions)
        #: (topic, partition) pairs this consumer currently owns
        self.assignment: list[tuple[str, int]] = []
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._recheck: dict[tuple[str, int], int] = {}  # messages still to check against the store, per partition
        self._pending: set[defer.Deferred] = set()
        self._retry_calls: set = set()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._to_commit: dict[tuple[str, int], int] = {}
        self._commit_lock = threading.Lock()
        self._accepting = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._exited: Optional[defer.Deferred] = None

    # -- service (reactor thread) --------------------------------------------------------------------------------

    def startService(self):
        super().startService()
        from confluent_kafka import Consumer

        consumer = Consumer(self.config)
        # a new consumer starts from the committed offsets: nothing of a previous run is in flight
        self._partitions.clear()
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._accepting.set()
        self._stop.clear()
        self._exited = defer.Deferred()
        self._thread = threading.Thread(target=self._run, args=(consumer,), name=f"kafka {','.join(self.topics)}",
                                        daemon=True)
        self._thread.start()
        log.info("kafka: consuming {topics} from {brokers} as group {group}", topics=",".join(self.topics),
                 brokers=self.brokers, group=self.group_id)

    @defer.inlineCallbacks
    def stopService(self):
        """Stop taking messages, let those in the pipeline finish, commit, close the consumer, join the thread."""
        super().stopService()
        self._accepting.clear()
        for call in list(self._retry_calls):
            if call.active():
                call.cancel()
        self._retry_calls.clear()
        yield defer.DeferredList(list(self._pending), consumeErrors=True)
        self._stop.set()
        if self._exited is not None:
            yield self._exited

    # -- the consumer thread -------------------------------------------------------------------------------------

    def _run(self, consumer) -> None:
        backlog: deque = deque()
        paused = False
        wait_until, delay, next_watermarks = 0.0, RETRY_FIRST, 0.0
        try:
            consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
            while not self._stop.is_set():
                self._commit(consumer)
                if time.monotonic() >= next_watermarks:
                    self._read_watermarks(consumer)
                    next_watermarks = time.monotonic() + WATERMARK_INTERVAL
                if not self._accepting.is_set():
                    self._stop.wait(self.poll_timeout)
                    continue
                while backlog and time.monotonic() >= wait_until and self._slots.acquire(blocking=False):
                    if self._hand_over(backlog[0]):
                        backlog.popleft()
                        delay = RETRY_FIRST
                    else:  # the schema registry is unavailable: keep the message, try again later
                        self._slots.release()
                        wait_until, delay = time.monotonic() + delay, min(delay * 2, RETRY_MAX)
                if backlog and not paused:
                    consumer.pause(consumer.assignment())  # the pipeline is full: stop fetching, stay in the group
                    paused = True
                elif not backlog and paused:
                    consumer.resume(consumer.assignment())
                    paused = False
                message = consumer.poll(self.poll_timeout)
                if message is None:
                    continue
                if message.error():
                    self._kafka_error(message.error())
                    continue
                backlog.append(message)
            self._commit(consumer)
        except Exception as error:  # a bug or a fatal client error: say so loudly, the service stays stoppable
            self.reactor.callFromThread(log.error, "kafka consumer thread failed: {error}", error=in_words(error))
        finally:
            try:
                consumer.close()
            except Exception as error:
                self.reactor.callFromThread(log.warn, "kafka: closing the consumer: {error}", error=in_words(error))
            self.reactor.callFromThread(self._thread_exited)

    def _read_watermarks(self, consumer) -> None:
        """The high watermarks the fetch responses brought and the fetch positions (both local: no request)."""
        highs, fetched, assignment = {}, {}, consumer.assignment()
        for tp in assignment:
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
            if high is not None and high >= 0:
                highs[(tp.topic, tp.partition)] = high
        for tp in consumer.position(assignment) if assignment else ():
            if tp.offset >= 0:
                fetched[(tp.topic, tp.partition)] = tp.offset
        # replaced whole: the reactor thread reads consistent dicts
        self.high_watermarks, self.fetch_positions = highs, fetched

    def _hand_over(self, message) -> bool:
        """Decode (here, off the reactor) and pass the result to the reactor; False: not now, try again later."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        value = message.value()
        source = f"kafka://{topic}[{partition}]"
        if self.payload == "avro" and value and len(value) > HEADER_BYTES and value[0] == MAGIC:
            try:
                self.library.by_id(int.from_bytes(value[1:HEADER_BYTES], "big"))
            except SchemaLookupError as error:
                if error.transient:
                    # rejecting would commit the message and lose it over a registry outage
                    self.reactor.callFromThread(log.warn, "{source} @ {offset}: {reason}; holding the partition",
                                                source=source, offset=offset, reason=error.reason)
                    return False
        if self.payload == "voevent":
            items = [value if value else AlertError(source, offset, "empty message: no VOEvent")]
        elif not value:
            items = [AlertError(source, offset, "empty message: no alert packet")]
        elif len(value) > self.max_packet_bytes:
            items = [AlertError(source, offset, f"oversized packet: {len(value)} bytes > limit "
                                                f"{self.max_packet_bytes}")]
        elif getattr(self.pipeline, "pool", None) is not None:
            items = Packet(value, source, offset)  # decoded and built by a worker process, in the order given
        else:
            try:
                items = decode_message(value, source, offset, self.library, max_packet_bytes=self.max_packet_bytes)
            except Exception as error:  # never lose a message to an unexpected decoder error
                items = [AlertError(source, offset, f"undecodable Avro: {in_words(error)}")]
        self.reactor.callFromThread(self._handle, topic, partition, offset, items)
        return True

    def _on_assign(self, consumer, partitions) -> None:
        self.reactor.callFromThread(self._assigned, [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer, partitions) -> None:
        # called inside poll(), in our thread: commit what is done before another member takes the partitions
        self._commit(consumer)
        self.reactor.callFromThread(self._forget, [(p.topic, p.partition) for p in partitions])

    def _commit(self, consumer) -> None:
        with self._commit_lock:
            if not self._to_commit:
                return
            todo, self._to_commit = self._to_commit, {}
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in todo.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # e.g. the partition was reassigned: the new owner re-reads from the last commit (dedup keeps it safe)
            self.reactor.callFromThread(log.warn, "kafka: commit failed: {error}", error=error.args[0])
            return
        self.reactor.callFromThread(self._committed, len(offsets))

    def _kafka_error(self, error) -> None:
        self.reactor.callFromThread(log.warn, "kafka: {error}", error=str(error))

    # -- back in the reactor -------------------------------------------------------------------------------------

    def _thread_exited(self) -> None:
        if self._exited is not None and not self._exited.called:
            self._exited.callback(None)

    def _committed(self, count: int) -> None:
        self.commits += count

    def _handle(self, topic: str, partition: int, offset: int, items: list) -> None:
        if not self.running:
            # decoded just before stopService: leave it uncommitted, the next run reads it again
            self._slots.release()
            return
        self.received += 1
        self._partitions.setdefault((topic, partition), _Partition()).add(offset)
        recheck = self._recheck.get((topic, partition), 0) > 0
        if recheck:
            self._recheck[(topic, partition)] -= 1
        if isinstance(items, Packet):
            self._attempt(topic, partition, offset, items, RETRY_FIRST, recheck)
            return
        good = []
        for item in items:
            if isinstance(item, AlertError):
                self.rejected += 1
                self.pipeline.reject(item)
            else:
                good.append(item)
        if good:
            self._attempt(topic, partition, offset, good, RETRY_FIRST, recheck)
        else:
            self._finish(topic, partition, offset)

    def _attempt(self, topic, partition, offset, items: list, delay: float, recheck: bool = False) -> None:
        """Hand one message's alerts (or its VOEvent) to the pipeline; on failure, retry the message later.
        ``recheck``: ask the store first (the message may have been handled, not committed, by a previous owner)."""
        if isinstance(items, Packet):  # the worker pool's rejections are counted by the pipeline
            tries = [defer.maybeDeferred(self.pipeline.ingest_packet, items, recheck=recheck)]
        elif self.payload == "voevent":
            tries = [defer.maybeDeferred(self.pipeline.ingest_voevent, xml, origin=f"kafka://{topic}", recheck=recheck)
                     for xml in items]
        else:
            tries = [defer.maybeDeferred(self.pipeline.ingest_alert, alert, recheck=recheck) for alert in items]
        attempt = tries[0] if len(tries) == 1 else defer.gatherResults(tries, consumeErrors=True)
        self._pending.add(attempt)

        def succeeded(_):
            self._pending.discard(attempt)
            self._finish(topic, partition, offset)

        def failed(failure):
            self._pending.discard(attempt)
            if not self.running:
                log.warn("kafka://{topic}[{partition}] @ {offset}: not handled ({error}); stopping, so it is not "
                         "committed and comes again after a restart", topic=topic, partition=partition,
                         offset=offset, error=failure.getErrorMessage())
                self._slots.release()
                return
            log.warn("kafka://{topic}[{partition}] @ {offset}: not handled ({error}); retrying in {delay} s",
                     topic=topic, partition=partition, offset=offset, error=failure.getErrorMessage(), delay=delay)
            self.retries += 1
            call = None

            def retry():
                self._retry_calls.discard(call)
                self._attempt(topic, partition, offset, items, min(delay * 2, RETRY_MAX), recheck)

            call = self.reactor.callLater(delay, retry)
            self._retry_calls.add(call)

        attempt.addCallbacks(succeeded, failed)

    def _assigned(self, keys) -> None:
        self.assignment = sorted(set(self.assignment) | set(keys))
        for key in keys:  # a previous owner may have handled up to its in-flight window without committing it
            self._recheck[key] = self.max_in_flight
        log.info("kafka: assigned {partitions}", partitions=", ".join(f"{t}[{p}]" for t, p in keys))

    def _forget(self, keys) -> None:
        self.assignment = [key for key in self.assignment if key not in keys]
        # partitions taken away in a rebalance: whoever gets them re-reads from the last commit
        for key in keys:
            self._partitions.pop(key, None)

    def _finish(self, topic: str, partition: int, offset: int) -> None:
        self._slots.release()
        tracked = self._partitions.get((topic, partition))
        commit = tracked.finish(offset) if tracked is not None else None
        if commit is not None:
            self.positions[(topic, partition)] = commit
            with self._commit_lock:
                self._to_commit[(topic, partition)] = commit
