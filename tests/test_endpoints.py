import pytest

from gateway.endpoints import client_description, server_description


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
