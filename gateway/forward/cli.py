"""``vogateway routes`` and ``vogateway outbox``: try filters on alerts, see and mend the outbox.

    vogateway routes test FILTER [INPUT...]    which alerts (bundled samples by default) or VOEvent files it selects
    vogateway routes list                      the configured routes, checked
    vogateway routes fields                    the names and functions filters may use
    vogateway outbox [list]                    pending, sending and failed items
    vogateway outbox retry ID... | --failed    send failed (or dropped) items again
    vogateway outbox drop ID... | --failed     never send these items
"""

from __future__ import annotations

import sys
from pathlib import Path


def _config(args):
    from gateway.cli import load_config

    return load_config(args)


def _events(config, inputs):
    """(name, Event or None, error) for every alert in the inputs (Avro) and every ``.xml`` VOEvent file."""
    from gateway.alerts import AlertError
    from gateway.convert import make_converter, read_inputs
    from gateway.voevent.parse import VOEventError, parse_event

    convert = make_converter(config)
    avro = []
    for name in inputs:
        path = Path(name)
        if path.suffix.lower() == ".xml":
            try:
                yield name, parse_event(path.read_bytes(), origin=name), None
            except (OSError, VOEventError) as error:
                yield name, None, str(error)
        else:
            avro.append(name)
    if not avro:
        return
    for item in read_inputs(config, avro):
        if isinstance(item, AlertError):
            yield item.source, None, str(item)
            continue
        try:
            yield f"{item.source} @ {item.position}", convert(item), None
        except AlertError as error:
            yield item.source, None, str(error)


def _describe(facts) -> str:
    parts = []
    for name, fmt in (("survey", "{}"), ("object", "{}"), ("band", "{}"), ("mag", "{:.2f}"),
                      ("reliability", "rel {:.2f}")):
        value = facts.get(name)
        if value is not None:
            try:
                parts.append(fmt.format(value))
            except (ValueError, TypeError):
                parts.append(str(value))
    return " ".join(parts)


def cmd_routes_test(args) -> int:
    from gateway.filters import Facts, FilterError, compile_filter
    from gateway.resources import SAMPLES

    try:
        compiled = compile_filter(args.filter)
    except FilterError as error:
        print(f"vogateway routes test: {error}", file=sys.stderr)
        return 2
    config = _config(args)
    selected = total = bad = 0
    for name, event, error in _events(config, args.inputs or [str(SAMPLES)]):
        if event is None:
            bad += 1
            if not args.quiet:
                print(f"unreadable  {name}: {error}")
            continue
        total += 1
        facts = Facts(event)
        if compiled.matches(facts):
            selected += 1
            print(f"selected    {event.ivorn}  {_describe(facts)}")
        elif args.all:
            print(f"not         {event.ivorn}  {_describe(facts)}")
    print(f"{selected} of {total} events selected" + (f"; {bad} unreadable" if bad else ""), file=sys.stderr)
    return 0


def cmd_routes_list(args) -> int:
    from gateway.forward.routes import parse_routes

    routes = parse_routes(_config(args), build=False)
    if not routes:
        print("no routes configured ([[forward.routes]] in the config file)")
    for route in routes:
        cap = f"{route.rate:g}/s" if route.rate else "no rate cap"
        print(f"{route.name}: {route.kind}, {cap}, {route.concurrency} at once, timeout {route.timeout:g} s, "
              f"{route.max_attempts} attempts; filter: {route.filter.text or '(everything)'}")
    return 0


def cmd_routes_fields(args) -> int:
    from gateway import filters

    print("Survey-neutral fields (Rubin and ZTF alike; read from the VOEvent for events that arrived as XML):")
    for name, meaning in filters.FIELDS.items():
        print(f"  {name:14s} {meaning}")
    print("Raw alert paths: diaSource.snr, diaObject.nDiaSources, candidate.magpsf, prvDiaSources[0].band, ...")
    print("Functions: cone(ra, dec, radius_deg), distance(ra, dec), after(\"ISO time\"), before(\"ISO time\"),")
    print("           xpath(\"XPath over the VOEvent\"), matches(value, \"regex\"), abs(x), lower(s)")
    print("Operators: and or not, == != < <= > >=, in (...), not in (...), is null, is not null, + - * /")
    return 0


def _database(args):
    from gateway.store.db import Database, StoreError

    config = _config(args)
    url = args.db or config["store"]["db"]
    try:
        return Database(url)
    except StoreError as error:
        print(f"vogateway outbox: {error}", file=sys.stderr)
        return None


def cmd_outbox(args) -> int:
    from gateway.forward import outbox

    database = _database(args)
    if database is None:
        return 2
    try:
        action = args.action or "list"
        if action == "list":
            statuses = args.status or ["pending", "sending", "failed"]
            rows = outbox.list_items(database, statuses, args.route, args.limit)
            for row in rows:
                error = f"  error: {row['last_error']}" if row["last_error"] else ""
                result = f"  result: {row['result']}" if row["result"] else ""
                print(f"{row['id']:>7}  {row['route']}  {row['status']}/{row['stage']}  attempts {row['attempts']}"
                      f"{'  uncertain' if row['uncertain'] else ''}  {row['key']}{result}{error}")
            totals = outbox.counts(database)
            summary = ", ".join(f"{route} {status} {n}" for (route, status), n in totals.items()) or "empty"
            print(f"outbox: {summary}", file=sys.stderr)
            return 0
        if not args.ids and not args.failed:
            print(f"vogateway outbox {action}: give item ids, or --failed for every failed item", file=sys.stderr)
            return 2
        change = outbox.retry_items if action == "retry" else outbox.drop_items
        count = change(database, args.ids, all_failed=args.failed, route=args.route)
        print(f"{count} item{'s' if count != 1 else ''} {'queued again' if action == 'retry' else 'dropped'}")
        return 0
    finally:
        database.stop()


def add_commands(commands, add_identity_flags) -> None:
    """Register ``routes`` and ``outbox`` on the ``vogateway`` subparsers (``gateway/cli.py`` calls this)."""
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
    listing.add_argument("--config", type=Path, help="TOML config file")
    listing.set_defaults(handler=cmd_routes_list)
    fields = actions.add_parser("fields", help="names and functions a filter may use")
    fields.set_defaults(handler=cmd_routes_fields)
    routes.set_defaults(handler=lambda args: (routes.print_help(), 2)[1])

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
    box.add_argument("--config", type=Path, help="TOML config file")
    box.set_defaults(handler=cmd_outbox)
