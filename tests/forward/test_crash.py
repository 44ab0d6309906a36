"""A gateway process SIGKILLed mid-delivery and started again: nothing lost, no object reported to TNS twice, and
the only webhook sent twice is the one whose reply the killed process never saw (same Idempotency-Key)."""

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest_twisted
import tomli_w
from forward.kit import FakeTNS, Scripted, events, serve, until
from forward.test_outbox import make_config
from forward.test_tns import API_KEY, reportable, tns_route

from gateway.forward import outbox
from gateway.resources import SAMPLES
from gateway.store.db import Database


def spawn(config_path, log_path):
    """`vogateway serve` as a user runs it, on the config; no listeners (the test needs none)."""
    log = open(log_path, "ab")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path), "--http", "",
               "--broadcast", "", "--receive", ""]
    return subprocess.Popen(command, stdout=log, stderr=log, env=env)


def statuses(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return Counter(f"{route}:{status}" for route, status in
                       conn.execute(f"SELECT route, status FROM {outbox.TABLE}"))
    finally:
        conn.close()


@pytest_twisted.inlineCallbacks
def test_sigkill_mid_delivery_then_restart(tmp_path):
    fake = FakeTNS(API_KEY, polls_before_processed=0)
    fake.script.extend(["ok", "accept-hang"])  # the second report is taken by TNS, and then the gateway dies
    hook = Scripted()
    hook.script.extend(["ok", "ok", "accept-hang"])
    tns_port, tns_url = yield serve(fake)
    hook_port, hook_url = yield serve(hook)
    db_path = tmp_path / "gateway.db"
    config = make_config(tns_route(tns_url, filter="survey == 'ztf'", timeout=0.5),
                         {"name": "hook", "kind": "webhook", "url": hook_url, "filter": "survey == 'ztf'",
                          "timeout": 0.5, "concurrency": 1})
    config["store"]["db"] = f"sqlite:///{db_path}"
    config["gateway"]["state_dir"] = str(tmp_path / "state")
    config["sources"]["inputs"] = [str(SAMPLES / "ztf")]
    config["output"]["directory"] = ""
    config_path = tmp_path / "config.toml"
    config_path.write_text(tomli_w.dumps(config))
    log_path = tmp_path / "child.log"
    ztf = events("ztf")
    expected_objects = reportable(ztf)
    child = spawn(config_path, log_path)
    try:
        yield until(lambda: fake.hanging and hook.hanging, timeout=30,
                    what=f"deliveries in flight; child log: {log_path.read_text() if log_path.exists() else ''}")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        before = statuses(db_path)
        assert before["tns:sending"] >= 1 and before["hook:sending"] >= 1, before
        in_flight_hooks = {r["headers"]["idempotency-key"] for r in hook.requests if r["behaviour"] == "accept-hang"}
        fake.release()
        hook.release()

        child = spawn(config_path, log_path)
        yield until(lambda: statuses(db_path)["hook:sent"] == len(ztf)
                    and statuses(db_path)["tns:sent"] == len(expected_objects), timeout=60,
                    what=f"everything delivered after the restart: {statuses(db_path)}; log: {log_path.read_text()}")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        fake.release()
        hook.release()
        yield tns_port.stopListening()
        yield hook_port.stopListening()
    # TNS: every object reported exactly once, the one taken before the kill included
    assert sorted(r["internal_name"] for r in fake.reports) == sorted(expected_objects.values())
    database = Database(f"sqlite:///{db_path}")
    try:
        named = database.run_write(lambda conn: dict(conn.execute(
            f"SELECT objectid, tns_name FROM {outbox.TNS_TABLE} WHERE status = 'named'").fetchall()))
    finally:
        database.stop()
    assert set(named) == set(expected_objects)
    # webhook: nothing lost; a second copy only of what was in flight at the kill, under the same key
    taken = Counter(r["headers"]["idempotency-key"] for r in hook.requests if r["behaviour"] in ("ok", "accept-hang"))
    assert set(taken) == {f"hook:{e.ivorn}" for e in ztf}
    assert {key for key, n in taken.items() if n > 1} <= in_flight_hooks
