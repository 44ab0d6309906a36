from dataclasses import FrozenInstanceError, fields

import pytest

from gateway import config
from gateway.cli import build_parser
from gateway.commands.options import FLAG_KEYS, load_config


def test_defaults_are_the_documented_text():
    values = config.defaults()
    assert values["store"]["db"] == "sqlite:///var/gateway.db"
    assert values["http"]["listen"] == "127.0.0.1:8080"
    assert values["vtp"]["broadcast"] == "127.0.0.1:8099"
    assert values["vtp"]["receive"] == "127.0.0.1:8098"
    # every key in DEFAULTS is preceded by a comment explaining it
    lines = config.DEFAULTS.splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            # a run of keys may share one comment: walk back over keys, the line before them must be a comment
            above = number - 1
            while above >= 0 and "=" in lines[above] and not lines[above].startswith(("#", "[")):
                above -= 1
            assert above >= 0 and lines[above].startswith("#"), f"undocumented key: {line}"


def test_file_then_flags_override(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nauthority = "example.org"\n[vtp]\nremotes = ["10.0.0.1:8099"]\n')
    args = build_parser().parse_args(["serve", "--config", str(path), "--remote", "127.0.0.1:9000",
                                      "--db", "sqlite:///x.db"])
    values = load_config(args)
    assert values.gateway.authority == "example.org"
    assert values.vtp.remotes == ("127.0.0.1:9000",)
    assert values.store.db == "sqlite:///x.db"


@pytest.mark.parametrize("text, message", [
    ('[vtp]\nremote = ["a:1"]\n', "unknown config key 'vtp.remote'"),
    ('[vtp]\niamalive_interval = "often"\n', "should be float"),
    ('[vtp\n', "gateway.toml"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load(path)


def test_kafka_settings_pass_through_unchecked():
    values = config.load(overrides={"kafka": {"settings": {"security.protocol": "SASL_SSL"}}})
    assert values.kafka.settings == {"security.protocol": "SASL_SSL"}


def test_every_documented_key_is_a_dataclass_field_and_back():
    document = config.defaults()
    typed = config.load()
    assert [f.name for f in fields(config.Config)] == list(document)
    for section, keys in document.items():
        settings = getattr(typed, section)
        assert type(settings) is config.SECTIONS[section]
        assert [f.name for f in fields(settings)] == list(keys), section
        for key, default in keys.items():
            value = getattr(settings, key)
            assert value == (tuple(default) if isinstance(default, list) else default), f"{section}.{key}"


def test_every_flag_names_a_documented_key():
    document = config.defaults()
    for flag, (section, key) in FLAG_KEYS.items():
        assert key in document[section], flag


def test_the_typed_config_is_read_only():
    values = config.load(overrides={"forward": {"routes": [{"name": "a", "kind": "webhook", "url": "http://h/"}]}})
    with pytest.raises(FrozenInstanceError):
        values.store.db = "sqlite:///other.db"
    with pytest.raises(TypeError):
        values.forward.routes[0]["url"] = "http://elsewhere/"


@pytest.mark.parametrize("overrides, message", [
    ({"store": {"max_batch": True}}, "config key 'store.max_batch' should be int, got True"),
    ({"store": "db"}, "config key 'store' is a section"),
    ({"tap": {"maxrec": 5}}, "unknown config key 'tap.maxrec'"),
])
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(overrides=overrides)


def test_a_raw_document_is_checked_like_a_file():
    document = config.defaults()
    document["vtp"]["broadcast"] = ""
    assert config.parse(document).vtp.broadcast == ""
    document["vtp"]["broadcast"] = 8099
    with pytest.raises(config.ConfigError, match="'vtp.broadcast' should be str"):
        config.parse(document)
