"""MJD (TAI or UTC) -> UTC ISO-8601 strings, fast enough for the hot path.

``astropy.time.Time(mjd, format="mjd", scale="tai").utc.isot`` costs ~100 us per call; a gateway converting
thousands of alerts a second cannot pay that per alert. Since 1972 UTC differs from TAI by a whole number of
seconds that changes only at leap seconds, so a table of (TAI instant where the offset starts, offset) taken
once from ERFA's leap-second table (the one astropy.time uses) gives the same answer with integer arithmetic.
Before 1972 (fractional, drifting offsets) the slow astropy path is used. Tests compare both paths to 1 ms,
across leap seconds (``23:59:60.xxx`` included).
"""

from __future__ import annotations

import bisect
import math
from datetime import date
from functools import lru_cache

import erfa

#: MJD of 1972-01-01, where the integer-second UTC era starts
MJD_1972 = 41317
#: ``date.toordinal()`` of MJD 0 (1858-11-17)
_MJD0_ORDINAL = 678576
_MS_PER_DAY = 86_400_000


def _mjd_of(year: int, month: int) -> int:
    return date(year, month, 1).toordinal() - _MJD0_ORDINAL


def _leap_table():
    """(UTC MJDs where an offset starts, TAI ms where it starts, TAI-UTC offsets in ms), since 1972."""
    utc_days, tai_starts, offsets = [], [], []
    for year, month, tai_utc in erfa.leap_seconds.get():
        day = _mjd_of(int(year), int(month))
        if day < MJD_1972:
            continue
        offset = int(round(float(tai_utc) * 1000))
        utc_days.append(day)
        tai_starts.append(day * _MS_PER_DAY + offset)
        offsets.append(offset)
    return utc_days, tai_starts, offsets


_UTC_DAYS, _TAI_STARTS, _OFFSETS = _leap_table()
#: UTC days that end with a leap second (86,401 s long)
_LONG_DAYS = {day - 1 for day, prev, cur in zip(_UTC_DAYS[1:], _OFFSETS, _OFFSETS[1:]) if cur > prev}


@lru_cache(maxsize=4096)
def _date_prefix(mjd_day: int) -> str:
    d = date.fromordinal(mjd_day + _MJD0_ORDINAL)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T"


def _format(day: int, ms_of_day: int) -> str:
    """ISO-8601 of ``ms_of_day`` milliseconds after 00:00 UTC of MJD ``day`` (86,400,000+ is second 60)."""
    seconds, ms = divmod(ms_of_day, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if hours == 24:  # inside a leap second: 23:59:60.xxx
        hours, minutes, seconds = 23, 59, 60
    return f"{_date_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def tai_mjd_to_utc_iso(mjd: float) -> str:
    """UTC ISO-8601 (``YYYY-MM-DDThh:mm:ss.sss``, no zone suffix) of an MJD in the TAI scale, rounded to 1 ms."""
    if not math.isfinite(mjd):
        raise ValueError(f"time is not finite: {mjd!r}")
    if mjd < MJD_1972 + 1:
        return _astropy_iso(mjd, "tai")
    tai_ms = round(mjd * _MS_PER_DAY)
    i = bisect.bisect_right(_TAI_STARTS, tai_ms) - 1
    nxt = i + 1
    if nxt < len(_TAI_STARTS):
        step = _OFFSETS[nxt] - _OFFSETS[i]
        if step > 0 and tai_ms >= _TAI_STARTS[nxt] - step:
            # the inserted second(s) before the new offset starts: still the old UTC day, second 60
            day = _UTC_DAYS[nxt] - 1
            return _format(day, _MS_PER_DAY + (tai_ms - (_TAI_STARTS[nxt] - step)))
    utc_ms = tai_ms - _OFFSETS[i]
    day, ms_of_day = divmod(utc_ms, _MS_PER_DAY)
    return _format(day, ms_of_day)


def utc_mjd_to_utc_iso(mjd: float) -> str:
    """UTC ISO-8601 of an MJD in the UTC scale (a leap-second day's fraction spans 86,401 s, as in ERFA)."""
    if not math.isfinite(mjd):
        raise ValueError(f"time is not finite: {mjd!r}")
    if mjd < MJD_1972 + 1:
        return _astropy_iso(mjd, "utc")
    day = math.floor(mjd)
    length = _MS_PER_DAY + 1000 if day in _LONG_DAYS else _MS_PER_DAY
    ms_of_day = round((mjd - day) * length)
    if ms_of_day >= length:  # rounded up into the next day
        day, ms_of_day = day + 1, ms_of_day - length
    return _format(day, ms_of_day)


def mjd_to_utc_iso(mjd: float, scale: str) -> str:
    """UTC ISO-8601 of an MJD in ``scale`` ("tai" or "utc")."""
    if scale == "tai":
        return tai_mjd_to_utc_iso(mjd)
    if scale == "utc":
        return utc_mjd_to_utc_iso(mjd)
    raise ValueError(f"unsupported time scale {scale!r} (tai or utc)")


def _astropy_iso(mjd: float, scale: str) -> str:
    """The slow, general path (pre-1972 fractional offsets), via astropy.time."""
    from astropy.time import Time

    return Time(mjd, format="mjd", scale=scale).utc.isot
