"""/metrics, /health and /ready of a running gateway, checked against a known burst: N alert files dropped into
a watched directory while a second gateway is subscribed to its VTP broker and a webhook route points at a port
nobody listens on; every counter must come out as the burst says."""

import subprocess
import sys

import pyvo
import pytest

from support import free_port, wait_for
from web.gatewaykit import drop, make_burst, serve


def value(samples, name, **labels):
    """One sample's value (0 when absent)."""
    wanted = tuple(sorted(labels.items()))
    return samples.get(name, {}).get(wanted, 0.0)


@pytest.fixture
def burst_run(tmp_path):
    hook_port = free_port()  # nobody listens: every forward stays in the outbox
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = (f'[sources]\nwatch_interval = 0.5\n[[forward.routes]]\nname = "hook"\nkind = "webhook"\n'
              f'url = "http://127.0.0.1:{hook_port}/"\nmax_attempts = 100\n')
    main = serve(tmp_path, "main", "--source", str(inbox), "--watch", config=config)
    empty = tmp_path / "nothing"
    empty.mkdir()
    subscriber = serve(tmp_path, "subscriber", "--source", str(empty), "--broadcast", "",
                       "--remote", f"127.0.0.1:{main.ports['broadcast']}")
    try:
        wait_for(lambda: value(main.metrics(), "vogateway_vtp_subscribers") == 1, 30, what="the subscriber")
        burst = make_burst(tmp_path / "burst")
        drop(burst.files, inbox)
        yield main, subscriber, burst
    finally:
        subscriber.stop()
        main.stop()


def test_counters_match_a_known_burst(burst_run):
    main, subscriber, burst = burst_run
    n = burst.alerts
    assert n > 20 and burst.duplicates >= 1 and burst.rejects

    def settled():
        samples = main.metrics()
        done = (value(samples, "vogateway_vtp_acks_total") == n
                and value(samples, "vogateway_duplicates_total") == burst.duplicates
                and value(samples, "vogateway_outbox_depth", route="hook") == n)
        return samples if done else None
    samples = wait_for(settled, 60, what=f"{n} alerts acked, {burst.duplicates} duplicates, {n} in the outbox")

    assert value(samples, "vogateway_alerts_in_total", source="files") == n
    for reason, count in burst.rejects.items():
        assert value(samples, "vogateway_rejects_total", reason=reason) == count
    assert sum(samples["vogateway_rejects_total"].values()) == sum(burst.rejects.values())
    assert value(samples, "vogateway_alerts_out_total", sink="store") == n
    assert value(samples, "vogateway_alerts_out_total", sink="vtp") == n  # one subscriber
    assert value(samples, "vogateway_alerts_out_total", sink="forward:hook") == 0
    assert value(samples, "vogateway_vtp_sent_total") == n
    assert value(samples, "vogateway_vtp_naks_total") == 0
    assert value(samples, "vogateway_vtp_missed_total") == 0
    assert value(samples, "vogateway_vtp_events_total") == n
    peer, = samples["vogateway_vtp_subscriber_unacked"]
    assert value(samples, "vogateway_vtp_subscriber_unacked", **dict(peer)) == 0
    assert value(samples, "vogateway_vtp_subscriber_buffer_frames", **dict(peer)) == 0
    # the latency histograms saw each event once
    assert value(samples, "vogateway_broadcast_latency_seconds_count") == n
    assert value(samples, "vogateway_queryable_latency_seconds_count") == n
    assert 0 < value(samples, "vogateway_broadcast_latency_seconds_sum") < 10 * n
    # the route's endpoint refuses: the outbox holds all, the oldest for a while, and attempts were retries
    assert value(samples, "vogateway_outbox_failed", route="hook") == 0
    assert value(samples, "vogateway_source_files_read_total", paths=str(main.log.parent.parent / "inbox")) == \
        len(burst.files)

    def aged():
        samples = main.metrics()
        done = (value(samples, "vogateway_outbox_age_seconds", route="hook") >= 1.0
                and value(samples, "vogateway_forward_attempts_total", route="hook", outcome="retry") >= 1)
        return samples if done else None
    later = wait_for(aged, 20, what="the outbox's oldest item to age, and a failed attempt")
    assert value(later, "vogateway_outbox_depth", route="hook") == n

    # the subscriber gateway counts what it got as coming from its remote broker
    theirs = subscriber.metrics()
    assert value(theirs, "vogateway_alerts_in_total", source=f"vtp:127.0.0.1:{main.ports['broadcast']}") == n

    # TAP queries: one that runs, one that does not parse
    tap = pyvo.dal.TAPService(main.url + "/tap")
    assert len(tap.search("SELECT alertid FROM gateway.alert").to_table()) == n
    with pytest.raises(pyvo.dal.DALQueryError):
        tap.search("SELEKT nothing")
    samples = main.metrics()
    assert value(samples, "vogateway_tap_query_seconds_count", outcome="ok") == 1
    assert value(samples, "vogateway_tap_query_seconds_count", outcome="error") == 1

    # vogateway stats reads the same numbers, with rates
    stats = subprocess.run([sys.executable, "-m", "gateway.cli", "stats", main.url, "--interval", "0.5"],
                           capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert lines[0].startswith("vogateway ") and main.url in lines[0]
    assert f"alerts in    {n} (0.0/s): files {n} (0.0/s)" in lines
    assert f"duplicates   {burst.duplicates}" in lines
    assert any(line.startswith(f"subscribers  1: sent {n} ") and f"acks {n}, naks 0, missed 0" in line
               for line in lines), lines
    assert any(line.startswith(f"outbox       hook: {n} waiting") for line in lines), lines
    assert "TAP queries  2 " in stats.stdout


def test_health_and_ready(tmp_path):
    main = serve(tmp_path, "main", "--source", str(tmp_path), "--watch")
    try:
        assert main.get("/health")[:2] == (200, "text/plain; charset=utf-8")
        code, _, body = main.get("/ready")
        assert (code, body) == (200, b"ready\n")
        (tmp_path / "main" / "var" / "gateway.db").unlink()  # the DB goes away under the gateway
        (tmp_path / "main" / "var" / "gateway.db-wal").unlink(missing_ok=True)
        code, _, body = main.get("/ready")
    finally:
        main.stop()
    assert code == 503 and body.startswith(b"not ready: the alert DB cannot be read: "), body
    assert b"Traceback" not in body and len(body.splitlines()) == 1


def test_stats_without_a_gateway_is_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    stats = subprocess.run([sys.executable, "-m", "gateway.cli", "stats", url, "--interval", "0"],
                           capture_output=True, text=True, timeout=60)
    assert stats.returncode == 1 and stats.stdout == ""
    assert stats.stderr == f"vogateway stats: cannot read {url}/metrics: Connection was refused by other side: " \
                           "111: Connection refused.\n"


def test_ready_follows_postgresql(tmp_path):
    import psycopg

    from postgres import fresh_database

    with fresh_database("ready") as url:
        name = url.rsplit("/", 1)[1]
        main = serve(tmp_path, "main", "--source", str(tmp_path), "--watch", "--db", url)
        try:
            code, _, body = main.get("/ready")
            assert (code, body) == (200, b"ready\n")
            with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")  # no new connection gets in
                try:
                    code, _, body = main.get("/ready")
                finally:
                    admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            assert code == 503, body
            assert body.startswith(b"not ready: the alert DB cannot be read: ") and len(body.splitlines()) == 1
            assert b"not currently accepting connections" in body
            assert main.get("/ready")[0] == 200  # and ready again once it is back
        finally:
            main.stop()
