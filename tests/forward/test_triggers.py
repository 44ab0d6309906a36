"""Command triggers: the VOEvent on stdin, a timeout for programs that hang, retries for non-zero exits, and a cap
on how many run at once."""

import sys
import time

import pytest_twisted

from forward.kit import events, until
from forward.test_outbox import make_config, rows, start, stop

RECORDER = """
import os, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
data = sys.stdin.buffer.read()
running = out / "running"
running.mkdir(exist_ok=True)
me = running / str(os.getpid())
me.touch()
peak = len(list(running.iterdir()))
(out / f"peak-{os.getpid()}").write_text(str(peak))
time.sleep(float(sys.argv[2]))
(out / (os.environ["VOGATEWAY_IVORN"].rpartition("#")[2] + ".xml")).write_bytes(data)
me.unlink()
sys.exit(int(sys.argv[3]))
"""


def command_route(tmp_path, sleep=0.0, status=0, **extra):
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return {"name": "cmd", "kind": "command", "command": [sys.executable, str(script), str(out), str(sleep),
                                                          str(status)], "filter": "survey == 'ztf'", **extra}, out


@pytest_twisted.inlineCallbacks
def test_command_gets_the_voevent_on_stdin_with_a_cap_on_concurrent_runs(database, tmp_path):
    route, out = command_route(tmp_path, sleep=0.3, concurrency=2)
    sink, services = yield start(make_config(route), database)
    try:
        ztf = events("ztf")
        for event in ztf:
            yield sink.accept(event)
        yield until(lambda: len(rows(database, status="sent")) == len(ztf), timeout=30, what="every command run")
    finally:
        yield stop(services)
    for event in ztf:
        assert (out / (event.ivorn.rpartition("#")[2] + ".xml")).read_bytes() == event.xml
    peaks = [int(p.read_text()) for p in out.glob("peak-*")]
    assert len(peaks) == len(ztf) and max(peaks) <= 2


@pytest_twisted.inlineCallbacks
def test_command_that_exits_non_zero_is_retried_then_failed(database, tmp_path):
    route, out = command_route(tmp_path, status=3, max_attempts=2)
    sink, services = yield start(make_config(route), database)
    try:
        yield sink.accept(events("ztf")[0])
        yield until(lambda: rows(database, status="failed"), what="failed after 2 attempts")
    finally:
        yield stop(services)
    [row] = rows(database)
    assert row["attempts"] == 2 and "exited with status 3" in row["last_error"]


@pytest_twisted.inlineCallbacks
def test_command_that_hangs_is_stopped_at_its_timeout(database, tmp_path):
    route, out = command_route(tmp_path, sleep=60, timeout=0.5, max_attempts=1, kill_grace=0.5)
    sink, services = yield start(make_config(route), database)
    began = time.monotonic()
    try:
        yield sink.accept(events("ztf")[0])
        yield until(lambda: rows(database, status="failed"), what="stopped and failed")
    finally:
        yield stop(services)
    assert time.monotonic() - began < 10
    [row] = rows(database)
    assert "ran longer than 0.5 s" in row["last_error"]
    yield until(lambda: not _alive(out), timeout=5, what="the hung program killed")


def _alive(out):
    import os

    for marker in (out / "running").iterdir():
        try:
            os.kill(int(marker.name), 0)
            return True
        except ProcessLookupError:
            continue
    return False


@pytest_twisted.inlineCallbacks
def test_command_that_does_not_exist_is_retried_with_a_reason(database, tmp_path):
    route = {"name": "cmd", "kind": "command", "command": [str(tmp_path / "no-such-program")], "max_attempts": 1}
    sink, services = yield start(make_config(route), database)
    try:
        yield sink.accept(events("ztf")[0])
        yield until(lambda: rows(database, status="failed"), what="failed")
    finally:
        yield stop(services)
    [row] = rows(database)
    assert "no-such-program" in row["last_error"]
