"""The ``vogateway`` command: one subcommand per job, each a small function taking parsed arguments.

    vogateway serve                    run the gateway (defaults: bundled samples, SQLite, VTP and TAP on loopback)
    vogateway convert INPUT... -o DIR  Avro alerts -> VOEvent files
    vogateway validate FILE...         check VOEvents against the VOEvent 2.0 XSD
    vogateway send HOST:PORT FILE...   submit VOEvents to a VTP broker, as an author
    vogateway config                   print the documented default config
    vogateway routes test FILTER [IN]  which alerts a filter selects (routes list, routes fields)
    vogateway outbox [retry|drop ID]   forwards waiting or failed in the outbox
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway import __version__, config as configuration


def _add_identity_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (see `vogateway config`)")
    parser.add_argument("--authority", help="IVORN authority (config gateway.authority)")
    parser.add_argument("--stream", help="IVORN stream name (config gateway.stream)")
    parser.add_argument("--public-url", help="base URL for cutout references (config gateway.public_url)")
    parser.add_argument("--role", choices=("auto", "observation", "test", "utility"),
                        help="VOEvent role; auto = test for simulated alerts (config gateway.role)")
    parser.add_argument("--schema-registry", metavar="URL",
                        help="Confluent-compatible schema registry for Rubin schemas (config sources.schema_registry)")


def _overrides(args: argparse.Namespace) -> dict:
    """Flags that were given, as a nested dict shaped like the config."""
    mapping = {
        "authority": ("gateway", "authority"), "stream": ("gateway", "stream"),
        "public_url": ("gateway", "public_url"), "role": ("gateway", "role"),
        "state_dir": ("gateway", "state_dir"),
        "schema_registry": ("sources", "schema_registry"), "source": ("sources", "inputs"),
        "watch": ("sources", "watch"), "output": ("output", "directory"),
        "db": ("store", "db"), "http": ("http", "listen"),
        "broadcast": ("vtp", "broadcast"), "receive": ("vtp", "receive"),
        "remote": ("vtp", "remotes"), "filter": ("vtp", "filter"), "local_ivo": ("vtp", "local_ivo"),
    }
    result: dict = {}
    for attribute, (section, key) in mapping.items():
        value = getattr(args, attribute, None)
        if value is not None and value is not False:
            result.setdefault(section, {})[key] = value
    return result


def load_config(args: argparse.Namespace) -> dict:
    return configuration.load(getattr(args, "config", None), _overrides(args))


def cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(configuration.DEFAULTS)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from gateway.convert import convert_inputs

    return convert_inputs(load_config(args), args.inputs, args.output_dir, quiet=args.quiet)


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.voevent.validate import validate

    bad = 0
    for name in args.files:
        try:
            data = Path(name).read_bytes()
        except OSError as error:
            print(f"{name}: cannot read: {error.strerror}")
            bad += 1
            continue
        problems = validate(data)
        if problems:
            bad += 1
            for problem in problems:
                print(f"{name}: {problem}")
        elif not args.quiet:
            print(f"{name}: valid VOEvent 2.0")
    if len(args.files) > 1 or bad:
        print(f"{len(args.files) - bad} valid, {bad} invalid", file=sys.stderr)
    return 1 if bad else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.service import run

    return run(load_config(args), verbose=args.verbose)


def cmd_send(args: argparse.Namespace) -> int:
    from gateway.vtp.author import send_main

    return send_main(args)


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags of `vogateway serve` (shared with `twistd vogateway`)."""
    _add_identity_flags(serve)
    serve.add_argument("--state-dir", help="state directory (config gateway.state_dir, default var)")
    serve.add_argument("--source", action="append", metavar="PATH|kafka://BROKERS/TOPIC",
                       help="alert input (repeatable): Avro file, directory, or Kafka topic")
    serve.add_argument("--watch", action="store_true", default=None, help="keep watching input directories")
    serve.add_argument("--db", metavar="URL", help="alert DB: sqlite:///PATH or postgresql://... "
                                                   "(default sqlite:///var/gateway.db)")
    serve.add_argument("--http", metavar="HOST:PORT", help="TAP and cutouts (default 127.0.0.1:8080)")
    serve.add_argument("--broadcast", metavar="HOST:PORT", help="VTP broker for subscribers (default 127.0.0.1:8099)")
    serve.add_argument("--receive", metavar="HOST:PORT", help="VTP receiver for authors (default 127.0.0.1:8098)")
    serve.add_argument("--remote", action="append", metavar="HOST:PORT",
                       help="subscribe to a remote VTP broker (repeatable)")
    serve.add_argument("--filter", metavar="XPATH", help="XPath filter sent to remote brokers")
    serve.add_argument("--local-ivo", metavar="IVO", help="our IVO identity in VTP transport messages")
    serve.add_argument("--output", metavar="DIR", help="also write every event as DIR/<localID>.xml")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every event, not only summaries")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vogateway",
        description="Rubin/LSST and ZTF Avro alerts in; IVOA VOEvent 2.0 out, over VTP, TAP and forwards.")
    parser.add_argument("--version", action="version", version=f"vogateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway",
                                description="Run the gateway. With no arguments it replays the bundled sample "
                                            "alerts into the embedded default: SQLite under var/, VTP broker on "
                                            "127.0.0.1:8099, receiver on 127.0.0.1:8098, TAP on 127.0.0.1:8080.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)

    convert = commands.add_parser("convert", help="convert Avro alerts to VOEvent files",
                                  description="Convert Avro alert files, directories of them, or one "
                                              "Confluent wire-format packet on stdin (-) to VOEvent 2.0 files.")
    _add_identity_flags(convert)
    convert.add_argument("inputs", nargs="+", metavar="INPUT", help="Avro file, directory, or - for stdin")
    convert.add_argument("-o", "--output-dir", type=Path, required=True, help="where to write <localID>.xml")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(handler=cmd_convert)

    validate = commands.add_parser("validate", help="check VOEvent files against the VOEvent 2.0 XSD")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-q", "--quiet", action="store_true", help="only print problems")
    validate.set_defaults(handler=cmd_validate)

    send = commands.add_parser("send", help="submit VOEvents to a VTP broker, as an author",
                               description="Send VOEvent files to a VTP receiver over one run; prints ack or nak "
                                           "for each; exits non-zero on any nak, timeout or refused connection.")
    send.add_argument("remote", metavar="HOST:PORT", help="the broker's receiver (or a Twisted endpoint string)")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--local-ivo", default="ivo://vogateway.local/author", help="our IVO identity")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each ack (default 10)")
    send.set_defaults(handler=cmd_send)

    from gateway.forward.cli import add_commands as add_forward_commands

    add_forward_commands(commands, _add_identity_flags)  # routes, outbox

    show = commands.add_parser("config", help="print the default config, every key documented")
    show.set_defaults(handler=cmd_config)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except configuration.ConfigError as error:
        print(f"vogateway: config error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
