"""``vogateway outbox [list|retry|drop]``: forwards waiting, in flight or failed (work in ``gateway/commands/forwarding.py``)."""

from __future__ import annotations

import argparse

from gateway.commands.options import add_config_flag


def cmd_outbox(args: argparse.Namespace) -> int:
    from gateway.commands.forwarding import outbox_command  # the engine, imported when the command runs (see __init__)

    return outbox_command(args)


def register(commands) -> None:
    box = commands.add_parser("outbox", help="list, retry or drop forwards waiting in the outbox",
                              description="The outbox (a table in the alert DB): forwards waiting, in flight or "
                                          "failed. ACTION: list (default), retry, drop.")
    box.add_argument("action", nargs="?", choices=("list", "retry", "drop"))
    box.add_argument("ids", nargs="*", type=int, metavar="ID")
    box.add_argument("--failed", action="store_true", help="retry/drop: every failed item")
    box.add_argument("--route", help="only this route's items")
    box.add_argument("--status", action="append", choices=("pending", "sending", "sent", "failed", "dropped"),
                     help="list: items in this state (repeatable; default pending, sending, failed)")
    box.add_argument("--limit", type=int, default=100, help="list at most this many (default 100)")
    box.add_argument("--db", metavar="URL", help="alert DB (default: config store.db)")
    add_config_flag(box)
    box.set_defaults(handler=cmd_outbox)
