"""What ``vogateway routes`` and ``vogateway outbox`` do: try filters on alerts, see and mend the outbox (their
parsers: ``gateway/commands/routes.py``, ``gateway/commands/outbox.py``, which import this when they run).

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

from gateway.alerts import AlertError
from gateway.commands.options import load_config
from gateway.config import ConfigError
from gateway.convert import make_converter, read_inputs
from gateway.filters import FIELDS, Facts, FilterError, compile_filter
from gateway.forward import outbox
from gateway.forward.routes import RouteError, parse_routes
from gateway.resources import SAMPLES
from gateway.store.db import Database, StoreError
from gateway.voevent.parse import VOEventError, parse_event


def _events(config, inputs):
    """(name, Event or None, error) for every alert in the inputs (Avro) and every ``.xml`` VOEvent file."""
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


def routes_test(args) -> int:
    try:
        compiled = compile_filter(args.filter)
    except FilterError as error:
        print(f"vogateway routes test: {error}", file=sys.stderr)
        return 2
    config = load_config(args)
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


def routes_list(args) -> int:
    config = load_config(args)
    try:
        routes = parse_routes(config.forward, build=False, vtp=config.vtp)
    except RouteError as error:
        raise ConfigError(str(error)) from None
    if not routes:
        print("no routes configured ([[forward.routes]] in the config file)")
    for route in routes:
        cap = f"{route.rate:g}/s" if route.rate else "no rate cap"
        print(f"{route.name}: {route.kind}, {cap}, {route.concurrency} at once, timeout {route.timeout:g} s, "
              f"{route.max_attempts} attempts; filter: {route.filter.text or '(everything)'}")
    return 0


def routes_fields(args) -> int:
    print("Survey-neutral fields (Rubin and ZTF alike; read from the VOEvent for events that arrived as XML):")
    for name, meaning in FIELDS.items():
        print(f"  {name:14s} {meaning}")
    print("Raw alert paths: diaSource.snr, diaObject.nDiaSources, candidate.magpsf, prvDiaSources[0].band, ...")
    print("Functions: cone(ra, dec, radius_deg), distance(ra, dec), after(\"ISO time\"), before(\"ISO time\"),")
    print("           xpath(\"XPath over the VOEvent\"), matches(value, \"regex\"), abs(x), lower(s)")
    print("Operators: and or not, == != < <= > >=, in (...), not in (...), is null, is not null, + - * /")
    return 0


def _database(args):
    url = args.db or load_config(args).store.db
    try:
        return Database(url)
    except StoreError as error:
        print(f"vogateway outbox: {error}", file=sys.stderr)
        return None


def outbox_command(args) -> int:
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
