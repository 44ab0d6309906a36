"""Every URL the gateway advertises comes from the address actually bound or from public_url, never from a default
of another listener: TAP capabilities, UWS job locations and result links, and the cutout References of VOEvents,
with the HTTP side on a port picked by the system (``--http 127.0.0.1:0``)."""

import re
import signal
import subprocess
import sys
import urllib.request

import pyvo
from lxml import etree

from support import free_port, wait_for


def serve(tmp_path, *flags):
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", "/dev/null",
               "--state-dir", str(tmp_path / "var"), "--db", f"sqlite:///{tmp_path / 'var' / 'gateway.db'}",
               "--output", "", *flags]
    log_path = tmp_path / "serve.log"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    return process, log_path


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_a_port_picked_by_the_system_is_the_one_advertised(tmp_path):
    process, log_path = serve(tmp_path, "--http", "127.0.0.1:0", "--broadcast", f"127.0.0.1:{free_port()}",
                              "--receive", f"127.0.0.1:{free_port()}")
    try:
        wait_for(lambda: "replay done" in log_path.read_text(), 120, what="sample replay")
        base = re.search(r"cutouts and TAP at (http://127\.0\.0\.1:(\d+))", log_path.read_text())
        assert base, log_path.read_text()
        base, port = base.group(1), int(base.group(2))
        assert port not in (0, 8080)
        assert f'TAP at {base}/tap (e.g. pyvo.dal.TAPService("{base}/tap"))' in log_path.read_text()

        capabilities = etree.fromstring(urllib.request.urlopen(f"{base}/tap/capabilities", timeout=10).read())
        urls = {url.text.strip() for url in capabilities.iter("accessURL")}
        assert urls and all(url.startswith(f"{base}/tap") for url in urls), urls

        tap = pyvo.dal.TAPService(f"{base}/tap")
        job = tap.submit_job("SELECT TOP 1 v.xml FROM gateway.alert AS a JOIN gateway.voevent AS v "
                             "ON a.ivorn = v.ivorn WHERE a.survey = 'ztf' AND a.simulated = 0")
        assert job.url.startswith(f"{base}/tap/async/")
        job.run().wait(phases=["COMPLETED", "ERROR"], timeout=60)
        assert job.phase == "COMPLETED"
        assert job.result_uri.startswith(f"{base}/tap/async/")
        xml = job.fetch_result().to_table()["xml"][0]
        cutouts = re.findall(r'uri="([^"]+\.fits)"', xml)
        assert cutouts and all(url.startswith(f"{base}/cutouts/") for url in cutouts), cutouts
        with urllib.request.urlopen(cutouts[0], timeout=10) as response:
            assert response.read(6) == b"SIMPLE"
    finally:
        stop(process)


def test_tap_links_follow_the_host_a_client_used(tmp_path):
    port = free_port()
    process, log_path = serve(tmp_path, "--http", f"127.0.0.1:{port}", "--broadcast", "", "--receive", "")
    try:
        wait_for(lambda: "replay done" in log_path.read_text(), 120, what="sample replay")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/tap/capabilities",
                                         headers={"Host": f"tap.example.org:{port}"})
        capabilities = etree.fromstring(urllib.request.urlopen(request, timeout=10).read())
        urls = {url.text.strip() for url in capabilities.iter("accessURL")}
        assert urls and all(url.startswith(f"http://tap.example.org:{port}/tap") for url in urls), urls
    finally:
        stop(process)


def test_loopback_cutouts_with_a_public_listener_are_warned_about(tmp_path):
    process, log_path = serve(tmp_path, "--http", "127.0.0.1:0", "--broadcast", f"0.0.0.0:{free_port()}",
                              "--receive", "")
    try:
        wait_for(lambda: "replay done" in log_path.read_text(), 120, what="sample replay")
        text = log_path.read_text()
        assert re.search(r"reference cutouts at http://127\.0\.0\.1:\d+, a loopback address, while --broadcast "
                         r"listen beyond this machine", text), text
    finally:
        stop(process)
