"""The status page without a browser: content negotiation, escaping of what alerts carry, the snapshot the page's
script reads, cutouts rendered as PNG, and the latest VOEvents."""

import html
import io
import json
import struct
import zlib

import numpy as np
from astropy.io import fits
from astropy.io.votable import parse_single_table

from web.gatewaykit import HOSTILE_NAME, hostile_ztf, make_burst, serve
from support import wait_for


def read_png(data: bytes) -> np.ndarray:
    """The pixels of an 8-bit greyscale, non-interlaced PNG (what the gateway writes), read from its chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (8, 0, 0)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, width + 1)
    assert not raw[:, 0].any()  # filter type 0 on every row
    return raw[:, 1:]


def test_status_page_and_its_data(tmp_path):
    inbox = tmp_path / "inbox"
    burst = make_burst(inbox)
    hostile_id = hostile_ztf(inbox / "hostile.avro")
    main = serve(tmp_path, "main", "--source", str(inbox))
    try:
        wait_for(lambda: "replay done" in main.log.read_text(), 60, what="the replay")
        code, kind, text = main.get("/", accept="text/plain")
        assert (code, kind) == (200, "text/plain; charset=utf-8")
        assert b"/metrics" in text and b"<" not in text

        code, kind, page = main.get("/", accept="text/html,application/xhtml+xml,*/*;q=0.8")
        page = page.decode()
        assert (code, kind) == (200, "text/html; charset=utf-8")
        assert page.startswith("<!DOCTYPE html>") and '<script src="/static/status.js">' in page
        assert "window.hostile" in page and "<script>window" not in page and "<img src=x" not in page
        assert html.escape(HOSTILE_NAME) in page
        assert page.count("<circle ") == burst.alerts + 1  # every alert of the last hour has a position

        code, kind, body = main.get("/status.json")
        snapshot = json.loads(body)
        assert (code, kind) == (200, "application/json")
        assert len(snapshot["sky"]) == burst.alerts + 1
        assert all(0 <= x <= 720 and 0 <= y <= 360 for x, y, _ in snapshot["sky"])
        assert {band for _, _, band in snapshot["sky"]} >= {"g", "r"}
        (source,) = snapshot["tables"]["sources"]
        assert source[1] == "files" and source[2] == f"{len(burst.files) + 1} files read"
        latest = snapshot["tables"]["alerts"]
        assert len(latest) == 20 and latest[0][2] == HOSTILE_NAME and latest[0][1] == str(hostile_id)

        # the newest alert's links: its VOEvent, its TAP row, its cutouts as PNG rendered from the FITS
        voevent = latest[0][6]
        code, kind, xml = main.get(voevent["href"])
        assert (code, kind) == (200, "application/xml") and voevent["text"].encode() in xml
        code, kind, votable = main.get(latest[0][7]["href"])
        row = parse_single_table(io.BytesIO(votable)).to_table(use_names_over_ids=True)
        assert code == 200 and list(row["alertid"]) == [hostile_id] and row["ivorn"][0] == voevent["text"]
        images = latest[0][8]
        assert {image["alt"] for image in images} == {"science", "template", "difference"}
        for image in images:
            code, kind, png = main.get(image["img"])
            assert (code, kind) == (200, "image/png")
            _, _, stamp = main.get(image["href"])
            data = fits.getdata(io.BytesIO(stamp)).astype(float)
            pixels = read_png(png)
            assert pixels.shape == data.shape
            assert pixels.min() < 40 and pixels.max() > 200  # stretched over the range, not flat
            # the brighter a FITS pixel, the brighter its PNG pixel (row 0 of a FITS image is the bottom row)
            ranks = np.argsort(np.argsort(data[np.isfinite(data)]))
            assert np.corrcoef(ranks, np.flipud(pixels)[np.isfinite(data)])[0, 1] > 0.8
        assert main.get("/cutouts/1/science.png")[0] == 404
        code, _, text = main.get("/voevent?ivorn=ivo://nowhere/x%23y")
        assert code == 404 and text.startswith(b"ivo://nowhere/x#y: not among the latest 20 events")
    finally:
        main.stop()
    assert "Traceback" not in main.log.read_text()
    assert "/status.json" not in main.log.read_text()  # polled paths stay out of the access log
