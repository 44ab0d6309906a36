"""Running gateways for the web tests (status, metrics, browser): ``vogateway serve`` as a user runs it (its own process, real sockets on
loopback), a second one subscribed to its broker as a real VTP subscriber, and bursts of alert files."""

import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gateway.alerts import AlertError
from gateway.alerts.files import iter_inputs
from gateway.resources import SAMPLES
from support import free_port, stop_process, wait_for


@dataclass
class Served:
    process: subprocess.Popen
    log: Path
    ports: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def get(self, path: str, accept: str = "*/*") -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.url + path, headers={"Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers["content-type"], response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"], error.read()

    def metrics(self) -> dict:
        from gateway.commands.stats import parse_metrics

        return parse_metrics(self.get("/metrics")[2].decode())

    def stop(self) -> None:
        stop_process(self.process, 30)


def serve(tmp: Path, name: str, *args: str, config: str = "") -> Served:
    """Start ``vogateway serve`` with its state under ``tmp/name``, on free ports (http, broadcast, receive)."""
    home = tmp / name
    home.mkdir(parents=True)
    ports = {key: free_port() for key in ("http", "broadcast", "receive")}
    (home / "gateway.toml").write_text(config)
    log = home / "serve.log"
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(home / "gateway.toml"),
               "--state-dir", str(home / "var"), "--db", f"sqlite:///{home / 'var' / 'gateway.db'}", "--workers", "-1",
               "--http", f"127.0.0.1:{ports['http']}", "--broadcast", f"127.0.0.1:{ports['broadcast']}",
               "--receive", f"127.0.0.1:{ports['receive']}", *args]
    served = Served(subprocess.Popen(command, cwd=home, stdout=open(log, "ab"), stderr=subprocess.STDOUT), log, ports)
    try:
        wait_for(lambda: served.process.poll() is not None or _answers(served), 60, what=f"{name} to serve HTTP")
    except AssertionError:
        served.stop()
        raise
    assert served.process.poll() is None, log.read_text()
    return served


def _answers(served: Served) -> bool:
    try:
        return served.get("/health")[0] == 200
    except OSError:
        return False


@dataclass
class Burst:
    """Alert files to drop into a watched directory, and what the gateway must make of them."""

    files: list  # paths to copy, in order
    alerts: int  # distinct alerts (distinct IVORNs)
    duplicates: int  # alerts that come a second time (a copied file)
    rejects: dict  # reason kind -> count
    with_position: int


def make_burst(folder: Path) -> Burst:
    """The real ZTF samples, a Rubin 11.1 file, one ZTF file again under another name, and one broken file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((SAMPLES / "ztf").glob("*.avro")) + [SAMPLES / "rubin" / "11.1" / "simulated.avro"]
    copies = [shutil.copy(path, folder / f"{index}-{path.name}") for index, path in enumerate(files)]
    again = shutil.copy(files[0], folder / "again.avro")
    broken = folder / "broken.avro"
    broken.write_bytes(b"Obj\x01these bytes are not an Avro container")
    alerts = [item for item in iter_inputs([str(p) for p in copies]) if not isinstance(item, AlertError)]
    repeated = [item for item in iter_inputs([str(again)]) if not isinstance(item, AlertError)]
    rejects: dict = {}
    for item in iter_inputs([str(broken)]):
        kind = item.reason.split(":")[0]
        rejects[kind] = rejects.get(kind, 0) + 1
    return Burst([*copies, again, broken], len(alerts), len(repeated), rejects, len(alerts))


def drop(paths, into: Path) -> None:
    """Move files into a watched directory whole (write beside it, then rename), as a producer should."""
    staging = into.parent / f"{into.name}.staging"
    into.mkdir(parents=True, exist_ok=True)
    staging.mkdir(exist_ok=True)
    for path in paths:
        partial = Path(shutil.copy(path, staging / Path(path).name))
        partial.rename(into / partial.name)


#: an object name no survey would send, to check that the status page shows alert text as text
HOSTILE_NAME = '<script>window.hostile=1</script><img src=x onerror="window.hostile=2">'


def hostile_ztf(path: Path) -> int:
    """A real ZTF alert (the 3.3 sample) re-written with a new candid and HOSTILE_NAME as its objectId; its alert id."""
    import fastavro

    with open(SAMPLES / "ztf" / "1661382530015060001.avro", "rb") as handle:
        reader = fastavro.reader(handle)
        schema, (record,) = reader.writer_schema, list(reader)
    record["objectId"] = HOSTILE_NAME
    record["candid"] += 7
    record["candidate"]["candid"] = record["candid"]
    with open(path, "wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), [record])
    return record["candid"]
