"""Serve the HTTP side (``/tap`` and ``/cutouts``) over an existing alert DB: ``python -m gateway.tap.server --db URL``.

For tests, benchmarks and quick looks: the Site is the one ``vogateway serve`` runs (:func:`gateway.web.http_site`),
without the pipeline. Every ``[tap]`` setting is an option (``--sync-timeout``, ``--maxrec-default``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from twisted.internet import endpoints, reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from gateway.store import Store, StoreError
from gateway.store.db import Database
from gateway.tap.settings import TapSettings
from gateway.web import http_site

#: shorter names kept for the options that had them
ALIASES = {"maxrec_default": ["--maxrec"], "maxrec_max": ["--maxrec-hard"]}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="alert DB URL: sqlite:///var/alerts.db or postgresql://...")
    parser.add_argument("--cutouts", default="", metavar="DIR",
                        help="the cutout packs' directory, as [store] cutouts (default: beside a SQLite file; in the DB "
                             "on PostgreSQL)")
    parser.add_argument("--listen", default="tcp:8080:interface=127.0.0.1", help="Twisted endpoint string")
    parser.add_argument("--public-url", default=None,
                        help="public URL of this service, as [gateway] public_url (default: each request's Host)")
    parser.add_argument("--workdir", default=None, help="directory for async results (default: a temporary one)")
    for f in dataclasses.fields(TapSettings):
        names = [f"--{f.name.replace('_', '-')}"] + ALIASES.get(f.name, [])
        if isinstance(f.default, tuple):
            parser.add_argument(*names, dest=f.name, default=list(f.default), action="append", help=f"[tap] {f.name} "
                                "(repeat for more)")
        elif isinstance(f.default, bool):
            parser.add_argument(*names, dest=f.name, default=f.default, action=argparse.BooleanOptionalAction,
                                help=f"[tap] {f.name}")
        else:
            parser.add_argument(*names, dest=f.name, default=f.default, type=type(f.default),
                                help=f"[tap] {f.name} (default {f.default})")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = TapSettings(**{f.name: tuple(getattr(args, f.name)) if isinstance(f.default, tuple)
                              else getattr(args, f.name) for f in dataclasses.fields(TapSettings)})
    try:
        database = Database(args.db, reactor, cutout_dir=args.cutouts)
    except StoreError as error:  # a bad URL, an unreachable server, an unwritable cutout directory
        print(f"gateway.tap.server: {error}", file=sys.stderr)
        sys.exit(2)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    site = http_site(Store(database), database, reactor, args.public_url, settings, args.workdir)
    endpoint = endpoints.serverFromString(reactor, args.listen)
    endpoint.listen(site).addErrback(lambda f: (print(f"cannot listen: {f.value}", file=sys.stderr), reactor.stop()))
    reactor.addSystemEventTrigger("after", "shutdown", database.stop)
    reactor.run()


if __name__ == "__main__":
    main()
