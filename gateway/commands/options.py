"""What the subcommands share: the identity flags, and the config they make together with ``--config``.

A neutral module: ``gateway/cli.py`` and every command module import it; it imports no command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway import config as configuration

#: flag attribute -> (config section, key) it overrides
FLAG_KEYS = {
    "authority": ("gateway", "authority"), "stream": ("gateway", "stream"),
    "public_url": ("gateway", "public_url"), "role": ("gateway", "role"),
    "state_dir": ("gateway", "state_dir"),
    "schema_registry": ("sources", "schema_registry"), "source": ("sources", "inputs"),
    "watch": ("sources", "watch"), "workers": ("sources", "workers"), "output": ("output", "directory"),
    "db": ("store", "db"), "http": ("http", "listen"),
    "broadcast": ("vtp", "broadcast"), "receive": ("vtp", "receive"),
    "remote": ("vtp", "remotes"), "filter": ("vtp", "filter"), "local_ivo": ("vtp", "local_ivo"),
}


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (see `vogateway config`)")


def add_identity_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the flags that decide what VOEvents built from alerts are called and point at."""
    add_config_flag(parser)
    parser.add_argument("--authority", help="IVORN authority (config gateway.authority)")
    parser.add_argument("--stream", help="IVORN stream name (config gateway.stream)")
    parser.add_argument("--public-url", help="base URL for cutout references (config gateway.public_url)")
    parser.add_argument("--role", choices=("auto", "observation", "test", "utility"),
                        help="VOEvent role; auto = test for simulated alerts (config gateway.role)")
    parser.add_argument("--schema-registry", metavar="URL",
                        help="Confluent-compatible schema registry for Rubin schemas (config sources.schema_registry)")


def overrides(args: argparse.Namespace) -> dict:
    """Flags that were given, as a nested dict shaped like the config."""
    result: dict = {}
    for attribute, (section, key) in FLAG_KEYS.items():
        value = getattr(args, attribute, None)
        if value is not None and value is not False:
            result.setdefault(section, {})[key] = value
    return result


def load_config(args: argparse.Namespace) -> configuration.Config:
    """The typed config: defaults, then ``--config``, then the flags given; ConfigError naming a bad key."""
    return configuration.load(getattr(args, "config", None), overrides(args))
