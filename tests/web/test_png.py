"""Cutout stamps to PNG: real ZTF stamps, and the FITS files that are not stamps, each refused in one sentence."""

import gzip
import io

import fastavro
import numpy as np
import pytest
from astropy.io import fits

from gateway.resources import SAMPLES
from gateway.web.png import StampError, stamp_png
from web.test_status import read_png


def ztf_stamp() -> bytes:
    with open(SAMPLES / "ztf" / "1661382530015060001.avro", "rb") as handle:
        record = next(iter(fastavro.reader(handle)))
    return gzip.decompress(record["cutoutScience"]["stampData"])


def fits_bytes(hdus) -> bytes:
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out)
    return out.getvalue()


def test_a_real_stamp_and_one_with_masked_pixels():
    stamp = ztf_stamp()
    data = fits.getdata(io.BytesIO(stamp)).astype(float)
    pixels = read_png(stamp_png(stamp))
    assert pixels.shape == data.shape and pixels.min() < 40 and pixels.max() > 200
    masked = data.copy()
    masked[:5, :] = np.nan
    shown = np.flipud(read_png(stamp_png(fits_bytes([fits.PrimaryHDU(masked)]))))
    assert shown[:5, :].max() <= np.percentile(shown[5:, :], 5)  # NaN rows drawn as the background, not white


def test_what_is_not_a_stamp_is_one_sentence():
    with pytest.raises(StampError, match="^not a readable FITS image"):
        stamp_png(b"SIMPLE  = nonsense")
    with pytest.raises(StampError, match="^the FITS file holds no 2-D image$"):
        stamp_png(fits_bytes([fits.PrimaryHDU(np.zeros(10))]))
    with pytest.raises(StampError, match="too large for a stamp$"):
        stamp_png(fits_bytes([fits.PrimaryHDU(np.zeros((4097, 4097), dtype=np.uint8))]))
    flat = read_png(stamp_png(fits_bytes([fits.PrimaryHDU(np.full((8, 8), np.nan))])))
    assert flat.shape == (8, 8) and not flat.any()
