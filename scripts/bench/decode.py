#!/usr/bin/env python
"""Decoding speed on the bundled Rubin sample alerts, against plain fastavro measured in the same run.

    .venv/bin/python scripts/bench/decode.py [--alerts 5000] [--repeat 3]

Prints alerts/s for: (1) plain fastavro reading an object container (baseline) vs gateway.alerts.decode.
read_container; (2) plain fastavro.schemaless_reader on wire-format bodies (baseline) vs decode_wire (header
checks, schema lookup, Alert record); (3) decode_wire plus the fields view the converter and the store use
(detection, previous detections, object summary, cutouts). Ratios are gateway / baseline (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import io
import time

import fastavro

from gateway.alerts import fields
from gateway.alerts.decode import decode_wire, encode_wire, read_container, write_container
from gateway.alerts.schemas import SchemaLibrary, rubin_schema_id
from gateway.resources import SAMPLES


def best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5000, help="alerts per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    library = SchemaLibrary()

    samples = []  # (version, record)
    for path in sorted((SAMPLES / "rubin").glob("*/*.avro")):
        for alert in read_container(path):
            samples.append((alert.schema, alert.record))
    if not samples:
        raise SystemExit(f"no Rubin samples under {SAMPLES / 'rubin'}")
    chosen = [samples[i % len(samples)] for i in range(args.alerts)]
    n = len(chosen)

    # containers: one per version, the chosen alerts of that version in it
    containers = []
    for version in sorted({v for v, _ in chosen}):
        buffer = io.BytesIO()
        write_container(buffer, [r for v, r in chosen if v == version], library.by_version("rubin", version))
        containers.append(buffer.getvalue())
    packets = [encode_wire(record, rubin_schema_id(version), library.by_version("rubin", version))
               for version, record in chosen]
    parsed = {rubin_schema_id(v): library.by_version("rubin", v).parsed for v in {v for v, _ in chosen}}

    def plain_container():
        for data in containers:
            for _ in fastavro.reader(io.BytesIO(data)):
                pass

    def gateway_container():
        for data in containers:
            for _ in read_container(io.BytesIO(data), "bench"):
                pass

    def plain_wire():
        for packet in packets:
            stream = io.BytesIO(packet)
            stream.seek(5)
            fastavro.schemaless_reader(stream, parsed[int.from_bytes(packet[1:5], "big")], None)

    def gateway_wire():
        for i, packet in enumerate(packets):
            decode_wire(packet, "bench", i, library)

    def gateway_wire_fields():
        for i, packet in enumerate(packets):
            alert = decode_wire(packet, "bench", i, library)
            fields.alert_id(alert)
            fields.object_key(alert)
            fields.detection(alert)
            fields.previous_detections(alert)
            fields.object_summary(alert)
            fields.cutouts(alert)

    print(f"{n} Rubin alerts from {len(samples)} bundled samples of {len(containers)} schema versions, "
          f"best of {args.repeat}")
    rows = [("container", plain_container, gateway_container), ("wire", plain_wire, gateway_wire),
            ("wire + fields", plain_wire, gateway_wire_fields)]
    for name, baseline, ours in rows:
        t_base, t_ours = best(baseline, args.repeat), best(ours, args.repeat)
        print(f"{name:14s} fastavro {n / t_base:10,.0f} alerts/s   gateway {n / t_ours:10,.0f} alerts/s   "
              f"ratio {t_base / t_ours:5.2f}")


if __name__ == "__main__":
    main()
