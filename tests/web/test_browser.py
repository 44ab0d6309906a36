"""The status page in a real browser (Debian's chromium, driven by playwright): while alerts flow, the sky map
gets one point per alert of the last hour, the subscriber table fills in as a VTP subscriber connects and
receives, alert text stays text, and screenshots are kept (tests/artifacts/status-page*.png, and in the test's
tmp_path)."""

import os
import shutil
from pathlib import Path

import pytest

from support import skip_or_fail, wait_for
from web.gatewaykit import HOSTILE_NAME, drop, hostile_ztf, make_burst, serve

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright; it drives /usr/bin/chromium)")
    if not shutil.which(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        # --no-sandbox: test containers run as root, where chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=shutil.which(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_status_page_in_a_browser(browser, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    main = serve(tmp_path, "main", "--source", str(inbox), "--watch", config="[sources]\nwatch_interval = 0.5\n")
    subscriber = None
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(main.url + "/")
        assert page.title() == "vogateway status"
        assert page.locator("#sky-points circle").count() == 0
        assert page.locator("#subscribers tbody tr").count() == 0

        # alerts flow in while the page is open: its script draws them without a reload
        burst = make_burst(tmp_path / "burst")
        drop(burst.files, inbox)
        page.wait_for_function(f"document.querySelectorAll('#sky-points circle').length === {burst.with_position}",
                               timeout=30_000)
        assert page.text_content("#sky-count") == str(burst.with_position)
        assert page.locator("#alerts tbody tr").count() == 20
        colours = set(page.eval_on_selector_all("#sky-points circle", "dots => dots.map(d => d.getAttribute('fill'))"))
        assert {"#2e9e44", "#d62728"} <= colours  # g and r

        # a VTP subscriber connects; the table shows it, then what it was sent and acked
        empty = tmp_path / "nothing"
        empty.mkdir()
        subscriber = serve(tmp_path, "subscriber", "--source", str(empty), "--broadcast", "",
                           "--remote", f"127.0.0.1:{main.ports['broadcast']}")
        page.wait_for_function("document.querySelectorAll('#subscribers tbody tr').length === 1", timeout=30_000)
        hostile_ztf(tmp_path / "hostile.avro")
        drop([tmp_path / "hostile.avro"], inbox)
        row = page.locator("#subscribers tbody tr").first
        wait_for(lambda: [row.locator("td").nth(i).text_content() for i in (2, 3, 5)] == ["1", "1", "0"], 30,
                 what="the subscriber row to show 1 sent, 1 acked, 0 missed")
        assert page.locator("#sky-points circle").count() == burst.with_position + 1

        # what the alert carried is shown as text, and nothing it carried ran
        page.wait_for_function("document.querySelector('#alerts tbody tr td:nth-child(3)').textContent.length > 20")
        assert page.text_content("#alerts tbody tr:first-child td:nth-child(3)") == HOSTILE_NAME
        assert page.evaluate("window.hostile") is None
        stamps = page.locator("#alerts tbody tr:first-child img.stamp")
        assert stamps.count() == 3
        page.wait_for_function("[...document.querySelectorAll('#alerts tbody tr:first-child img.stamp')]"
                               ".every(img => img.complete && img.naturalWidth > 0)", timeout=30_000)
        assert errors == []

        ARTIFACTS.mkdir(exist_ok=True)
        shot, whole = ARTIFACTS / "status-page.png", ARTIFACTS / "status-page-full.png"
        page.screenshot(path=str(shot))
        page.screenshot(path=str(whole), full_page=True)
        for path in (shot, whole):
            shutil.copy(path, tmp_path / path.name)
            assert path.stat().st_size > 10_000
        print(f"screenshots: {shot}, {whole}")
    finally:
        if subscriber is not None:
            subscriber.stop()
        main.stop()
