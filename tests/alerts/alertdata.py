"""Sample alerts for the tests in tests/alerts: one per Rubin schema version, and the real ZTF alerts."""

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
