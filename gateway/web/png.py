"""Cutout stamps as PNG for the status page: FITS -> zscale interval and asinh stretch (astropy) -> 8-bit grey ->
PNG written with zlib (no imaging library needed)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np

# ZTF's stamps write their SIMPLE card loosely; astropy reads them fine and would say so once in the log
warnings.filterwarnings("ignore", message="Found a SIMPLE card but its format", module="astropy.io.fits")

#: a stamp is tens of pixels a side; anything far larger is not a cutout and is not rendered
MAX_PIXELS = 4096 * 4096


class StampError(ValueError):
    """FITS bytes that hold no image to render."""


def stamp_pixels(fits_bytes: bytes) -> np.ndarray:
    """The first 2-D image of a FITS file as uint8 (row 0 at the top, as a PNG wants), zscaled and asinh-stretched."""
    from astropy.io import fits
    from astropy.visualization import AsinhStretch, ZScaleInterval

    try:
        with fits.open(io.BytesIO(fits_bytes), memmap=False) as hdus:
            image = next((hdu.data for hdu in hdus if hdu.data is not None and hdu.data.ndim == 2), None)
            if image is None:
                raise StampError("the FITS file holds no 2-D image")
            if image.size > MAX_PIXELS:
                raise StampError(f"the image is {image.shape[1]} x {image.shape[0]} pixels: too large for a stamp")
            data = np.array(image, dtype=float)
    except (OSError, TypeError, IndexError) as error:  # astropy's words for bytes that are not FITS
        raise StampError(f"not a readable FITS image ({error})") from None
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    data[~finite] = np.nanmin(data[finite])  # masked pixels as the background, not as white
    scaled = AsinhStretch(0.1)(ZScaleInterval()(data, clip=True))
    return np.flipud(np.round(scaled * 255).astype(np.uint8))


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of ``pixels`` (2-D uint8)."""
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, greyscale, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def stamp_png(fits_bytes: bytes) -> bytes:
    """A cutout's FITS bytes as a PNG (raises StampError with a sentence when there is no image)."""
    return png_bytes(stamp_pixels(fits_bytes))
