"""A newcomer's first steps, as README tells them: the demo installs what the next step uses; `serve` says where TAP
and VTP are and how to see an event; README's commands for seeing one arrive work as written."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

from cli.subscriberkit import Subscriber
from support import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.rst").read_text()


def literal_blocks(text: str) -> list[str]:
    """The reStructuredText literal blocks (after a line ending in ``::``), dedented."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:(?: {4}.*)?\n)+)", text):
        lines = [line[4:] for line in match.group(1).splitlines()]
        blocks.append("\n".join(lines).strip())
    return blocks


def test_the_demo_installs_every_module_readme_queries_it_with():
    python = [block for block in literal_blocks(README) if block.startswith("import ")]
    imported = {name for block in python for name in re.findall(r"^import (\w+)", block, re.M)}
    assert imported == {"pyvo"}
    [extras] = re.findall(r"pip install [^\n]*-e '\.\[([\w,]+)\]'", (ROOT / "scripts" / "demo").read_text())
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    declared = setup["options.extras_require"]
    installed = {re.split(r"[ <>=\[]", line.strip())[0].lower() for extra in extras.split(",")
                 for line in declared[extra].splitlines() if line.strip() and not line.strip().startswith("#")}
    assert imported <= installed, (extras, installed)


def test_serve_says_where_tap_and_vtp_are_and_readme_shows_an_event_arriving(tmp_path):
    ports = {name: free_port() for name in ("http", "broadcast", "receive")}
    log_path = tmp_path / "serve.log"
    # defaults as the demo runs them (var/ under the working directory), only the ports moved
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--http", f"127.0.0.1:{ports['http']}",
                                "--broadcast", f"127.0.0.1:{ports['broadcast']}",
                                "--receive", f"127.0.0.1:{ports['receive']}"],
                               cwd=tmp_path, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    subscriber = Subscriber(ports["broadcast"])
    try:
        wait_for(lambda: "replay done" in log_path.read_text(), 120, what="the bundled replay")
        log = log_path.read_text()
        tap = f"http://127.0.0.1:{ports['http']}/tap"
        assert f"TAP at {tap} (e.g. pyvo.dal.TAPService(\"{tap}\"))" in log, log[-2000:]
        assert f"VTP broadcast for subscribers at 127.0.0.1:{ports['broadcast']}" in log
        assert f"VTP receiver for authors at 127.0.0.1:{ports['receive']}" in log
        assert f"to see one arrive, send a new one: vogateway send 127.0.0.1:{ports['receive']} FILE.xml" in log

        subscriber.start()  # joins after the replay: gets nothing until something new comes
        wait_for(lambda: subscriber.connections and "subscriber 127.0.0.1" in log_path.read_text(), 30,
                 what="the subscriber connected")
        [send] = [block for block in literal_blocks(README) if "vogateway send" in block and "sed " in block]
        script = send.replace("127.0.0.1:8098", f"127.0.0.1:{ports['receive']}").replace(
            ".venv/bin/vogateway", f"{sys.executable} -m gateway.cli")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ack" in result.stdout.lower(), result.stdout
        wait_for(lambda: subscriber.received, 30, what="the event at the subscriber")
        [ivorn] = subscriber.received
        assert "#mine-" in ivorn
        again = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr  # a duplicate is acked, not broadcast again
        wait_for(lambda: "duplicate" in log_path.read_text(), 30, what="the receiver logging the duplicate")
        assert subscriber.received == [ivorn]
    finally:
        stop_process(process, 60)
        subscriber.stop()
