"""``vogateway serve``: run the gateway (``twistd vogateway`` takes the same flags, from :func:`add_serve_arguments`)."""

from __future__ import annotations

import argparse
import re

from gateway.commands.options import add_identity_flags, load_config
from gateway.endpoints import configured_host_port


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
    serve.add_argument("--output", metavar="DIR",
                       help="also write every event into DIR, one file each, named after its IVORN")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every event, not only summaries")


def shown(host: str, port: int) -> str:
    """``HOST:PORT`` for a person: a listener on every interface is reached from here at 127.0.0.1."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return f"{host}:{port}"


def configured_address(description: str) -> str:
    """Where a listener is, for a person: ``HOST:PORT`` for ``HOST:PORT``, ``tls:HOST:PORT`` and
    ``tcp:PORT:interface=HOST`` / ``ssl:PORT:...``; other endpoint strings (``unix:...``) as given."""
    text = description.strip()
    named = configured_host_port(text[len("tls:"):] if text.startswith("tls:") else text)
    return text if named is None else shown(*named)


def banner(config, bound=lambda name: None) -> list[str]:
    """What ``serve`` says once it runs: where TAP and VTP are (``bound(name)``: the (host, port) a listener is
    bound to, when known: a port may have been 0), and how a newcomer sees an event arrive."""

    def address(description: str, name: str) -> str:
        found = bound(name)
        return configured_address(description) if found is None else shown(*found)

    lines = []
    if config.http.listen:
        where = address(config.http.listen, "http")
        if where == config.http.listen.strip() and not re.fullmatch(r".+:\d+", where):
            lines.append(f"TAP at /tap on {where}; cutouts under /cutouts")
        else:
            url = f"{'https' if config.http.listen.startswith('ssl:') else 'http'}://{where}/tap"
            lines.append(f"TAP at {url} (e.g. pyvo.dal.TAPService(\"{url}\")); cutouts under /cutouts")
    vtp = config.vtp
    if vtp.broadcast:
        lines.append(f"VTP broadcast for subscribers at {address(vtp.broadcast, 'vtp-broadcast')}")
    if vtp.receive:
        lines.append(f"VTP receiver for authors at {address(vtp.receive, 'vtp-receive')}")
    if vtp.broadcast and vtp.receive:
        receiver = address(vtp.receive, "vtp-receive")
        lines.append("a subscriber gets the events routed after it connects (the bundled replay is over in "
                     f"seconds); to see one arrive, send a new one: vogateway send {receiver} "
                     "FILE.xml (README: See an event arrive)")
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.service import run  # the engine, imported when the command runs (see __init__)

    config = load_config(args)
    return run(config, verbose=args.verbose, banner=lambda gateway: banner(config, gateway.bound_address))


def register(commands) -> None:
    serve = commands.add_parser("serve", help="run the gateway",
                                description="Run the gateway. With no arguments it replays the bundled sample "
                                            "alerts into the embedded default: SQLite under var/, VTP broker on "
                                            "127.0.0.1:8099, receiver on 127.0.0.1:8098, TAP on 127.0.0.1:8080.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)
