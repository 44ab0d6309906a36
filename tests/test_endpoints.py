import pytest

from gateway.endpoints import (EndpointError, client_description, client_endpoint, server_description,
                               server_endpoint)



@pytest.mark.parametrize("given, server, client", [
    ("127.0.0.1:8099", "tcp:8099:interface=127.0.0.1", "tcp:127.0.0.1:8099"),
    ("localhost:1", "tcp:1:interface=localhost", "tcp:localhost:1"),
    ("[::1]:8099", r"tcp:8099:interface=\:\:1", r"tcp:\:\:1:8099"),
    ("ssl:8099:privateKey=k.pem", "ssl:8099:privateKey=k.pem", "ssl:8099:privateKey=k.pem"),
    ("unix:/tmp/s", "unix:/tmp/s", "unix:/tmp/s"),
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
