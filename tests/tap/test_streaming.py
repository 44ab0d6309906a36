"""Large results over HTTP: the server's memory stays flat while a client reads slowly, and clients that hang up
mid-stream free their query thread."""

import time

import psutil
import pytest
import requests
from support import wait_for
from tap_helpers import N_OBJECTS, PER_OBJECT, database_url, fill, serve

ROWS = N_OBJECTS * PER_OBJECT * N_OBJECTS  # alert x diaobject
QUERY = ("SELECT a.alertid, a.ivorn, a.objectid, a.ra, a.dec, a.mjd, a.received, b.objectid AS other, "
         "b.last_ivorn AS other_ivorn "
         "FROM gateway.alert AS a, gateway.diaobject AS b")


def wait_until_idle(process: psutil.Process, window: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until ``process`` spends under 5% of a CPU over ``window`` seconds: it stopped producing."""
    def idle():
        before = sum(process.cpu_times()[:2])
        time.sleep(window)  # the measuring window, not a stand-in for the stall
        return sum(process.cpu_times()[:2]) - before < 0.05 * window
    wait_for(idle, timeout, interval=0, what="the server to stop producing for a client that reads nothing")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def big_tap(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(f"stream-{request.param}")
    with database_url(request.param, tmp_path) as url:
        fill(url)
        with serve(request.param, url, tmp_path, "--maxrec", "10000000", "--maxrec-hard", "10000000",
                   "--sync-timeout", "120") as server:
            yield server


def test_slow_reader_keeps_server_memory_flat(big_tap):
    process = psutil.Process(big_tap.process.pid)
    before = process.memory_info().rss
    with requests.post(big_tap.url + "/sync", data={"LANG": "ADQL", "QUERY": QUERY, "FORMAT": "csv"},
                       stream=True, timeout=120) as r:
        assert r.status_code == 200
        chunks = r.iter_content(65536)
        received = len(next(chunks))
        wait_until_idle(process)  # the client stalls: the server must stop producing, not buffer the result
        during = process.memory_info().rss
        lines = 0
        for chunk in chunks:
            received += len(chunk)
            lines += chunk.count(b"\n")
    print(f"{big_tap.backend}: {received / 1e6:.0f} MB streamed; server RSS grew {(during - before) / 1e6:.1f} MB "
          "while the client stalled")
    assert received > 50e6 and lines >= ROWS  # header + every row (the first chunk's lines not counted)
    growth = during - before
    assert growth < 30e6, (f"server grew by {growth / 1e6:.0f} MB while the client stalled on a "
                           f"{received / 1e6:.0f} MB result")


def test_clients_hanging_up_free_their_threads(big_tap):
    for _ in range(8):  # more than the sync thread pool holds
        with requests.post(big_tap.url + "/sync", data={"LANG": "ADQL", "QUERY": QUERY}, stream=True,
                           timeout=60) as r:
            assert r.status_code == 200
            next(r.iter_content(4096))
        # leaving the block closes the connection mid-stream
    started = time.monotonic()
    r = big_tap.sync("SELECT TOP 1 alertid FROM gateway.alert ORDER BY alertid", FORMAT="csv")
    assert r.status_code == 200 and r.text.splitlines()[1] == "1001"
    assert time.monotonic() - started < 20
    assert big_tap.alive()


def test_client_that_stops_reading_is_dropped(big_tap, tmp_path):
    with serve(big_tap.backend, big_tap.db_url, tmp_path, "--maxrec", "10000000", "--maxrec-hard", "10000000",
               "--stall-timeout", "2") as server:
        received, dropped = 0, False
        with requests.post(server.url + "/sync", data={"LANG": "ADQL", "QUERY": QUERY, "FORMAT": "csv"},
                           stream=True, timeout=60) as r:
            chunks = r.iter_content(65536)
            received += len(next(chunks))
            # the client reads nothing more until the server says it dropped it
            wait_for(lambda: b"dropping it" in server.log_path.read_bytes(), 30,
                     what="the stalled client to be dropped")
            try:
                for chunk in chunks:
                    received += len(chunk)
            except requests.exceptions.RequestException:
                dropped = True
        print(f"{big_tap.backend}: stalled client received {received / 1e6:.1f} MB, connection dropped: {dropped}")
        assert dropped or received < 40e6, "the stalled client got the whole result"
        assert server.alive()
        r = server.sync("SELECT TOP 1 alertid FROM gateway.alert ORDER BY alertid", FORMAT="csv")
        assert r.status_code == 200 and r.text.splitlines()[1] == "1001"
