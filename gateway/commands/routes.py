"""``vogateway routes test|list|fields``: try filters on alerts, check the configured routes (work in
``gateway/commands/forwarding.py``)."""

from __future__ import annotations

import argparse

from gateway.commands.options import add_config_flag, add_identity_flags


def cmd_routes_test(args: argparse.Namespace) -> int:
    from gateway.commands.forwarding import routes_test  # the engine, imported when the command runs (see __init__)

    return routes_test(args)


def cmd_routes_list(args: argparse.Namespace) -> int:
    from gateway.commands.forwarding import routes_list

    return routes_list(args)


def cmd_routes_fields(args: argparse.Namespace) -> int:
    from gateway.commands.forwarding import routes_fields

    return routes_fields(args)


def register(commands) -> None:
    routes = commands.add_parser("routes", help="try filters; list the configured routes",
                                 description="Filters and routes (config [[forward.routes]]).")
    actions = routes.add_subparsers(dest="routes_command", metavar="ACTION")
    test = actions.add_parser("test", help="which alerts a filter selects",
                              description="Show which alerts (Avro files or directories; the bundled samples by "
                                          "default) or VOEvent .xml files a filter selects.")
    add_identity_flags(test)
    test.add_argument("filter", metavar="FILTER", help="e.g. \"mag < 20 and band in ('g', 'r')\"")
    test.add_argument("inputs", nargs="*", metavar="INPUT", help="Avro file or directory, or VOEvent .xml file")
    test.add_argument("--all", action="store_true", help="also list the events not selected")
    test.add_argument("-q", "--quiet", action="store_true", help="do not list unreadable inputs")
    test.set_defaults(handler=cmd_routes_test)
    listing = actions.add_parser("list", help="the configured routes, checked")
    add_config_flag(listing)
    listing.set_defaults(handler=cmd_routes_list)
    fields = actions.add_parser("fields", help="names and functions a filter may use")
    fields.set_defaults(handler=cmd_routes_fields)
    routes.set_defaults(handler=lambda args: (routes.print_help(), 2)[1])
