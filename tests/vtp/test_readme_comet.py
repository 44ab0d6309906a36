"""README's Comet subscriber command, run as written (only the port and DIR put in), gets what our broker sends."""

import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest_twisted
from support import stop_process
from vtp.cometkit import BIN, comet_file_name, require_comet
from vtp.test_loopback import Node, until
from vtp.vtpkit import ivorn, voevent

from gateway.vtp.author import send_events

README = Path(__file__).resolve().parents[2] / "README.rst"


def readme_comet_command() -> str:
    text = README.read_text()
    [command] = re.findall(r"``(twistd -n comet [^`]+)``", text)
    return command


@pytest_twisted.inlineCallbacks
def test_the_readme_comet_command_subscribes_and_saves_our_events(tmp_path):
    require_comet()
    node = yield Node().listen()
    saved = tmp_path / "saved"
    saved.mkdir()
    command = readme_comet_command().replace("127.0.0.1:8099", node.broadcast).replace("DIR", str(saved))
    argv = shlex.split(command)
    argv[0] = str(BIN / argv[0])  # the venv's twistd, which has Comet's plugin
    comet = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield until(lambda: comet.poll() is not None or any(s.remote_ivo for s in node.broker.subscribers),
                    timeout=30, what="Comet, started from README's command, subscribing")
        assert comet.poll() is None, comet.stdout.read().decode(errors="replace")[-2000:]
        # README's command gives Comet no --eventdb: its default one is shared across runs, and Comet saves an
        # IVORN it has seen before never again, so every run sends a new one
        local = f"readme-comet-{uuid.uuid4().hex[:8]}"
        results = yield send_events(node.receive, [voevent(local)], timeout=10)
        assert all(r.accepted for r in results), results
        target = saved / comet_file_name(ivorn(local))
        yield until(lambda: target.exists() and target.stat().st_size > 0, timeout=30, what="Comet saving it")
        assert local.encode() in target.read_bytes()
    finally:
        stop_process(comet)
        yield node.close()
