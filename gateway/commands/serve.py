"""``vogateway serve``: run the gateway (``twistd vogateway`` takes the same flags, from :func:`add_serve_arguments`)."""

from __future__ import annotations

import argparse

from gateway.commands.options import add_identity_flags, load_config


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags of `vogateway serve` (shared with `twistd vogateway`)."""
    add_identity_flags(serve)
    serve.add_argument("--state-dir", help="state directory (config gateway.state_dir, default var)")
    serve.add_argument("--source", action="append", metavar="PATH|kafka://BROKERS/TOPIC",
                       help="alert input (repeatable): Avro file, directory, or Kafka topic")
    serve.add_argument("--watch", action="store_true", default=None, help="keep watching input directories")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes decoding alerts and building VOEvents (config sources.workers; "
                            "default one per core; -1: none, all in the reactor process)")
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


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.service import run  # the engine, imported when the command runs (see __init__)

    return run(load_config(args), verbose=args.verbose)


def register(commands) -> None:
    serve = commands.add_parser("serve", help="run the gateway",
                                description="Run the gateway. With no arguments it replays the bundled sample "
                                            "alerts into the embedded default: SQLite under var/, VTP broker on "
                                            "127.0.0.1:8099, receiver on 127.0.0.1:8098, TAP on 127.0.0.1:8080.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)
