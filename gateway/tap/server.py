"""Serve only the TAP service over an existing alert DB: ``python -m gateway.tap.server --db URL``.

For tests, benchmarks and quick looks; ``vogateway serve`` mounts the same resource at /tap beside the rest.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import endpoints, reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web import resource, server

from gateway.store.db import Database
from gateway.tap.query import Limits
from gateway.tap.resource import tap_resource


def make_site(database: Database, the_reactor, base_url=None, limits=None, **options) -> server.Site:
    root = resource.Resource()
    root.putChild(b"tap", tap_resource(database, the_reactor, base_url, limits, **options))
    # our resources parse bodies themselves (Twisted's multipart parser rejects STILTS's boundary)
    return server.Site(root, parsePOSTFormSubmission=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="alert DB URL: sqlite:///var/alerts.db or postgresql://...")
    parser.add_argument("--listen", default="tcp:8080:interface=127.0.0.1", help="Twisted endpoint string")
    parser.add_argument("--sync-timeout", type=float, default=Limits.sync_timeout, help="seconds")
    parser.add_argument("--async-timeout", type=float, default=Limits.async_timeout, help="seconds")
    parser.add_argument("--maxrec", type=int, default=Limits.maxrec_default, help="default MAXREC (rows)")
    parser.add_argument("--maxrec-hard", type=int, default=Limits.maxrec_max, help="largest MAXREC (rows)")
    parser.add_argument("--max-jobs", type=int, default=1000)
    parser.add_argument("--max-running", type=int, default=2)
    parser.add_argument("--retention", type=float, default=24 * 3600, help="seconds until an async job is destroyed")
    parser.add_argument("--stall-timeout", type=float, default=Limits.stall_timeout,
                        help="seconds a sync client may read nothing before it is disconnected")
    parser.add_argument("--reap-interval", type=float, default=10.0, help="seconds between destruction checks")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    limits = Limits(sync_timeout=args.sync_timeout, async_timeout=args.async_timeout,
                    maxrec_default=args.maxrec, maxrec_max=args.maxrec_hard, stall_timeout=args.stall_timeout)
    database = Database(args.db, reactor)
    site = make_site(database, reactor, None, limits, max_jobs=args.max_jobs, max_running=args.max_running,
                     retention=args.retention, reap_interval=args.reap_interval)
    endpoint = endpoints.serverFromString(reactor, args.listen)
    endpoint.listen(site).addErrback(lambda f: (print(f"cannot listen: {f.value}", file=sys.stderr), reactor.stop()))
    reactor.addSystemEventTrigger("after", "shutdown", database.stop)
    reactor.run()


if __name__ == "__main__":
    main()
