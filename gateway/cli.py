"""The ``vogateway`` command, built by registration: each command module adds its own subparser.

    vogateway serve                    run the gateway (defaults: bundled samples, SQLite, VTP and TAP on loopback)
    vogateway convert INPUT... -o DIR  Avro alerts -> VOEvent files
    vogateway validate FILE...         check VOEvents against the VOEvent 2.0 XSD
    vogateway send HOST:PORT FILE...   submit VOEvents to a VTP broker, as an author
    vogateway replay --since T --to H:P  send stored events again (to a broker, or --subscriber IVO)
    vogateway routes test FILTER [IN]  which alerts a filter selects (routes list, routes fields)
    vogateway outbox [retry|drop ID]   forwards waiting or failed in the outbox
    vogateway stats [URL]              throughput and counts of a running gateway (its /metrics)
    vogateway config                   print the documented default config

A command module has ``register(commands)``, which adds its subparser to ``commands`` (argparse subparsers) with
``handler=`` a function of the parsed arguments returning the exit status. :data:`COMMANDS` lists them in the order
``--help`` shows; adding a command is one module and one entry. Flags several commands share live in
``gateway/commands/options.py``, so no command module imports this one.
"""

from __future__ import annotations

import argparse
import sys

from gateway import __version__
from gateway.commands import convert, outbox, replay, routes, send, serve, show_config, stats, validate
from gateway.config import ConfigError

#: the command modules, in the order ``vogateway --help`` lists them
COMMANDS = (serve, convert, validate, send, replay, routes, outbox, stats, show_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vogateway",
        description="Rubin/LSST and ZTF Avro alerts in; IVOA VOEvent 2.0 out, over VTP, TAP and forwards.")
    parser.add_argument("--version", action="version", version=f"vogateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"vogateway: config error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
