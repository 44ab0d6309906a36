"""``vogateway replay``: send stored events again, to a VTP broker (as an author) or to one subscriber of a
running gateway. See ``DESCRIPTION`` (the command's --help) for the semantics.

    vogateway replay --since 2h --to 127.0.0.1:8098                  the alert DB, as an author to a broker
    vogateway replay --since 2026-12-01T00:00Z --until 2026-12-02 --subscriber ivo://them/sub
    vogateway replay --from kafka://HOST:PORT/TOPIC --offset 1200 --to HOST:PORT
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

from gateway.commands.options import add_config_flag, load_config

DESCRIPTION = """\
Send stored events again. From the alert DB (default; --db or config store.db): the VOEvents the gateway received
or built in [--since, --until), by the time it received them, oldest first. From a Kafka topic (--from
kafka://BROKERS/TOPIC): the messages from --offset N, or from the first offset at --since, on every partition, up
to --until or to the end the topic had when the replay started; alerts are made into VOEvents again as `serve`
would (same IVORNs; Citations only of alerts seen in this replay).

To --to HOST:PORT: as a VTP author to that broker's receiver, one event at a time, each acked or nak'd (a broker
that has an IVORN already may nak it). To --subscriber IVO: the running gateway (its HTTP side, --http, default
config http.listen, from this host only) sends them to its connected VTP subscriber(s) with that IVO, through
their filters, paced by their acks; live events keep flowing meanwhile.

These are the same events with the same IVORNs as before, not new ones: a subscriber that has one already drops
it (VTP subscribers deduplicate by IVORN). TIME is ISO-8601 (UTC when no zone is given) or a duration before now
(90s, 10m, 2h, 1d). Bad arguments: one sentence and exit 2; events not answered: exit 1."""


class ReplayArgumentError(ValueError):
    """An argument that cannot be used; the message is the sentence printed."""


def parse_time(text: str, now: datetime) -> datetime:
    """An aware UTC datetime from ISO-8601 text or a duration before ``now``."""
    from gateway.times import TimeError, parse_duration, parse_iso

    value = text.strip()
    if re.fullmatch(r"[0-9.]+\s*[smhdw]?", value) and not re.fullmatch(r"\d{4}(-\d\d)*", value):
        return now - timedelta(seconds=parse_duration(value))
    try:
        return parse_iso(value)
    except TimeError:
        raise ReplayArgumentError(f"{text!r} is neither an ISO-8601 time (2026-12-01T12:00:00Z) nor a duration "
                                  "before now (90s, 10m, 2h, 1d)") from None


def http_base(listen: str) -> str:
    """The http:// base URL of a gateway whose ``http.listen`` is ``listen`` (HOST:PORT or ``tcp:PORT[:interface=
    HOST]``)."""
    match = re.fullmatch(r"(?:tcp:)?(?P<port>\d+)(?::interface=(?P<host>[^:]+))?", listen.strip())
    if match:
        return f"http://{match.group('host') or '127.0.0.1'}:{match.group('port')}"
    match = re.fullmatch(r"\[?(?P<host>[^\[\]]+?)\]?:(?P<port>\d+)", listen.strip())
    if not match:
        raise ReplayArgumentError(f"--http {listen!r}: expected HOST:PORT of the running gateway's HTTP side")
    host = match.group("host")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{match.group('port')}" if ":" in host else f"http://{host}:{match.group('port')}"


def checked(args: argparse.Namespace, now: datetime) -> dict:
    """The replay the arguments ask for, checked: since/until (datetimes or None), source, target; or
    ReplayArgumentError."""
    since = parse_time(args.since, now) if args.since else None
    until = parse_time(args.until, now) if args.until else None
    if since is not None and until is not None and until <= since:
        raise ReplayArgumentError(f"--until ({until.isoformat()}) is not after --since ({since.isoformat()})")
    if args.kafka_from:
        if not args.kafka_from.startswith("kafka://"):
            raise ReplayArgumentError(f"--from {args.kafka_from!r}: expected kafka://BROKERS/TOPIC (the alert DB is the "
                                      "default source; name it with --db)")
        if args.subscriber:
            raise ReplayArgumentError("--subscriber replays from the running gateway's alert DB; a Kafka topic "
                                      "(--from) goes to a broker with --to")
        if since is None and args.offset is None:
            raise ReplayArgumentError("--from kafka:// needs --offset N or --since TIME (where to start)")
    elif args.offset is not None:
        raise ReplayArgumentError("--offset is a Kafka offset: give the topic with --from kafka://BROKERS/TOPIC "
                                  "(the alert DB replays by time: --since)")
    elif since is None:
        raise ReplayArgumentError("give --since TIME: where in the alert DB the replay starts")
    if args.offset is not None and args.offset < 0:
        raise ReplayArgumentError(f"--offset {args.offset}: offsets start at 0")
    if args.limit < 0:
        raise ReplayArgumentError(f"--limit {args.limit}: give a number of events, 0 for all")
    return {"since": since, "until": until}


def _database_url(args) -> str:
    """The alert DB URL, refusing a SQLite file that is not there (opening it would make an empty one)."""
    from gateway.store.db import StoreError, parse_url

    url = args.db or load_config(args).store.db
    try:
        kind, target = parse_url(url)
    except StoreError as error:
        raise ReplayArgumentError(str(error)) from None
    if kind == "sqlite" and target != ":memory:" and not Path(target).is_file():
        raise ReplayArgumentError(f"no alert DB at {target} (give --db sqlite:///PATH or postgresql://...)")
    return url


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.times import utcnow

    try:
        plan = checked(args, utcnow())
        if args.subscriber:
            base = http_base(args.http or load_config(args).http.listen or "127.0.0.1:8080")
            from gateway.commands.replay_run import replay_to_subscriber

            return replay_to_subscriber(base, args.subscriber, plan["since"], plan["until"], args.limit, args.quiet)
        from gateway.commands.replay_run import replay_to_broker

        if args.kafka_from:
            from gateway.commands.replay_kafka import KafkaBatches, SourceError

            try:
                batches = KafkaBatches(load_config(args), args.kafka_from, args.offset, plan["since"], plan["until"],
                                       args.limit)
            except SourceError as error:
                raise ReplayArgumentError(str(error)) from None
        else:
            from gateway.commands.replay_run import DatabaseBatches

            batches = DatabaseBatches(_database_url(args), plan["since"], plan["until"], args.limit)
        return replay_to_broker(batches, args.to, args.local_ivo, args.timeout, args.quiet)
    except ReplayArgumentError as error:
        print(f"vogateway replay: {error}", file=sys.stderr)
        return 2


def register(commands) -> None:
    replay = commands.add_parser("replay", help="send stored events again, to a broker or to one subscriber",
                                 description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flag(replay)
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--since", metavar="TIME", help="from this time (received; Kafka: message time)")
    start.add_argument("--offset", type=int, metavar="N", help="Kafka: from this offset on every partition")
    replay.add_argument("--until", metavar="TIME", help="up to this time, excluded (default: now)")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="HOST:PORT", help="a VTP broker's receiver (HOST:PORT, tls:HOST:PORT, or "
                                                          "a Twisted endpoint string): we are its author")
    target.add_argument("--subscriber", metavar="IVO", help="the connected subscriber of the running gateway that "
                                                            "answered authenticate with this IVO")
    replay.add_argument("--db", metavar="URL", help="alert DB (default: config store.db)")
    replay.add_argument("--from", dest="kafka_from", metavar="kafka://BROKERS/TOPIC", help="replay a Kafka topic")
    replay.add_argument("--http", metavar="HOST:PORT", help="--subscriber: the running gateway's HTTP side "
                                                            "(default: config http.listen)")
    replay.add_argument("--limit", type=int, default=0, metavar="N", help="at most N events (default 0: all)")
    replay.add_argument("--local-ivo", default="ivo://vogateway.local/replay", help="--to: our IVO identity")
    replay.add_argument("--timeout", type=float, default=10.0, help="--to: seconds to wait for each ack")
    replay.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(handler=cmd_replay)

