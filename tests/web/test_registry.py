"""Each gateway has its own metrics registry: two in one process (as tests and tools run them) count apart, and
the process-wide prometheus_client registry is left alone."""

import pytest_twisted
from prometheus_client import REGISTRY
from twisted.internet import defer, reactor

from gateway.alerts.files import iter_inputs
from gateway.commands.stats import parse_metrics
from gateway.config import parse
from gateway.resources import SAMPLES
from gateway.service import Gateway


def gateway(tmp_path, name, inputs):
    home = tmp_path / name
    config = parse({"gateway": {"state_dir": str(home)}, "store": {"db": f"sqlite:///{home / 'gateway.db'}"},
                    "sources": {"inputs": inputs, "workers": -1}, "output": {"directory": ""},
                    "http": {"listen": ""}, "vtp": {"broadcast": "", "receive": ""}})
    return Gateway(config, reactor)


@pytest_twisted.inlineCallbacks
def test_two_gateways_in_one_process_count_apart(tmp_path):
    ztf = sorted(str(p) for p in (SAMPLES / "ztf").glob("*.avro"))
    first, second = gateway(tmp_path, "one", ztf[:1]), gateway(tmp_path, "two", ztf)
    for each in (first, second):
        each.startService()
    try:
        yield defer.gatherResults([first.sources[0].finished, second.sources[0].finished])
    finally:
        yield defer.gatherResults([first.stopService(), second.stopService()])
    expected = [sum(1 for item in iter_inputs(paths) if not isinstance(item, Exception)) for paths in (ztf[:1], ztf)]
    counts = [parse_metrics(g.metrics.text().decode())["vogateway_alerts_in_total"][(("source", "files"),)]
              for g in (first, second)]
    assert counts == expected and expected[0] < expected[1]
    assert first.metrics.registry is not second.metrics.registry
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("vogateway")]
