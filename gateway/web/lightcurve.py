"""A light curve as inline SVG, drawn on the server: magnitude against time, one colour per band, error bars.

No script, no stylesheet from elsewhere: the page that embeds it works offline and under a strict CSP. Every text
in the drawing is escaped (band names come from the alerts).
"""

from __future__ import annotations

import math
from html import escape
from typing import Iterable, Optional

#: colours per band (Rubin ugrizy, ZTF gri); other bands are grey
BAND_COLOURS = {"u": "#56b4e9", "g": "#009e73", "r": "#d55e00", "i": "#cc79a7", "z": "#7f3c8d", "y": "#444444"}
WIDTH, HEIGHT = 640, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 40


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning [low, high]."""
    span = high - low
    if span <= 0:
        return [low]
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(int((high - first) / step) + 1)]


def _finite(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def light_curve_svg(detections: Iterable[dict], title: str = "") -> str:
    """An ``<svg>`` of the detections (dicts with ``mjd``, ``mag``, ``mag_err``, ``band``) that have a magnitude;
    brighter is up. A curve with no magnitudes says so in the drawing."""
    points = [(mjd, mag, _finite(d.get("mag_err")) or 0.0, str(d.get("band") or "?"))
              for d in detections if (mjd := _finite(d.get("mjd"))) is not None
              and (mag := _finite(d.get("mag"))) is not None]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title or "light curve")}" '
             f'font-family="sans-serif" font-size="11">']
    parts.append(f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white" stroke="#ccc"/>')
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no detection with a magnitude'
                     '</text></svg>')
        return "".join(parts)
    t_low, t_high = min(p[0] for p in points), max(p[0] for p in points)
    m_low, m_high = min(p[1] - p[2] for p in points), max(p[1] + p[2] for p in points)
    t_pad = (t_high - t_low) * 0.05 or 0.5
    m_pad = (m_high - m_low) * 0.1 or 0.25
    t_low, t_high, m_low, m_high = t_low - t_pad, t_high + t_pad, m_low - m_pad, m_high + m_pad
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(mjd: float) -> float:
        return _LEFT + (mjd - t_low) / (t_high - t_low) * plot_w

    def y(mag: float) -> float:  # magnitudes: brighter (smaller) up
        return _TOP + (mag - m_low) / (m_high - m_low) * plot_h

    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    for tick in _ticks(t_low, t_high):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{_TOP + plot_h}" x2="{x(tick):.1f}" y2="{_TOP + plot_h + 4}" '
                     f'stroke="#888"/><text x="{x(tick):.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">'
                     f"{tick:g}</text>")
    for tick in _ticks(m_low, m_high):
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y(tick):.1f}" x2="{_LEFT}" y2="{y(tick):.1f}" stroke="#888"/>'
                     f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">MJD</text>')
    parts.append(f'<text x="14" y="{_TOP + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_TOP + plot_h / 2})">mag (AB)</text>')
    bands = sorted({p[3] for p in points})
    for mjd, mag, err, band in points:
        colour = BAND_COLOURS.get(band, "#888888")
        if err:
            parts.append(f'<line class="err" x1="{x(mjd):.1f}" y1="{y(mag - err):.1f}" x2="{x(mjd):.1f}" '
                         f'y2="{y(mag + err):.1f}" stroke="{colour}"/>')
        parts.append(f'<circle class="detection" cx="{x(mjd):.1f}" cy="{y(mag):.1f}" r="3.5" fill="{colour}">'
                     f"<title>{escape(band)} {mag:.3f} ± {err:.3f} at MJD {mjd:.5f}</title></circle>")
    for k, band in enumerate(bands):
        colour = BAND_COLOURS.get(band, "#888888")
        parts.append(f'<circle cx="{_LEFT + 12 + 40 * k}" cy="{_TOP + 10}" r="4" fill="{colour}"/>'
                     f'<text x="{_LEFT + 19 + 40 * k}" y="{_TOP + 14}">{escape(band)}</text>')
    parts.append("</svg>")
    return "".join(parts)
