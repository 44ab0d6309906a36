"""Helpers shared by test modules: free loopback ports, waiting for a condition, stopping a child process, counts
in a summary."""

import itertools
import random
import re
import socket
import subprocess
import time
from pathlib import Path


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


# Outside the kernel's ephemeral range: a port the kernel hands out (bind to 0) can be taken by any outgoing
# connection before a slow child (Comet takes a second to start) binds it. Walked in a random order so that
# concurrent test runs rarely meet.
_EPHEMERAL = _ephemeral_ports()
_CANDIDATES = [port for port in range(10000, 65536) if port not in _EPHEMERAL]
random.shuffle(_CANDIDATES)
_CANDIDATES = itertools.cycle(_CANDIDATES)


def free_port() -> int:
    """A TCP port nothing listens on, on any interface (Comet binds 0.0.0.0), outside the ephemeral range."""
    for port in _CANDIDATES:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port


def counted(output, text: str) -> bool:
    """Does ``output`` say ``text`` with no digit right before it ("1 converted" is not in "11 converted")?"""
    if isinstance(output, bytes):
        output = output.decode()
    return re.search(r"(?<!\d)" + re.escape(text), output) is not None


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop_process(process, timeout: float = 10.0) -> None:
    """End a child process: SIGTERM, then SIGKILL if it has not exited within ``timeout`` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def skip_or_fail(reason: str):
    """Skip with a loud reason on a developer machine; under CI=true a missing component is a failure."""
    import os

    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required test component missing under CI: {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


class ClockedReactor:
    """The real reactor for sockets and threads, a ``task.Clock`` for time.

    For code that takes one ``reactor`` for both: ``callLater``, ``seconds`` and ``getDelayedCalls`` go to
    ``clock`` (the test advances it), everything else (``connectTCP``, ``callFromThread``, ...) to the reactor.
    """

    def __init__(self, clock, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.clock, self._reactor = clock, reactor

    def callLater(self, delay, function, *args, **kwargs):
        return self.clock.callLater(delay, function, *args, **kwargs)

    def seconds(self) -> float:
        return self.clock.seconds()

    def getDelayedCalls(self):
        return self.clock.getDelayedCalls()

    def __getattr__(self, name):
        return getattr(self._reactor, name)


def query(database, sql: str, params=()) -> list:
    """Rows of ``sql`` on a new read-only connection of ``database`` (a gateway.store Database)."""
    conn = database.reader()
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
