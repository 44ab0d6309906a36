"""Endpoint strings for every socket: ``HOST:PORT`` is shorthand for plain TCP, anything else is Twisted's syntax.

``127.0.0.1:8099`` -> ``tcp:8099:interface=127.0.0.1`` (server) or ``tcp:127.0.0.1:8099`` (client); ``[::1]:8099``
works too; ``ssl:8099:privateKey=key.pem:certKey=cert.pem``, ``unix:/path`` and the rest pass through unchanged.
A description that is neither raises :class:`EndpointError` (``expected HOST:PORT, got 'x'``), not Twisted's
"Unknown endpoint type".
"""

from __future__ import annotations

import ipaddress
import re
import socket

from twisted.internet.endpoints import clientFromString, serverFromString

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


#: Twisted endpoint types that ``TYPE:NUMBER`` could be mistaken for ``HOST:PORT`` with
_ENDPOINT_TYPES = {"tcp", "tcp6", "ssl", "tls", "unix", "systemd", "tor", "onion"}


class EndpointError(ValueError):
    """A socket description that is neither ``HOST:PORT`` nor a Twisted endpoint string Twisted can use."""


def _split(description: str):
    match = _HOST_PORT.match(description.strip())
    if not match:
        return None
    host = match.group("v6") or match.group("host")
    if host in _ENDPOINT_TYPES:  # "tcp:8080" is Twisted's syntax for a port, not a host called tcp
        return None
    return host, int(match.group("port")), bool(match.group("v6"))


def server_description(description: str) -> str:
    parts = _split(description)
    if parts is None:
        return description
    host, port, v6 = parts
    interface = host.replace(":", r"\:") if v6 else host
    return f"tcp:{port}:interface={interface}"


def client_description(description: str) -> str:
    parts = _split(description)
    if parts is None:
        return description
    host, port, v6 = parts
    return f"tcp:{host.replace(':', chr(92) + ':') if v6 else host}:{port}"


def server_endpoint(reactor, description: str):
    """A listening endpoint from ``HOST:PORT`` or a Twisted server endpoint string."""
    try:
        return serverFromString(reactor, server_description(description))
    except (ValueError, TypeError) as error:  # Twisted's words for a bad string: unknown type, missing port...
        raise EndpointError(f"expected HOST:PORT, got {description!r}") from error


def client_endpoint(reactor, description: str):
    """A connecting endpoint from ``HOST:PORT`` or a Twisted client endpoint string."""
    try:
        return clientFromString(reactor, client_description(description))
    except (ValueError, TypeError) as error:
        raise EndpointError(f"expected HOST:PORT, got {description!r}") from error


def configured_host_port(description: str):
    """(host, port) a server description names: ``HOST:PORT``, or ``tcp:PORT:interface=HOST`` and the like (no
    interface: every one, ``0.0.0.0``); None when it names no TCP port (``unix:``...)."""
    parts = _split(description)
    if parts is not None:
        return parts[0], parts[1]
    match = re.match(r"^(?:tcp6?|ssl|tls):(\d{1,5})((?::[^:]*)*)$", description.strip())
    if not match:
        return None
    interface = re.search(r":interface=((?:\\:|[^:])+)", match.group(2) or "")
    return (interface.group(1).replace("\\:", ":") if interface else "0.0.0.0"), int(match.group(1))


def http_url(description: str, host: str, port: int) -> str:
    """The URL a web listener on ``description``, bound to ``host``:``port``, is reached at (https for ``ssl:``).
    Bound to every interface, that is this machine's name: the best guess without ``public_url``."""
    scheme = "https" if description.strip().startswith(("ssl:", "tls:")) else "http"
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: an address other machines cannot reach."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
