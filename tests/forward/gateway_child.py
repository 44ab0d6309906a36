"""A gateway process for the crash test: bundled-sample files -> pipeline -> forward sink (outbox in SQLite).

    python gateway_child.py CONFIG.json   (config: the gateway config as JSON, with store.db and gateway.state_dir)

Runs until killed; prints "ready" once its services started.
"""

import json
import sys

from twisted.internet import reactor

from gateway.alerts.files import DirectorySource
from gateway.convert import make_converter
from gateway.forward.routes import forward_services
from gateway.pipeline import Pipeline, Router
from gateway.store.db import Database
from gateway.voevent.parse import parse_event


def main(path):
    config = json.loads(open(path).read())
    database = Database(config["store"]["db"])
    sink, services = forward_services(config, database, reactor)
    router = Router([sink])
    pipeline = Pipeline(make_converter(config), lambda xml, origin: parse_event(xml, origin=origin), router)
    source = DirectorySource(config["sources"]["inputs"], pipeline, config["gateway"]["state_dir"], clock=reactor)
    for service in services:
        service.startService()
    source.startService()
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
