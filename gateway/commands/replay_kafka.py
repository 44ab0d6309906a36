"""``vogateway replay --from kafka://BROKERS/TOPIC``: a topic's messages from an offset, or from a time, made into
VOEvents again (as ``serve`` makes them: same IVORNs) in batches, in a thread (the Kafka client blocks).

Where a partition starts: ``--offset N`` (clamped to what the partition still holds), or the first offset at or
after ``--since`` by the broker's time index. It ends where the partition ended when the replay started, so a live
topic does not make the replay run for ever. Message times are checked too (older than ``--since``, or at or after
``--until``: left out): a broker's time index may be coarse (Tansu's answers the first offset whatever the time). The consumer is
assigned its partitions (no group, nothing committed): a replay never moves a gateway's own offsets.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from typing import Optional

from twisted.internet import threads

from gateway.alerts import AlertError
from gateway.alerts.decode import decode_message
from gateway.alerts.kafka import parse_kafka_url
from gateway.commands.replay_run import BATCH, Batches, SourceError
from gateway.convert import make_converter, make_schema_library

#: seconds the Kafka client may take to answer metadata and offset requests
TIMEOUT = 15.0
#: consecutive empty polls (1 s each) after which the partitions still owed are given up
IDLE_POLLS = 20


def _millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class KafkaBatches(Batches):
    """VOEvent bytes from ``url``'s topics; see the module docstring."""

    def __init__(self, config, url: str, offset: Optional[int], since: Optional[datetime],
                 until: Optional[datetime], limit: int = 0):
        try:
            self.brokers, self.topics = parse_kafka_url(url)
        except ValueError as error:
            raise SourceError(str(error)) from None
        self.config, self.offset, self.since, self.until, self.limit = config, offset, since, until, limit
        self.payload = config.kafka.payload
        self.convert = make_converter(config)
        self.library = make_schema_library(config)
        self.consumer = None
        self.remaining: dict[tuple[str, int], int] = {}  # partition -> offset where it ends
        self.read = self.rejected = 0

    # -- in the thread ------------------------------------------------------------------------------------------

    def _open(self) -> int:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        settings = {**self.config.kafka.settings, "bootstrap.servers": self.brokers,
                    "group.id": f"vogateway-replay-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        consumer = self.consumer = Consumer(settings)
        assignment, total = [], 0
        try:
            for topic in self.topics:
                metadata = consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
                if metadata is None or metadata.error is not None or not metadata.partitions:
                    raise SourceError(f"Kafka topic {topic!r} does not exist at {self.brokers}")
                for partition in sorted(metadata.partitions):
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT)
                    start = self._offset_at(consumer, topic, partition, self.since, high) \
                        if self.offset is None else min(max(self.offset, low), high)
                    end = high
                    if start < end:
                        assignment.append(TopicPartition(topic, partition, start))
                        self.remaining[(topic, partition)] = end
                        total += end - start
        except KafkaException as error:
            raise SourceError(f"Kafka at {self.brokers}: {error.args[0].str()}") from None
        consumer.assign(assignment)
        return total

    @staticmethod
    def _offset_at(consumer, topic: str, partition: int, when: Optional[datetime], high: int) -> int:
        from confluent_kafka import TopicPartition

        [found] = consumer.offsets_for_times([TopicPartition(topic, partition, _millis(when))], timeout=TIMEOUT)
        return high if found.offset < 0 else found.offset  # -1: no message that late

    def _batch(self) -> list[bytes]:
        out, idle = [], 0
        while self.remaining and len(out) < BATCH and (not self.limit or self.read < self.limit):
            messages = self.consumer.consume(BATCH, timeout=1.0)
            idle = 0 if messages else idle + 1
            if idle >= IDLE_POLLS:
                print(f"vogateway replay: Kafka sent nothing for {IDLE_POLLS} s; giving up on "
                      f"{', '.join(f'{t}[{p}]' for t, p in self.remaining)}", file=sys.stderr)
                self.remaining.clear()
            for message in messages:
                key = (message.topic(), message.partition())
                end = self.remaining.get(key)
                if message.error() is not None or end is None or message.offset() >= end:
                    continue
                if message.offset() == end - 1:
                    del self.remaining[key]
                if self.limit and self.read >= self.limit:
                    break
                kind, millis = message.timestamp()
                if kind and ((self.since and millis < _millis(self.since))
                             or (self.until and millis >= _millis(self.until))):
                    continue
                self.read += 1
                out.extend(self._events(message))
        return out

    def _events(self, message) -> list[bytes]:
        value, source = message.value() or b"", f"kafka://{message.topic()}[{message.partition()}]"
        if self.payload == "voevent":
            return [value] if value else []
        events = []
        for item in decode_message(value, source, message.offset(), self.library):
            try:
                if isinstance(item, AlertError):
                    raise item
                events.append(self.convert(item).xml)
            except AlertError as error:
                self.rejected += 1
                print(f"vogateway replay: {source} @ {message.offset()}: {error}", file=sys.stderr)
        return events

    # -- Batches ------------------------------------------------------------------------------------------------

    def total(self):
        return threads.deferToThread(self._open)

    def next(self):
        return threads.deferToThread(self._batch)

    def close(self):
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

