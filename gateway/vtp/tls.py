"""TLS for VTP (beyond Comet): ``tls:HOST:PORT`` endpoints and the client-certificate identity of a peer.

Plain ``HOST:PORT`` and Twisted endpoint strings (``tcp:``, ``ssl:``, ``unix:``) work as everywhere else in the
gateway. ``tls:HOST:PORT`` means TCP wrapped in TLS with our :class:`TLSFiles` (config ``vtp.tls_cert``,
``vtp.tls_key``, ``vtp.tls_ca``): on a listening port our certificate is served and, when a CA is given, clients are
asked for a certificate verified against it (optional: anonymous clients still connect, and are whitelisted by
network); on an outgoing connection the broker's certificate is verified (against the CA, or the system's trust
store), and ours is presented as a client certificate. A verified client certificate's subject commonName is the
peer's identity, usable as ``cn:NAME`` in whitelists and as ``identity`` in subscriber rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from twisted.internet import interfaces, ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from gateway.endpoints import _split, client_endpoint, server_endpoint

PREFIX = "tls:"


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: our certificate and key, and the CA that signs the peers we trust (paths; empty = none)."""

    cert: str = ""
    key: str = ""
    ca: str = ""

    def _private(self) -> ssl.PrivateCertificate:
        if not self.cert:
            raise ValueError("a tls: endpoint needs vtp.tls_cert (and vtp.tls_key unless the key is in that file)")
        cert = Path(self.cert).read_bytes()
        key = Path(self.key).read_bytes() if self.key else cert
        return ssl.PrivateCertificate.loadPEM(key + b"\n" + cert)

    def _ca(self) -> Optional[ssl.Certificate]:
        return ssl.Certificate.loadPEM(Path(self.ca).read_bytes()) if self.ca else None

    def server_options(self):
        private, ca = self._private(), self._ca()
        if ca is None:
            return private.options()
        return ssl.CertificateOptions(privateKey=private.privateKey.original, certificate=private.original,
                                      verify=True, caCerts=[ca.original], requireCertificate=False)

    def client_options(self, hostname: str):
        ca = self._ca()
        client = self._private() if self.cert else None
        return ssl.optionsForClientTLS(hostname, trustRoot=ca if ca is not None else ssl.platformTrust(),
                                       clientCertificate=client)


@implementer(interfaces.IStreamServerEndpoint)
class _TLSServerEndpoint:
    def __init__(self, inner, options):
        self.inner, self.options = inner, options

    def listen(self, factory):
        return self.inner.listen(TLSMemoryBIOFactory(self.options, False, factory))


def _host_port(description: str):
    parts = _split(description[len(PREFIX):])
    if parts is None:
        raise ValueError(f"{description!r}: expected tls:HOST:PORT")
    return parts


def vtp_server_endpoint(reactor, description: str, tls: TLSFiles = TLSFiles()):
    """Listening endpoint for ``HOST:PORT``, ``tls:HOST:PORT`` or a Twisted server endpoint string."""
    if description.startswith(PREFIX):
        host, port, _ = _host_port(description)
        return _TLSServerEndpoint(server_endpoint(reactor, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"),
                                  tls.server_options())
    return server_endpoint(reactor, description)


def vtp_client_endpoint(reactor, description: str, tls: TLSFiles = TLSFiles()):
    """Connecting endpoint for ``HOST:PORT``, ``tls:HOST:PORT`` or a Twisted client endpoint string."""
    if description.startswith(PREFIX):
        host, port, _ = _host_port(description)
        return wrapClientTLS(tls.client_options(host), HostnameEndpoint(reactor, host, port))
    return client_endpoint(reactor, description)


def peer_identity(transport) -> Optional[str]:
    """The verified client certificate's subject commonName, or None (plain TCP, or no certificate)."""
    if transport is None or not interfaces.ISSLTransport.providedBy(transport):
        return None
    try:
        certificate = transport.getPeerCertificate()
    except Exception:  # handshake not finished or failed: no identity
        return None
    if certificate is None:
        return None
    from cryptography.x509.oid import NameOID

    names = certificate.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def is_tls(transport) -> bool:
    return transport is not None and interfaces.ISSLTransport.providedBy(transport)
