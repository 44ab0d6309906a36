"""Real Comet processes on loopback for the interop tests (Comet 3.1.0 binds 0.0.0.0: we only use 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from support import free_port, skip_or_fail, stop_process

BIN = Path(sys.executable).parent


def require_comet():
    """Skip loudly without Comet; under CI=true that is a failure (skip_or_fail)."""
    if importlib.util.find_spec("comet") is None or not (BIN / "twistd").exists():
        skip_or_fail("Comet (pip install comet) is not importable: the VTP interop tests need the real Comet")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Comet:
    """One ``twistd -n comet`` process in its own directory; ``stop()`` ends it (by its own pid)."""

    def __init__(self, workdir: Path, name: str, *options: str):
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "eventdb").mkdir(exist_ok=True)
        self.events = self.dir / "events"
        self.log = self.dir / "comet.log"
        command = [str(BIN / "twistd"), "-n", f"--pidfile={self.dir / 'twistd.pid'}", f"--logfile={self.log}",
                   "comet", f"--local-ivo=ivo://vtp.test/{name}", f"--eventdb={self.dir / 'eventdb'}", *options]
        # cwd: Comet's event writer takes lock files in the current directory
        self.process = subprocess.Popen(command, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @classmethod
    def broker(cls, workdir: Path, name: str = "comet-broker") -> "Comet":
        receive, broadcast = free_port(), free_port()
        comet = cls(workdir, name, "--receive", f"--receive-port={receive}", "--broadcast",
                    f"--broadcast-port={broadcast}", "--broadcast-test-interval=0",
                    "--author-whitelist=127.0.0.1/32")
        comet.receive, comet.broadcast = receive, broadcast
        comet.wait_listening(receive, broadcast)
        return comet

    @classmethod
    def subscriber(cls, workdir: Path, remote: str, name: str = "comet-subscriber") -> "Comet":
        comet = cls(workdir, name, f"--remote={remote}", "--save-event", f"--save-event-directory={workdir / name / 'events'}")
        return comet

    def wait_listening(self, *ports: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(_listening(port) for port in ports):
            if self.process.poll() is not None:
                raise RuntimeError(f"Comet exited with {self.process.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Comet did not listen on {ports} within {timeout} s: {self.output()}")
            time.sleep(0.05)

    def saved(self) -> dict[str, bytes]:
        """Events a --save-event subscriber wrote, by file name (Comet names them after the IVORN)."""
        if not self.events.is_dir():
            return {}
        return {path.name: path.read_bytes() for path in self.events.iterdir() if path.is_file()}

    def output(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-3000:]

    def stop(self) -> None:
        stop_process(self.process)


def comet_file_name(ivorn: str) -> str:
    """The file name Comet's save-event handler gives an event (its documented IVORN -> name rule)."""
    name = ivorn[1:] if ivorn.startswith(".") else ivorn
    allowed = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.")
    return "".join(c for c in name.replace("/", "_").replace("\\", "_") if c in allowed)


def sendvo(port: int, path: Path):
    """Run ``comet-sendvo`` without blocking the reactor; fires with (stdout, stderr, exit code)."""
    from twisted.internet import utils

    return utils.getProcessOutputAndValue(str(BIN / "comet-sendvo"),
                                          ["-h", "127.0.0.1", "-p", str(port), "-f", str(path)], env=os.environ)
