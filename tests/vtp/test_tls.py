"""TLS on VTP (beyond Comet): listening ports and outgoing connections, client-certificate identity for
whitelists and per-subscriber rules. A throwaway CA and certificates are made for each test module."""

import datetime
import ipaddress

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, task

from gateway.vtp.access import Rule, Whitelist
from gateway.vtp.author import send_events
from gateway.vtp.broker import Broker
from gateway.vtp.receiver import Receiver
from gateway.vtp.subscriber import subscriber_service
from gateway.vtp.tls import TLSFiles, vtp_server_endpoint
from support import ClockedReactor
from vtp.test_loopback import until
from vtp.vtpkit import Recorder, ivorn, make_pipeline, voevent


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, key, issuer_key, ca=False, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory, name, certificate, key):
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{name: TLSFiles}: the gateway ('server'), clients 'alice' and 'mallory' (same CA), 'eve' (another CA)."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", "Test CA", ca_key, ca_key, ca=True)
    rogue = _certificate("Rogue CA", "Rogue CA", rogue_key, rogue_key, ca=True)
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    files = {}
    for name, issuer, issuer_key in (("server", ca, ca_key), ("alice", ca, ca_key), ("mallory", ca, ca_key),
                                     ("eve", rogue, rogue_key)):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")) if name == "server" else ()
        cert = _certificate(name, issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, key,
                            issuer_key, sans=sans)
        cert_path, key_path = _write(directory, name, cert, key)
        files[name] = TLSFiles(cert_path, key_path, ca_path)
    files["anonymous"] = TLSFiles("", "", ca_path)
    return files


@pytest.fixture
def tls_broker(pki):
    rules = [Rule(identity="alice", filter="//Param[@name='mag' and @value < 18]", max_events=0)]
    broker = Broker("ivo://vtp.test/tls", whitelist=Whitelist(["cn:alice", "cn:mallory"]), rules=rules)
    port = pytest_twisted.blockon(vtp_server_endpoint(reactor, "tls:127.0.0.1:0", pki["server"]).listen(broker))
    yield broker, f"tls:127.0.0.1:{port.getHost().port}"
    for subscriber in list(broker.subscribers):
        subscriber.transport.abortConnection()
    pytest_twisted.blockon(port.stopListening())


def tls_subscriber(remote, files, reactor=reactor):
    recorder = Recorder()
    service = subscriber_service(reactor, remote, make_pipeline(recorder), "ivo://vtp.test/tls-sub", tls=files,
                                 max_delay=0.5)
    service.startService()
    return service, recorder


@pytest_twisted.inlineCallbacks
def test_identity_whitelist_and_rule_over_tls(tls_broker, pki):
    broker, remote = tls_broker
    alice, alice_got = tls_subscriber(remote, pki["alice"])
    mallory, mallory_got = tls_subscriber(remote, pki["mallory"])
    try:
        yield until(lambda: {s.identity for s in broker.subscribers} == {"alice", "mallory"}, what="both admitted")
        from gateway.event import Event, utcnow

        for name, mag in (("tls-faint", 19.0), ("tls-bright", 17.0)):
            broker.accept(Event(ivorn(name), "test", utcnow(), voevent(name, mag)))
        yield until(lambda: len(mallory_got.events) == 2 and alice_got.events, what="delivery over TLS")
        assert alice_got.ivorns == [ivorn("tls-bright")]  # alice's identity rule filters server-side
        assert mallory_got.events[1].xml == voevent("tls-bright", 17.0)
    finally:
        yield alice.stopService()
        yield mallory.stopService()


@pytest_twisted.inlineCallbacks
def test_no_certificate_or_foreign_ca_is_refused(tls_broker, pki):
    broker, remote = tls_broker
    # no client certificate: the handshake completes, the identity whitelist refuses it
    anonymous, anonymous_got = tls_subscriber(remote, pki["anonymous"])
    # a certificate from another CA: the handshake itself fails (and its service schedules a new attempt, on
    # a clock of its own that the test does not advance)
    eve_clock = task.Clock()
    eve, eve_got = tls_subscriber(remote, pki["eve"], reactor=ClockedReactor(eve_clock))
    try:
        yield until(lambda: broker.refused >= 1, timeout=5, what="the anonymous client refused")
        # a new attempt within the backoff (max_delay 0.5 s + up to 1 s of jitter; an alive timeout would be 120 s)
        yield until(lambda: [c for c in eve_clock.getDelayedCalls() if c.getTime() <= 1.5], timeout=5,
                    what="eve's handshake failed, a new attempt scheduled")
        assert not broker.subscribers and anonymous_got.events == [] and eve_got.events == []
    finally:
        yield anonymous.stopService()
        yield eve.stopService()


@pytest_twisted.inlineCallbacks
def test_author_over_tls_with_identity_whitelist(pki):
    recorder = Recorder()
    receiver = Receiver(make_pipeline(recorder), "ivo://vtp.test/tls", whitelist=Whitelist(["cn:alice"]))
    port = yield vtp_server_endpoint(reactor, "tls:127.0.0.1:0", pki["server"]).listen(receiver)
    remote = f"tls:127.0.0.1:{port.getHost().port}"
    try:
        ok = yield send_events(remote, [voevent("tls-authored")], tls=pki["alice"], timeout=5)
        assert ok[0].accepted and recorder.ivorns == [ivorn("tls-authored")]
        refused = yield send_events(remote, [voevent("tls-mallory")], tls=pki["mallory"], timeout=5)
        assert not refused[0].accepted and receiver.refused >= 1 and len(recorder.events) == 1
    finally:
        yield port.stopListening()
