"""``vogateway convert INPUT... -o DIR``: Avro alerts to one VOEvent file each (the work is in gateway/convert.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.commands.options import add_identity_flags, load_config


def cmd_convert(args: argparse.Namespace) -> int:
    from gateway.convert import convert_inputs  # the engine, imported when the command runs (see __init__)

    return convert_inputs(load_config(args), args.inputs, args.output_dir, quiet=args.quiet)


def register(commands) -> None:
    convert = commands.add_parser("convert", help="convert Avro alerts to VOEvent files",
                                  description="Convert Avro alert files, directories of them, or one "
                                              "Confluent wire-format packet on stdin (-) to VOEvent 2.0 files.")
    add_identity_flags(convert)
    convert.add_argument("inputs", nargs="+", metavar="INPUT", help="Avro file, directory, or - for stdin")
    convert.add_argument("-o", "--output-dir", type=Path, required=True,
                         help="where to write the VOEvents, one file each, named after the IVORN")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(handler=cmd_convert)
