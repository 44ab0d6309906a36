"""A gateway reading a Kafka topic (a real Kafka-protocol broker on loopback) shows the partition's position and
lag in /metrics and on the status page, and is ready only once it has its partition."""

import json
import uuid

from gateway.alerts.decode import encode_wire
from gateway.alerts.schemas import SchemaLibrary, rubin_schema_id
from gateway.resources import SAMPLES
from kafka_broker import kafka_broker  # noqa: F401  (the fixture)
from support import wait_for
from web.test_metrics import value
from web.gatewaykit import serve


def rubin_packets(count: int, start: int) -> list:
    """``count`` Rubin 11.1 wire-format packets with diaSourceIds start, start+1, ... (from the bundled sample)."""
    import fastavro

    with open(SAMPLES / "rubin" / "11.1" / "fakeAlert.avro", "rb") as handle:
        record = next(iter(fastavro.reader(handle)))
    schema = SchemaLibrary().by_version("rubin", "11.1")
    # the VOEvent's id is the diaSource's own (8.0+): change both, or they are one alert seen seven times
    return [encode_wire(dict(record, diaSourceId=start + n, diaSource=dict(record["diaSource"], diaSourceId=start + n)),
                        rubin_schema_id("11.1"), schema) for n in range(count)]


def test_kafka_position_and_lag(kafka_broker, tmp_path):  # noqa: F811  (the fixture)
    topic = kafka_broker.create_topic(f"alerts-{uuid.uuid4().hex[:8]}")
    config = ('[kafka]\ngroup_id = "metrics-test"\n[kafka.settings]\n"session.timeout.ms" = 2000\n'
              '"heartbeat.interval.ms" = 500\n')
    main = serve(tmp_path, "main", "--source", f"kafka://{kafka_broker.bootstrap}/{topic}", config=config)
    try:
        wait_for(lambda: main.get("/ready")[0] == 200, 60, what="the partition to be assigned")
        kafka_broker.produce(topic, rubin_packets(7, 9_100_000))

        def caught_up():
            samples = main.metrics()
            key = (("partition", "0"), ("topic", topic))
            done = (samples.get("vogateway_kafka_position", {}).get(key) == 7
                    and samples.get("vogateway_kafka_lag", {}).get(key) == 0)
            return samples if done else None
        samples = wait_for(caught_up, 60, what="position 7, lag 0")
        assert value(samples, "vogateway_alerts_in_total", source=f"kafka://{topic}") == 7
        assert value(samples, "vogateway_kafka_messages_total", topics=topic) == 7
        (row,) = json.loads(main.get("/status.json")[2])["tables"]["sources"]
        assert row[:3] == [topic, "kafka", f"{topic}[0] @ 7, lag 0"]
    finally:
        main.stop()
