import pytest

from gateway.endpoints import (EndpointError, client_description, client_endpoint, configured_host_port, http_url,
                               is_loopback, server_description, server_endpoint)


@pytest.mark.parametrize("given, server, client", [
    ("127.0.0.1:8099", "tcp:8099:interface=127.0.0.1", "tcp:127.0.0.1:8099"),
    ("localhost:1", "tcp:1:interface=localhost", "tcp:localhost:1"),
    ("[::1]:8099", r"tcp:8099:interface=\:\:1", r"tcp:\:\:1:8099"),
    ("ssl:8099:privateKey=k.pem", "ssl:8099:privateKey=k.pem", "ssl:8099:privateKey=k.pem"),
    ("unix:/tmp/s", "unix:/tmp/s", "unix:/tmp/s"),
    ("tcp:8099", "tcp:8099", "tcp:8099"),  # Twisted's port syntax, not a host named tcp
])
def test_host_port_is_shorthand_for_tcp(given, server, client):
    assert server_description(given) == server
    assert client_description(given) == client


@pytest.mark.parametrize("given", ["nowhere", "localhost:port", "tcp:host-without-port", "8099"])
def test_an_unusable_description_says_what_was_expected(given):
    from twisted.internet import reactor

    with pytest.raises(EndpointError, match=f"^expected HOST:PORT, got '{given}'$"):
        client_endpoint(reactor, given)
    with pytest.raises(EndpointError, match=f"^expected HOST:PORT, got '{given}'$"):
        server_endpoint(reactor, given)


@pytest.mark.parametrize("given, named", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:80", ("::1", 80)),
    ("tcp:8080:interface=10.1.2.3", ("10.1.2.3", 8080)), (r"tcp6:81:interface=\:\:1", ("::1", 81)),
    ("tcp:8080", ("0.0.0.0", 8080)), ("ssl:8443:privateKey=k.pem:certKey=c.pem", ("0.0.0.0", 8443)),
    ("unix:/tmp/s", None),
])
def test_the_address_a_description_names(given, named):
    assert configured_host_port(given) == named


def test_urls_of_bound_addresses():
    assert http_url("127.0.0.1:0", "127.0.0.1", 41234) == "http://127.0.0.1:41234"
    assert http_url("ssl:8443:privateKey=k.pem", "::1", 8443) == "https://[::1]:8443"
    import socket
    assert http_url("tcp:80", "0.0.0.0", 80) == f"http://{socket.getfqdn()}:80"
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost", "10.0.0.1", "example.org")] \
        == [True, True, True, True, True, False, False]
