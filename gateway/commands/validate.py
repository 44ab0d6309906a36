"""``vogateway validate FILE...``: check VOEvents against the VOEvent 2.0 XSD."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.voevent.validate import validate  # the engine, imported when the command runs (see __init__)

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


def register(commands) -> None:
    validate_ = commands.add_parser("validate", help="check VOEvent files against the VOEvent 2.0 XSD")
    validate_.add_argument("files", nargs="+", metavar="FILE")
    validate_.add_argument("-q", "--quiet", action="store_true", help="only print problems")
    validate_.set_defaults(handler=cmd_validate)
