"""DataLink 1.1: /tap/links?ID=<alertid> lists the alert's cutouts, VOEvent and light curve; a TAP result with
alert ids carries a service descriptor, which pyvo's DatalinkResults follows from a real TAP result, and the
cutout it finds is the FITS image stored. URLs come from the public URL, never from the Host a client sent."""

import glob
import gzip

import fastavro
import pytest
import pyvo
import requests
from tap_helpers import database_url, fill, serve, votable

from gateway.store.db import Database

ALERT = 1001  # a detection of diaObject:0 in tap_helpers.rows()


def ztf_cutouts() -> dict[str, bytes]:
    """Real gzipped FITS stamps from a bundled ZTF alert."""
    record = next(iter(fastavro.reader(open(sorted(glob.glob("/work/shared/data/ztf/*.avro"))[0], "rb"))))
    return {kind: record[f"cutout{kind.capitalize()}"]["stampData"] for kind in ("science", "template", "difference")}


@pytest.fixture(scope="module")
def linked_tap(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("datalink")
    with database_url("sqlite", tmp_path) as url:
        fill(url)
        database = Database(url)
        cutouts = ztf_cutouts()
        try:
            database.run_write(lambda conn: conn.cursor().executemany(
                f"INSERT INTO {database.table('cutout')} VALUES (?, ?, ?)",
                [(ALERT, kind, content) for kind, content in cutouts.items()]))
        finally:
            database.stop()
        with serve("sqlite", url, tmp_path) as server:
            yield server, cutouts


def test_links_of_an_alert(linked_tap):
    tap, cutouts = linked_tap
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(f"{tap.url}/links?ID={ALERT}")
    by_kind = {row["local_semantics"]: row for row in links}
    assert set(by_kind) == {"science", "template", "difference", "voevent", "lightcurve"}
    science = by_kind["science"]
    assert science["semantics"] == "#cutout" and science["content_type"] == "application/fits"
    assert science["access_url"] == f"{tap.url[:-4]}/cutouts/{ALERT}/science.fits"
    assert requests.get(science["access_url"], timeout=30).content == gzip.decompress(cutouts["science"])
    lightcurve = requests.get(by_kind["lightcurve"]["access_url"], timeout=30)
    assert lightcurve.status_code == 200, lightcurve.text[:300]
    assert list(votable(lightcurve.content)["diasourceid"]) == [1001, 1002, 1003, 1004]


def test_unknown_and_missing_ids(linked_tap):
    tap, _ = linked_tap
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(f"{tap.url}/links?ID=424242&ID=nonsense")
    assert [row["error_message"].split(":")[0] for row in links] == ["NotFoundFault", "NotFoundFault"]
    r = tap.get("/links")
    assert r.status_code == 400 and b"ID is missing" in r.content


def test_tap_rows_lead_to_cutouts_with_pyvo(linked_tap):
    tap, cutouts = linked_tap
    service = pyvo.dal.TAPService(tap.url)
    result = service.run_sync(f"SELECT alertid, objectid, mjd FROM gateway.alert WHERE alertid IN ({ALERT}, 1002) "
                              "ORDER BY alertid")
    assert [r.type for r in result.votable.resources] == ["results", "meta"]
    found = {}
    for row, links in zip(result, result.iter_datalinks()):
        found[row["alertid"]] = {link["local_semantics"]: link["access_url"] for link in links}
    assert set(found[ALERT]) == {"science", "template", "difference", "voevent", "lightcurve"}
    assert set(found[1002]) == {"voevent", "lightcurve"}  # no cutouts stored for it
    image = requests.get(found[ALERT]["difference"], timeout=30)
    assert image.headers["content-type"].startswith("application/fits")
    assert image.content == gzip.decompress(cutouts["difference"])


def test_no_descriptor_without_alert_ids(linked_tap):
    tap, _ = linked_tap
    r = tap.sync("SELECT TOP 1 objectid FROM gateway.diaobject")
    assert b'utype="adhoc:service"' not in r.content


def test_urls_come_from_the_public_url_not_the_host_header(linked_tap):
    tap, _ = linked_tap
    r = requests.get(f"{tap.url}/links", params={"ID": ALERT}, headers={"Host": "evil.example:1"}, timeout=30)
    assert r.status_code == 200 and b"evil.example" not in r.content and tap.url.encode() in r.content
    r = requests.post(f"{tap.url}/sync", data={"LANG": "ADQL", "QUERY": "SELECT alertid FROM gateway.alert"},
                      headers={"Host": "evil.example:1"}, timeout=30)
    assert b"evil.example" not in r.content and f"{tap.url}/links".encode() in r.content
