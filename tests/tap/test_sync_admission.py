"""Sync queries are admitted within bounds: at most ``sync_max_running`` at once and ``sync_max_per_client`` per
client address, ``sync_max_queued`` waiting; beyond that a 503 VOTable error with Retry-After; the wait counts in
``sync_timeout``. Real concurrent HTTP clients from different loopback addresses (127.0.0.x), real slow queries."""

import http.client
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
from tap_helpers import assert_error, database_url, fill, serve


#: a query that runs until its time limit stops it (a triple self-join of 1,200 detections)
SLOW = ("SELECT COUNT(*) AS n FROM gateway.diasource AS a, gateway.diasource AS b, gateway.diasource AS c "
        "WHERE a.mag + b.mag > c.mag")
FAST = "SELECT TOP 3 diasourceid FROM gateway.diasource ORDER BY diasourceid"
TIMEOUT = 6.0


class Response:
    def __init__(self, status, headers, content, elapsed):
        self.status_code, self.headers, self.content, self.elapsed = status, headers, content, elapsed
        self.text = content.decode("utf-8", "replace")


class Client:
    """One HTTP client from its own loopback address."""

    def __init__(self, tap, address: str):
        parts = urlsplit(tap.url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.address = address
        self.conn = None

    def sync(self, query: str) -> Response:
        started = time.monotonic()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=(self.address, 0))
        try:
            self.conn.request("POST", self.path + "/sync", urlencode({"LANG": "ADQL", "QUERY": query}),
                              {"Content-Type": "application/x-www-form-urlencoded"})
            r = self.conn.getresponse()
            content = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, content, time.monotonic() - started)
        finally:
            self.conn.close()

    def close(self):
        """Go away mid-request (the server should stop the query and free its slot)."""
        sock = self.conn.sock if self.conn is not None else None
        assert sock is not None, "the request is not in flight"
        sock.shutdown(socket.SHUT_RDWR)


def in_background(function, *args):
    result = {}

    def target():
        try:
            result["value"] = function(*args)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            result["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture(scope="module")
def busy_tap(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("admission")
    with database_url("sqlite", tmp_path) as url:
        fill(url)
        with serve("sqlite", url, tmp_path, "--sync-timeout", str(TIMEOUT), "--sync-max-running", "2",
                   "--sync-max-per-client", "1", "--sync-max-queued", "1") as server:
            yield server


def assert_busy(response, *words):
    assert_error(response, 503, *words)
    assert 1 <= int(response.headers["retry-after"]) <= TIMEOUT + 1
    assert response.elapsed < 2.0  # refused at once, not after waiting


def test_one_client_cannot_take_every_slot(busy_tap):
    slow = Client(busy_tap, "127.0.0.2")
    thread, first = in_background(slow.sync, SLOW)
    time.sleep(0.5)
    assert_busy(Client(busy_tap, "127.0.0.2").sync(SLOW), "sync_max_per_client")
    other = Client(busy_tap, "127.0.0.3").sync(FAST)  # another client is served while the slow query runs
    assert other.status_code == 200 and other.elapsed < 3.0, (other.status_code, other.elapsed)
    assert thread.is_alive()
    thread.join(30)
    assert_error(first["value"], 400, "time limit", f"{TIMEOUT:g} s")


def test_full_service_refuses_and_the_wait_counts_in_the_time_limit(busy_tap):
    clients = [Client(busy_tap, f"127.0.0.{i}") for i in (4, 5, 6, 7)]
    running = []
    for c in clients[:3]:  # two run, the third waits
        running.append(in_background(c.sync, SLOW))
        time.sleep(0.3)
    assert_busy(clients[3].sync(FAST), "busy", "2 sync queries are running and 1 waiting")
    for thread, _ in running:
        thread.join(30)
    for _, result in running[:2]:
        assert_error(result["value"], 400, "time limit")
    waited = running[2][1]["value"]
    # it could not start before the first two ended at their limit, and it had no more time left: refused or
    # stopped, either way within one time limit of its arrival, not two
    assert waited.status_code in (400, 503), waited.text[:300]
    assert assert_error(waited, waited.status_code, "time limit")
    assert waited.elapsed < TIMEOUT + 2.5, waited.elapsed


def test_a_waiting_query_runs_when_a_slot_frees(busy_tap):
    holders = [Client(busy_tap, f"127.0.0.{i}") for i in (8, 9)]
    threads = [in_background(c.sync, SLOW)[0] for c in holders]
    time.sleep(0.5)
    thread, waiting = in_background(Client(busy_tap, "127.0.0.10").sync, FAST)
    time.sleep(0.5)
    assert thread.is_alive(), "the fast query should wait: both slots are taken"
    started = time.monotonic()
    holders[0].close()  # the client goes away: its query is stopped and its slot given to the waiting one
    thread.join(30)
    answer = waiting["value"]
    assert answer.status_code == 200, answer.text[:300]
    assert time.monotonic() - started < 3.0
    assert b"QUERY_STATUS" in answer.content
    for t in threads:
        t.join(30)
    assert busy_tap.alive()
