"""TAP_UPLOAD by URL: off by default; when on, hosts that resolve to loopback, private or link-local addresses are
refused unless ``upload_allow_hosts`` lists them; fetched from a real HTTP server on loopback."""

import http.server
import io
import threading

import pytest
from astropy.table import Table
from tap_helpers import database_url, fill, serve

from gateway.tap.errors import QueryError
from gateway.tap.settings import TapSettings
from gateway.tap.uploads import fetch_upload, is_public


def votable_bytes() -> bytes:
    out = io.BytesIO()
    Table({"ra": [1.5, 2.5], "dec": [-3.0, 4.0]}).write(out, format="votable")
    return out.getvalue()


@pytest.fixture(scope="module")
def table_server():
    """An HTTP server on 127.0.0.1 serving one VOTable at /t.xml; yields its port and the bytes served."""
    body = votable_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/t.xml":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1/t.xml")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-votable+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], body
    server.shutdown()
    server.server_close()


def test_off_by_default(table_server):
    port, _ = table_server
    assert TapSettings().http_uploads is False
    with pytest.raises(QueryError, match="switched off"):
        fetch_upload("t", f"http://127.0.0.1:{port}/t.xml", TapSettings())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "192.168.0.7", "172.16.5.5",
                                  "169.254.169.254", "[fe80::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "100.64.0.1"])
def test_non_public_hosts_are_refused(table_server, host):
    port, _ = table_server
    with pytest.raises(QueryError) as refused:
        fetch_upload("t", f"http://{host}:{port}/t.xml", TapSettings(http_uploads=True))
    message = str(refused.value)
    assert "upload_allow_hosts" in message and "\n" not in message, message


@pytest.mark.parametrize("allow", [("127.0.0.1",), ("127.0.0.0/8",), ("localhost", "::1")])
def test_allowed_hosts_are_fetched(table_server, allow):
    port, body = table_server
    host = "localhost" if "localhost" in allow else "127.0.0.1"
    data = fetch_upload("t", f"http://{host}:{port}/t.xml", TapSettings(http_uploads=True, upload_allow_hosts=allow))
    assert data == body


def test_redirects_are_not_followed(table_server):
    port, _ = table_server
    settings = TapSettings(http_uploads=True, upload_allow_hosts=("127.0.0.1",))
    with pytest.raises(QueryError, match="HTTP 302.*not followed"):
        fetch_upload("t", f"http://127.0.0.1:{port}/elsewhere", settings)


def test_unresolvable_and_bad_urls_are_one_sentence():
    settings = TapSettings(http_uploads=True)
    with pytest.raises(QueryError, match="does not resolve"):
        fetch_upload("t", "http://no-such-host.invalid/t.xml", settings)
    with pytest.raises(QueryError, match="invalid port"):
        fetch_upload("t", "http://127.0.0.1:99999999/t.xml", settings)


def test_public_addresses():
    assert is_public("8.8.8.8") and is_public("2001:4860:4860::8888")
    assert not any(map(is_public, ["127.0.0.1", "::1", "10.0.0.1", "169.254.1.1", "fe80::1", "fc00::1", "224.0.0.1",
                                   "::ffff:192.168.1.1", "0.0.0.0", "255.255.255.255"]))


def test_through_the_tap_server(tmp_path, table_server):
    """Off in a default server (capabilities say inline only); on with an allow-list, a sync query reads it."""
    port, _ = table_server
    url = f"http://127.0.0.1:{port}/t.xml"
    query = {"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n, SUM(ra) AS s FROM TAP_UPLOAD.t", "UPLOAD": f"t,{url}"}
    with database_url("sqlite", tmp_path) as db:
        fill(db)
        with serve("sqlite", db, tmp_path) as off:
            r = off.post("/sync", data=query)
            assert r.status_code == 400 and b"switched off" in r.content
            assert b"upload-http" not in off.get("/capabilities").content
            assert b"upload-inline" in off.get("/capabilities").content
        with serve("sqlite", db, tmp_path, "--http-uploads", "--upload-allow-hosts", "127.0.0.1") as on:
            r = on.post("/sync", data=query, params={"FORMAT": "csv"})
            assert r.status_code == 200, r.text[:300]
            assert r.text.splitlines()[1] == "2,4.0"
            assert b"upload-http" in on.get("/capabilities").content
