"""``vogateway send HOST:PORT FILE...``: submit VOEvents to a VTP receiver, as an author (the one parser of it).

Prints ack or nak per file; exit status 0 only if every file was acked, 1 otherwise (nak, timeout, refused
connection, unreadable file), 2 for an unusable address or TLS file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _read(names) -> tuple[list[str], list[bytes], int]:
    """(names read, their bytes, 1 if any could not be read else 0); says which could not."""
    read, payloads, status = [], [], 0
    for name in names:
        try:
            payloads.append(Path(name).read_bytes())
            read.append(name)
        except OSError as error:
            print(f"{name}: cannot read: {error.strerror}")
            status = 1
    return read, payloads, status


def cmd_send(args: argparse.Namespace) -> int:
    # the engine, imported when the command runs (see __init__); the reactor only then also because importing it
    # installs the default reactor
    from twisted.internet import reactor

    from gateway.vtp.author import send_events
    from gateway.vtp.tls import TLSFiles, vtp_client_endpoint

    try:
        endpoint = vtp_client_endpoint(reactor, args.remote, TLSFiles(args.tls_cert, args.tls_key, args.tls_ca))
    except (ValueError, OSError) as error:  # a bad address, or TLS files that cannot be read or used
        print(f"vogateway send: {error}", file=sys.stderr)
        return 2
    names, payloads, status = _read(args.files)
    if not payloads:
        return status or 1
    outcome: dict = {}

    def run():
        d = send_events(endpoint, payloads, args.local_ivo, args.timeout, reactor)
        d.addCallback(lambda results: outcome.setdefault("results", results))
        d.addErrback(lambda failure: outcome.setdefault("error", failure))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in outcome:
        print(f"vogateway send: {outcome['error'].getErrorMessage()}", file=sys.stderr)
        return 1
    for name, result in zip(names, outcome["results"]):
        if result.accepted:
            print(f"{name}: ack {result.ivorn}")
        else:
            print(f"{name}: {result.verdict} {result.ivorn or '(no IVORN)'}: {result.reason}")
            status = 1
    return status


def register(commands) -> None:
    send = commands.add_parser("send", help="submit VOEvents to a VTP broker, as an author",
                               description="Send VOEvent files to a VTP receiver over one run; prints ack or nak "
                                           "for each; exits non-zero on any nak, timeout or refused connection.")
    send.add_argument("remote", metavar="HOST:PORT",
                      help="the broker's receiver: HOST:PORT, tls:HOST:PORT, or a Twisted endpoint string")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--local-ivo", default="ivo://vogateway.local/author", help="our IVO identity")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each ack (default 10)")
    send.add_argument("--tls-cert", default="", help="our certificate (PEM), for tls:HOST:PORT")
    send.add_argument("--tls-key", default="", help="its key (PEM), if not inside --tls-cert")
    send.add_argument("--tls-ca", default="", help="CA that signs the receiver's certificate (PEM)")
    send.set_defaults(handler=cmd_send)
