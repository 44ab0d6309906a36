"""`vogateway serve --watch` killed with SIGKILL in the middle of a file, then started again, with a real VTP
subscriber on its broker the whole time: the file is read again, what the alert DB had committed is not broadcast
again (the summary counts it as duplicates), and the subscriber sees every alert at least once.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import fastavro
import psutil

from gateway.alerts import Alert
from gateway.alerts.files import IN_FLIGHT_POOLED
from gateway.alerts.ids import issue_id
from gateway.alerts.packets import container_packets
from gateway.resources import SAMPLES
from gateway.voevent.ivorn import event_stream
from cli.subscriberkit import Subscriber
from support import free_port, stop_process, wait_for

ALERTS = 12_000
KILL_AFTER = 1_500  # events the subscriber has received when the gateway is killed


def big_file(path, count: int) -> list[str]:
    """A Rubin 11.1 container of ``count`` alerts (the bundled simulated ones, renumbered, no cutouts); their
    IVORNs as the gateway names them."""
    with open(SAMPLES / "rubin" / "11.1" / "simulated.avro", "rb") as handle:
        reader = fastavro.reader(handle)
        templates, schema = list(reader), reader.writer_schema
    records = []
    for n in range(count):
        record = dict(templates[n % len(templates)])
        source_id, object_id = 7 * 10**12 + n, 8 * 10**12 + n
        record["diaSource"] = dict(record["diaSource"], diaSourceId=source_id, diaObjectId=object_id)
        if record["diaObject"] is not None:
            record["diaObject"] = dict(record["diaObject"], diaObjectId=object_id)
        record.update(diaSourceId=source_id, cutoutDifference=None, cutoutScience=None, cutoutTemplate=None)
        records.append(record)
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records)
    stream = event_stream("vogateway.local", "alerts", "rubin")
    return [f"{stream}#{issue_id(Alert('rubin', '11.1', record, '', n))}" for n, record in enumerate(records)]


def serve(tmp_path, config, port: int) -> subprocess.Popen:
    log = open(tmp_path / "serve.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--watch", "--workers", "1",
         "--state-dir", str(tmp_path / "var"), "--db", f"sqlite:///{tmp_path / 'var' / 'gateway.db'}",
         "--source", str(tmp_path / "inbox"), "--http", "", "--receive", "",
         "--broadcast", f"127.0.0.1:{port}"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL the gateway and its worker processes, as a crash or the OOM killer would."""
    family = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def committed(tmp_path) -> set[str]:
    with sqlite3.connect(tmp_path / "var" / "gateway.db") as conn:
        return {ivorn for (ivorn,) in conn.execute("SELECT ivorn FROM voevent")}


def test_sigkill_mid_file_then_restart_broadcasts_only_what_was_not_committed(tmp_path):
    (tmp_path / "inbox").mkdir()
    staged = tmp_path / "alerts.avro"
    ivorns = big_file(staged, ALERTS)
    config = tmp_path / "gateway.toml"
    # a scan every second: the subscriber is back on the restarted broker before the file is taken up again
    config.write_text("[sources]\nwatch_interval = 1.0\n[output]\ndirectory = \"\"\n")
    port = free_port()
    subscriber = Subscriber(port)
    process = serve(tmp_path, config, port)
    try:
        subscriber.start()
        wait_for(lambda: subscriber.connections == 1 and b"subscriber 127.0.0.1" in
                 (tmp_path / "serve.log").read_bytes(), 60, what="the subscriber connected")
        shutil.move(staged, tmp_path / "inbox" / "alerts.avro")  # one rename: the file appears whole
        wait_for(lambda: len(subscriber.received) >= KILL_AFTER, 120, what=f"{KILL_AFTER} events at the subscriber")
        kill_hard(process)
        before_kill = list(subscriber.received)
        in_db = committed(tmp_path)
        assert len(before_kill) < ALERTS, "the file was read whole before the kill: nothing tested"
        assert "alerts.avro" in (tmp_path / "var" / "files-done.jsonl").read_text()  # started ...
        assert '"size"' not in (tmp_path / "var" / "files-done.jsonl").read_text()  # ... and not finished
        assert in_db and in_db <= set(before_kill)

        process = serve(tmp_path, config, port)
        wait_for(lambda: subscriber.connections == 2, 60, what="the subscriber back on the restarted broker")
        wait_for(lambda: set(subscriber.received) >= set(ivorns), 180, what="every alert at the subscriber")
        wait_for(lambda: len(committed(tmp_path)) == ALERTS, 60, what="every alert in the alert DB")
        time.sleep(1.5)  # a scan after the last alert: the file is marked finished, nothing more comes
    finally:
        stop_process(process, 60)
        subscriber.stop()
    log = (tmp_path / "serve.log").read_text()
    counts = Counter(subscriber.received)
    twice = {ivorn for ivorn, n in counts.items() if n > 1}
    print(f"killed after {len(before_kill)} events at the subscriber, {len(in_db)} in the alert DB; "
          f"{len(twice)} events seen twice")
    # nothing the alert DB had committed at the kill was broadcast again; what it had not could be (at least once)
    assert not twice & in_db, f"{len(twice & in_db)} committed events broadcast again"
    assert twice <= set(before_kill) - in_db and max(counts.values()) <= 2
    # and they are bounded by what the file source keeps in flight (serve builds in a worker pool), plus one block
    block = max(packet.count for packet in container_packets(tmp_path / "inbox" / "alerts.avro", "", False))
    assert len(twice) <= IN_FLIGHT_POOLED + block, (len(twice), block)
    assert set(counts) == set(ivorns)
    # the restart's summary: the committed alerts of the file are duplicates, the rest converted
    second_run = log.rsplit("read again after an interrupted reading", 1)[1]
    final = second_run.rsplit("pipeline: ", 1)[1].splitlines()[0]
    assert final.startswith(f"{ALERTS - len(in_db)} converted, {len(in_db)} duplicates, 0 rejected"), final
    assert "Traceback" not in log
