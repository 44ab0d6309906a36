"""Scale-out as an operator runs it: two `vogateway serve` processes in one Kafka consumer group, one PostgreSQL.

A 4-partition topic is shared between them; one is SIGKILLed mid-stream; the other takes its partitions over; in
the end every alert is stored exactly once (no alert missing, none twice), whatever was in flight at the kill. Their
cutouts go to pack files in one directory both reach (``store.cutouts``): every alert's stamp is found there.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import uuid

import numpy
import psycopg
from astropy.io import fits
from alertdata import LIBRARY, first_record, rubin_files
from kafka_broker import FAST_GROUP, kafka_broker  # noqa: F401  (the fixture)
from postgres import fresh_database
from support import stop_process, wait_for

from gateway.alerts.decode import encode_wire
from gateway.alerts.schemas import rubin_schema_id
from gateway.store.packs import CutoutPacks

PARTITIONS, FIRST, SECOND = 4, 300, 300


def stamp(n: int) -> bytes:
    """A small FITS difference image of its own for alert ``n``."""
    out = io.BytesIO()
    fits.PrimaryHDU(numpy.full((8, 8), n, dtype=numpy.float32)).writeto(out)
    return out.getvalue()


def packets(start: int, count: int) -> list[bytes]:
    record, _ = first_record(rubin_files()["11.1"])
    schema = LIBRARY.by_version("rubin", "11.1")
    out = []
    for n in range(start, start + count):
        source = dict(record["diaSource"], diaSourceId=5 * 10**12 + n, diaObjectId=6 * 10**12 + n % 97)
        out.append(encode_wire(dict(record, diaSourceId=source["diaSourceId"], diaSource=source,
                                    cutoutDifference=stamp(n)),
                               rubin_schema_id("11.1"), schema))
    return out


def produce(broker, topic: str, values: list[bytes]) -> None:
    producer = broker.producer()
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % PARTITIONS)
    assert producer.flush(15) == 0


def gateway(tmp_path, name: str, broker, topic: str, group: str, db: str) -> subprocess.Popen:
    config = tmp_path / f"{name}.toml"
    settings = "".join(f'"{key}" = {value}\n' for key, value in FAST_GROUP.items())
    config.write_text(f'[sources]\ninputs = ["kafka://{broker.bootstrap}/{topic}"]\nworkers = -1\n'
                      f'[kafka]\ngroup_id = "{group}"\n[kafka.settings]\n{settings}'
                      f'[store]\ncutouts = "{tmp_path / "cutouts"}"\n'
                      '[output]\ndirectory = ""\n[http]\nlisten = ""\n[vtp]\nbroadcast = ""\nreceive = ""\n')
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
                             "--state-dir", str(tmp_path / name), "--db", db], stdout=log, stderr=subprocess.STDOUT)


def stored(db: str) -> tuple[int, int]:
    with psycopg.connect(db) as conn:
        try:
            return conn.execute("SELECT count(*), count(DISTINCT alertid) FROM gateway.alert").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0


def assigned(tmp_path, name: str) -> str:
    text = (tmp_path / f"{name}.log").read_text()
    return text if "kafka: assigned" in text else ""


def test_two_gateways_share_a_topic_and_one_takes_over_when_the_other_is_killed(tmp_path, kafka_broker):  # noqa: F811
    topic = kafka_broker.create_topic(f"alerts-{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    group = f"gw-{uuid.uuid4().hex[:8]}"
    with fresh_database("scale") as db:
        first = gateway(tmp_path, "a", kafka_broker, topic, group, db)
        second = gateway(tmp_path, "b", kafka_broker, topic, group, db)
        try:
            wait_for(lambda: assigned(tmp_path, "a") and assigned(tmp_path, "b"), 60, what="both gateways to join the group")
            produce(kafka_broker, topic, packets(0, FIRST))
            wait_for(lambda: stored(db)[0] >= FIRST // 3, 60, what="the first alerts to be stored")
            first.send_signal(signal.SIGKILL)  # mid-stream: whatever it had in flight is not committed
            first.wait(10)
            produce(kafka_broker, topic, packets(FIRST, SECOND))
            wait_for(lambda: stored(db)[0] >= FIRST + SECOND, 90, what="every alert")
            time.sleep(1.0)  # anything stored twice would show now: the survivor has caught up
            total, distinct = stored(db)
            assert total == distinct == FIRST + SECOND
            log_a, log_b = assigned(tmp_path, "a"), assigned(tmp_path, "b")
            # they shared the partitions: each had some at first, and the survivor ended with all of them
            assert log_a.count("kafka: assigned") >= 1 and log_b.count("kafka: assigned") >= 2, (log_a, log_b)
            last = log_b.rsplit("kafka: assigned", 1)[1].splitlines()[0]
            assert all(f"{topic}[{p}]" in last for p in range(PARTITIONS)), last
            with psycopg.connect(db) as conn:
                assert conn.execute("SELECT count(*) FROM gateway.cutout").fetchone() == (0,)
                located = conn.execute("SELECT alertid, kind, pack, byte_offset, byte_length "
                                       "FROM gateway.cutout_pack").fetchall()
            packs = CutoutPacks(tmp_path / "cutouts")
            assert sorted(alert_id for alert_id, *_ in located) == [5 * 10**12 + n for n in range(FIRST + SECOND)]
            for alert_id, kind, *where in located:
                assert kind == "difference" and packs.read(*where) == stamp(alert_id - 5 * 10**12)
        finally:
            for process in (first, second):
                stop_process(process, 20)
