"""The [tap] defaults users read in the config docs are the ones the TAP code runs with."""

import dataclasses

from gateway.config import defaults, frozen
from gateway.tap.settings import TapSettings


def test_config_defaults_are_the_tap_settings_defaults():
    assert {name: frozen(value) for name, value in defaults()["tap"].items()} == dataclasses.asdict(TapSettings())


def test_default_types_match():
    documented = {name: frozen(value) for name, value in defaults()["tap"].items()}
    assert {name: type(value) for name, value in dataclasses.asdict(TapSettings()).items()} == {
        name: type(value) for name, value in documented.items()}
