"""``vogateway config``: print the default config, every key documented."""

from __future__ import annotations

import argparse
import sys

from gateway import config as configuration


def cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(configuration.DEFAULTS)
    return 0


def register(commands) -> None:
    show = commands.add_parser("config", help="print the default config, every key documented")
    show.set_defaults(handler=cmd_config)
