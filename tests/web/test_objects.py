"""/objects/<id> over real HTTP (requests in a thread while the reactor serves), on SQLite and PostgreSQL: the
JSON document (light curve, alerts with cutout links that serve FITS, VOEvents), the HTML page with its inline SVG
light curve, content negotiation, escaping of hostile values, and clear 404/400 sentences."""

import json

import pytest
import pytest_twisted
import requests
from lxml import etree, html
from twisted.internet import threads
from web.webkit import EVENTS, database, listen, stored

from gateway.web.cutouts import Cutouts
from gateway.web.objects import Objects
from gateway.web.site import Root

SVG = "{http://www.w3.org/2000/svg}"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


def expected_detections(key):
    """The distinct detections the stored alerts of ``key`` carried (source id -> (mjd, mag, band))."""
    out = {}
    for event in EVENTS:
        view = event.view
        if view.object_key != key:
            continue
        for d in (view.detection, *view.previous):
            if d.source_id is not None:
                out.setdefault(d.source_id, (d.mjd, d.mag, d.band))
    return out


@pytest_twisted.inlineCallbacks
def test_object_json_and_html(backend, tmp_path):
    with database(backend, tmp_path) as db:
        store = yield stored(db)
        port, base = listen(Root({"objects": Objects(store), "cutouts": Cutouts(store)}))
        try:
            yield threads.deferToThread(_checks, base)
        finally:
            yield port.stopListening()
            yield store.close()


def _checks(base):
    ztf = next(e.view.object_key for e in EVENTS if e.view.survey == "ztf" and e.view.cutouts)
    rubin = "diaObject:281323062375219201"  # the sample object with the most alerts
    for key in (ztf, rubin):
        response = requests.get(f"{base}/objects/{key}", timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        doc = response.json()
        assert doc["object"]["objectid"] == key
        detections = expected_detections(key)
        got = {d["diasourceid"]: (d["mjd"], d["mag"], d["band"]) for d in doc["detections"]}
        assert got.keys() == detections.keys()
        for source_id, (mjd, mag, band) in detections.items():
            assert got[source_id][0] == pytest.approx(mjd) and got[source_id][2] == band
            assert got[source_id][1] == (pytest.approx(mag) if mag is not None else None)
        mjds = [d["mjd"] for d in doc["detections"]]
        assert mjds == sorted(mjds)
        ivorns = {e.ivorn for e in EVENTS if e.view.object_key == key}
        assert {a["ivorn"] for a in doc["alerts"]} == ivorns == {e["ivorn"] for e in doc["events"]}
        assert all(e["received"].endswith("Z") for e in doc["events"])
    # the cutout links serve the FITS; the VOEvent links are TAP queries for the stored XML
    doc = requests.get(f"{base}/objects/{ztf}", timeout=30).json()
    links = [url for alert in doc["alerts"] for url in alert["cutouts"].values()]
    assert links
    for url in links[:3]:
        fits = requests.get(base + url, timeout=30)
        assert fits.status_code == 200 and fits.content.startswith(b"SIMPLE")
    assert all(e["xml"].startswith("/tap/sync?") and "ivorn" in e["xml"] for e in doc["events"])

    # HTML: a browser's Accept, or ?format=html; the SVG has one point per detection with a magnitude
    for url, headers in ((f"{base}/objects/{ztf}", {"Accept": BROWSER}), (f"{base}/objects/{ztf}?format=html", {})):
        page = requests.get(url, headers=headers, timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        tree = html.fromstring(page.content)
        assert tree.findtext(".//h1") == ztf
        svg = etree.fromstring(etree.tostring(tree.xpath("//*[local-name()='svg']")[0]))
        points = svg.xpath("//*[local-name()='circle'][@class='detection']")
        assert len(points) == sum(1 for d in doc["detections"] if d["mag"] is not None) > 0
        hrefs = tree.xpath("//ul[@class='alerts']//a/@href")
        assert sorted(hrefs) == sorted(links)
        assert not tree.xpath("//script") and b"http://" not in page.content.replace(b"http://www.w3.org", b"")
    # negotiation: JSON without Accept, with */*, with application/json preferred; HTML only when preferred
    for accept, kind in (("", "application/json"), ("*/*", "application/json"),
                         ("application/json, text/html;q=0.5", "application/json"),
                         ("text/html", "text/html; charset=utf-8")):
        response = requests.get(f"{base}/objects/{ztf}", headers={"Accept": accept} if accept else {}, timeout=30)
        assert response.headers["content-type"] == kind, accept
    assert requests.get(f"{base}/objects/{ztf}?format=json", headers={"Accept": BROWSER},
                        timeout=30).headers["content-type"] == "application/json"
    # limit: the newest N detections
    few = requests.get(f"{base}/objects/{rubin}?limit=2", timeout=30).json()
    assert len(few["detections"]) == 2 and few["detections"][-1]["mjd"] == max(
        mjd for mjd, _, _ in expected_detections(rubin).values())
    # bad requests: one sentence each
    response = requests.get(f"{base}/objects/ZTF00nothere", timeout=30)
    assert response.status_code == 404 and response.text == "no object 'ZTF00nothere' in the alert DB\n"
    response = requests.get(f"{base}/objects/{ztf}?limit=lots", timeout=30)
    assert response.status_code == 400 and response.text == "limit 'lots' is not a whole number\n"
    response = requests.get(f"{base}/objects/", timeout=30)
    assert response.status_code == 404 and "/objects/<objectid>" in response.text


@pytest_twisted.inlineCallbacks
def test_hostile_values_are_escaped(tmp_path):
    """An object id and a band with markup (the DB holds what alerts said) come out as text, never as markup."""
    evil = "<script>alert(1)</script>"
    with database("sqlite", tmp_path) as db:
        store = yield stored(db, EVENTS[:2])

        def write(conn):
            conn.execute("INSERT INTO diaobject (objectid, survey, ra, dec, ndetections) VALUES (?, ?, 1, 2, 1)",
                         (evil, "<i>x</i>"))
            conn.execute("INSERT INTO diasource (diasourceid, objectid, mjd, band, mag, mag_err) "
                         "VALUES (1, ?, 60000.5, ?, 20.5, 0.1)", (evil, '"><b>r</b>'))
        yield db.write(write)
        port, base = listen(Root({"objects": Objects(store)}))
        try:
            page = yield threads.deferToThread(requests.get, f"{base}/objects/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                                               params={"format": "html"}, timeout=30)
            assert page.status_code == 200
            assert evil.encode() not in page.content and b"<b>r</b>" not in page.content
            tree = html.fromstring(page.content)
            assert not tree.xpath("//script") and not tree.xpath("//b") and not tree.xpath("//i")
            assert tree.findtext(".//h1") == evil
            doc = yield threads.deferToThread(requests.get, f"{base}/objects/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                                              timeout=30)
            assert json.loads(doc.content)["detections"][0]["band"] == '"><b>r</b>'
        finally:
            yield port.stopListening()
            yield store.close()
