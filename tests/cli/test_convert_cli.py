"""`vogateway convert` and `vogateway validate`, run as a user would (real subprocess, real files)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.resources import SAMPLES
from gateway.voevent.validate import validate
from support import counted

VOGATEWAY = [sys.executable, "-m", "gateway.cli"]


def run(*args, stdin=None):
    return subprocess.run([*VOGATEWAY, *map(str, args)], input=stdin, capture_output=True, timeout=300)


def sample_files(survey):
    return sorted((SAMPLES / survey).rglob("*.avro"))


def test_convert_every_bundled_alert_of_every_schema_version(tmp_path):
    from gateway.alerts.files import iter_inputs

    expected = sum(1 for item in iter_inputs([str(SAMPLES)]) if not isinstance(item, Exception))
    result = run("convert", SAMPLES, "-o", tmp_path, "-q")
    assert result.returncode == 0, result.stderr.decode()
    written = sorted(tmp_path.glob("*.xml"))
    assert len(written) == expected > 0
    assert counted(result.stderr, f"{expected} converted")
    for path in written:
        assert validate(path.read_bytes()) == [], path
    versions = {path.parent.name for path in sample_files("rubin")}
    assert len(versions) >= 15, versions  # every schema version lsst-alert-packet ships, 3.0 ... 11.1


def test_a_bad_file_is_reported_and_the_rest_still_converted(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = sample_files("ztf")[0]
    (inputs / "good.avro").write_bytes(good.read_bytes())
    (inputs / "truncated.avro").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (inputs / "notes.txt").write_text("not an alert")
    result = run("convert", inputs, "-o", tmp_path / "out", "-q")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "truncated.avro" in err and f"left out: {inputs / 'notes.txt'} (not an Avro container file)" in err
    assert counted(err, "1 converted") and counted(err, "1 rejected") and counted(err, "1 non-Avro file left out")
    assert len(list((tmp_path / "out").glob("*.xml"))) == 1


def test_output_that_is_a_file_an_empty_input_and_notes_beside_the_data(tmp_path):
    existing = tmp_path / "existing.txt"
    existing.write_text("a file")
    result = run("convert", sample_files("ztf")[0], "-o", existing, "-q")
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert f"vogateway convert: -o {existing} is a file, not a directory".encode() in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("convert", empty, "-o", tmp_path / "out", "-q")
    assert result.returncode == 1 and f"no alerts found in {empty}".encode() in result.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "alert.avro").write_bytes(sample_files("ztf")[0].read_bytes())
    (data / "NOTES.md").write_text("# what these alerts are\n")
    result = run("convert", data, "-o", tmp_path / "out2", "-q")
    assert result.returncode == 0, result.stderr.decode()  # notes beside the data do not fail the run
    assert b"left out" in result.stderr and counted(result.stderr, "1 converted")


def test_one_wire_format_packet_on_stdin(tmp_path):
    import fastavro

    from gateway.alerts.decode import encode_wire

    path = next(p for p in sample_files("rubin") if p.parent.name == "7.4")
    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        record, schema = next(reader), reader.writer_schema
    packet = encode_wire(record, 704, schema)
    result = run("convert", "-", "-o", tmp_path, "-q", stdin=packet)
    assert result.returncode == 0, result.stderr.decode()
    [written] = tmp_path.glob("*.xml")
    assert validate(written.read_bytes()) == []

    result = run("convert", "-", "-o", tmp_path, "-q", stdin=b"\x01" + packet[1:])
    assert result.returncode == 1
    assert b"stdin" in result.stderr and b"magic" in result.stderr.lower()


def test_validate_says_what_is_wrong_and_where(tmp_path):
    converted = tmp_path / "ok"
    run("convert", sample_files("ztf")[0], "-o", converted, "-q")
    [good] = converted.glob("*.xml")
    broken = tmp_path / "broken.xml"
    broken.write_bytes(good.read_bytes().replace(b"<Who>", b"<Whom>").replace(b"</Who>", b"</Whom>"))
    result = run("validate", good, broken)
    assert result.returncode == 1
    out = result.stdout.decode()
    assert f"{good}: valid" in out
    assert str(broken) in out and "Whom" in out and "line" in out.lower()


def test_config_prints_documented_parseable_defaults():
    result = run("config")
    assert result.returncode == 0
    assert tomllib.loads(result.stdout.decode())["vtp"]["broadcast"] == "127.0.0.1:8099"


def test_no_command_prints_help():
    result = run()
    assert result.returncode == 2 and b"serve" in result.stdout


def test_upstream_fake_alerts_with_seconds_for_days_are_rejected_with_a_reason_and_the_rest_converted(tmp_path):
    """lsst-alert-packet's own fakeAlert.avro of 3.0 ... 7.4 carries midpointMjdTai = 1480360995.0 (Unix seconds
    where an MJD belongs): each such alert is one clear rejection, never a traceback, and later inputs still go."""
    packet = pytest.importorskip("lsst.alert.packet")
    root = Path(packet.__file__).parent / "schema"
    inputs = [root / version / "sample_data" / "fakeAlert.avro" for version in ("3/0", "4/0", "7/4", "11/1")]
    result = run("convert", *inputs, "-o", tmp_path, "-q")
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    assert "Traceback" not in errors and "Error(" not in errors
    assert errors.count("no usable time: time 1480360995.0 is not an MJD within the years 1 to 9999") == 3
    assert counted(errors, "1 converted, 0 duplicates, 3 rejected (3 × no usable time)")
    assert len(list(tmp_path.glob("*.xml"))) == 1
