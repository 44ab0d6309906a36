"""The [tap] defaults users read in the config docs are the ones the TAP code runs with."""

import dataclasses

from gateway.config import defaults
from gateway.tap.settings import TapSettings


def test_config_defaults_are_the_tap_settings_defaults():
    assert defaults()["tap"] == dataclasses.asdict(TapSettings())


def test_default_types_match():
    documented = defaults()["tap"]
    assert {name: type(value) for name, value in dataclasses.asdict(TapSettings()).items()} == {
        name: type(value) for name, value in documented.items()}
