"""vtp_services: VTPSettings (the [vtp] config section) become a broker sink and services; bad values are clear
errors naming the key."""

import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway import config as configuration
from gateway.vtp.author import send_events
from gateway.vtp.broker import Broker
from gateway.vtp.service import vtp_services
from gateway.vtp.settings import VTPSettingsError
from support import free_port
from vtp.test_loopback import until
from vtp.vtpkit import Recorder, ivorn, make_pipeline, voevent


def vtp_config(**vtp):
    return configuration.load(overrides={"vtp": vtp}).vtp


@pytest_twisted.inlineCallbacks
def test_two_gateways_chained_through_the_config():
    """Gateway A (broadcast, receive) -> gateway B subscribed to A via vtp.remotes."""
    a_broadcast, a_receive = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    a_recorder, b_recorder = Recorder(), Recorder()
    a_pipeline = make_pipeline(a_recorder)
    a_broker, a_services = vtp_services(vtp_config(broadcast=a_broadcast, receive=a_receive, iamalive_interval=5.0),
                                        a_pipeline, reactor)
    a_pipeline.router.add_sink(a_broker)
    b_pipeline = make_pipeline(b_recorder)
    b_broker, b_services = vtp_services(vtp_config(broadcast="", receive="", remotes=[a_broadcast],
                                                   filter="//Param[@name='band' and @value='r']"), b_pipeline,
                                        reactor)
    assert isinstance(a_broker, Broker) and b_broker is None and len(a_services) == 2 and len(b_services) == 1
    for service in a_services + b_services:
        service.startService()
    try:
        yield until(lambda: a_broker.subscribers and next(iter(a_broker.subscribers)).filters, what="B subscribed")
        results = yield send_events(a_receive, [voevent("chain1"), voevent("chain2")], timeout=5)
        assert all(r.accepted for r in results)
        yield until(lambda: b_recorder.ivorns == [ivorn("chain1"), ivorn("chain2")], what="events at B")
        assert a_recorder.ivorns == b_recorder.ivorns
    finally:
        for service in a_services + b_services:
            yield service.stopService()


@pytest.mark.parametrize("vtp, message", [
    ({"subscriber_whitelist": ["10.0.0.0/33"]}, "vtp.subscriber_whitelist"),
    ({"author_whitelist": ["not-a-network"]}, "vtp.author_whitelist"),
    ({"subscriber_rules": [{"network": "10.0.0.0/8", "filter": "//[["}]}, "invalid XPath"),
    ({"subscriber_rules": [{"filter": "//Who"}]}, "needs a network or an identity"),
    ({"subscriber_rules": [{"network": "10.0.0.0/8", "colour": "red"}]}, "unknown subscriber rule key"),
    ({"subscriber_rules": ["10.0.0.0/8"]}, "each rule is a table"),
    ({"broadcast": "nowhere"}, "vtp.broadcast: expected HOST:PORT, got 'nowhere'"),
    ({"receive": "tls:nowhere"}, "vtp.receive: 'tls:nowhere': expected tls:HOST:PORT"),
    ({"remotes": ["localhost:port"]}, "vtp.remotes: expected HOST:PORT, got 'localhost:port'"),
])
def test_bad_vtp_settings_are_a_clear_error(vtp, message):
    with pytest.raises(VTPSettingsError, match=message.replace("[", r"\[")):
        vtp_services(vtp_config(**vtp), make_pipeline(), reactor)


def test_rules_and_tls_keys_are_read():
    broker, services = vtp_services(vtp_config(
        receive="", subscriber_rules=[{"identity": "alice", "max_events": 5, "window": 10.0},
                                      {"network": "192.168.0.0/16"}]), make_pipeline(), reactor)
    assert [(r.identity, r.max_events, r.window) for r in broker.rules] == [("alice", 5, 10.0), (None, 20, 30.0)]
    assert len(services) == 1
