"""`vogateway serve` with its alert DB and TAP service, as a user runs it: the replayed samples are queryable with
pyvo, an event submitted over VTP is queryable within a second of its ack, and the cutouts the VOEvents reference
are served."""

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pyvo

from gateway.alerts.files import iter_inputs
from gateway.resources import SAMPLES
from support import free_port, wait_for


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_samples_and_submitted_events_are_queryable_over_tap(tmp_path):
    expected = sum(1 for item in iter_inputs([str(SAMPLES)]) if not isinstance(item, Exception))
    ports = {name: free_port() for name in ("http", "broadcast", "receive")}
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\npublic_url = "http://127.0.0.1:{ports["http"]}"\n')
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
               "--state-dir", str(tmp_path / "var"), "--db", f"sqlite:///{tmp_path / 'var' / 'gateway.db'}",
               "--output", "", "--http", f"127.0.0.1:{ports['http']}",
               "--broadcast", f"127.0.0.1:{ports['broadcast']}", "--receive", f"127.0.0.1:{ports['receive']}"]
    log_path = tmp_path / "serve.log"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "replay done" in log_path.read_text(), 120, what="sample replay")
        tap = pyvo.dal.TAPService(f"http://127.0.0.1:{ports['http']}/tap")
        counts = tap.search("SELECT survey, COUNT(*) AS n FROM gateway.alert GROUP BY survey").to_table()
        assert sum(counts["n"]) == expected
        assert set(counts["survey"]) == {"rubin", "ztf"}

        # an event submitted over VTP is in the voevent table within a second of its ack
        xml = tap.search("SELECT TOP 1 xml FROM gateway.voevent WHERE ivorn LIKE '%#%'").to_table()["xml"][0]
        submitted = tmp_path / "submitted.xml"
        ivorn = re.search(r'ivorn="([^"]+)"', xml).group(1)
        new_ivorn = ivorn.replace("#", "#resubmitted-")
        submitted.write_text(xml.replace(ivorn, new_ivorn))
        send = subprocess.run([sys.executable, "-m", "gateway.cli", "send", f"127.0.0.1:{ports['receive']}",
                               str(submitted)], capture_output=True, timeout=60)
        acked = time.monotonic()
        assert send.returncode == 0, send.stdout + send.stderr
        found = tap.search(f"SELECT ivorn, origin FROM gateway.voevent WHERE ivorn = '{new_ivorn}'").to_table()
        assert len(found) == 1 and time.monotonic() - acked < 1.0

        # cutouts referenced by the VOEvents are served as FITS
        ztf = tap.search("SELECT TOP 1 v.xml FROM gateway.alert AS a JOIN gateway.voevent AS v ON a.ivorn = v.ivorn "
                         "WHERE a.survey = 'ztf' AND a.simulated = 0").to_table()["xml"][0]
        url = re.search(r'uri="(http://[^"]+\.fits)"', ztf).group(1)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["content-type"] == "application/fits"
            assert response.read(6) == b"SIMPLE"
    finally:
        stop(process)
