"""The [tap] settings: the defaults users read in the config docs are the ones the TAP code runs with; the
standalone server (``python -m gateway.tap.server``) says what is wrong with its DB in one line."""

import dataclasses
import subprocess
import sys

import pytest

from gateway.config import defaults, frozen
from gateway.tap.settings import TapSettings


def test_config_defaults_are_the_tap_settings_defaults():
    assert {name: frozen(value) for name, value in defaults()["tap"].items()} == dataclasses.asdict(TapSettings())


def test_default_types_match():
    documented = {name: frozen(value) for name, value in defaults()["tap"].items()}
    assert {name: type(value) for name, value in dataclasses.asdict(TapSettings()).items()} == {
        name: type(value) for name, value in documented.items()}


@pytest.mark.parametrize("options, said", [
    (["--db", "nosuch://x"], "store URL 'nosuch://x': expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"),
    (["--db", "postgresql://nobody@127.0.0.1:1/none"], "cannot connect to PostgreSQL 'postgresql://nobody@127.0.0.1:1/none'"),
    (["--cutouts", "{file}/cutouts"], "cannot make the cutout directory {file}/cutouts: Not a directory"),
])
def test_the_standalone_server_says_what_is_wrong_with_its_db_in_one_line(tmp_path, options, said):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    options = [option.format(file=a_file) for option in options]
    if "--db" not in options:
        options += ["--db", f"sqlite:///{tmp_path / 'alerts.db'}"]
    result = subprocess.run([sys.executable, "-m", "gateway.tap.server", *options], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("gateway.tap.server: " + said.format(file=a_file)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
