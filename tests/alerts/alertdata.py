"""Sample alerts for the tests in tests/alerts: one per Rubin schema version, and the real ZTF alerts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fastavro

from gateway.alerts.schemas import SchemaLibrary
from gateway.resources import SAMPLES

LIBRARY = SchemaLibrary()


def rubin_files() -> dict[str, Path]:
    """Version "M.m" -> the lsst-alert-packet fakeAlert.avro bundled under samples/rubin/M.m/."""
    return {path.parent.name: path for path in sorted((SAMPLES / "rubin").glob("*/fakeAlert.avro"))}


def ztf_real_files() -> list[Path]:
    """The three real ZTF alerts (everything in samples/ztf but the generated simulated.avro)."""
    return sorted(p for p in (SAMPLES / "ztf").glob("*.avro") if not p.name.startswith("simulated"))


def first_record(path: Path) -> tuple[dict, dict]:
    """(record, writer schema) of the first alert in a container file."""
    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        return next(reader), reader.writer_schema


def version_key(version: str):
    return tuple(int(part) for part in version.split("."))


class Registry:
    """GET /schemas/ids/<id> -> {"schema": "<avsc>"} for the ids in ``schemas``; counts the requests."""

    def __init__(self, schemas: dict, port: int = 0):
        self.schemas, self.requests = schemas, []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                registry.requests.append(self.path)
                prefix = "/schemas/ids/"
                answer = registry.schemas.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
                if answer is None:
                    self.send_response(404)
                    body = b'{"error_code": 40403, "message": "Schema not found"}'
                else:
                    self.send_response(200)
                    body = answer if isinstance(answer, bytes) else json.dumps({"schema": json.dumps(answer)}).encode()
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
