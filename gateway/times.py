"""Time, written once: MJD in TAI or UTC, ISO-8601 text and datetimes, with astropy's leap-second table.

Every module that reads or writes a time uses these functions; a time that cannot be represented (NaN, or a value
far outside the years 1..9999 such as seconds given as days) raises :class:`TimeError` with a sentence for a person.

MJD (TAI or UTC) -> UTC ISO-8601 strings must be fast enough for the hot path:

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
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Optional, Union

import erfa

#: MJD of 1972-01-01, where the integer-second UTC era starts
MJD_1972 = 41317
#: ``date.toordinal()`` of MJD 0 (1858-11-17)
_MJD0_ORDINAL = 678576
_MS_PER_DAY = 86_400_000
#: MJD of 0001-01-01 and of 9999-12-31: what an ISO-8601 date can say
MJD_MIN, MJD_MAX = 1 - _MJD0_ORDINAL, date(9999, 12, 31).toordinal() - _MJD0_ORDINAL
SCALES = ("tai", "utc")


class TimeError(ValueError):
    """A time that cannot be used; the message is one sentence saying why."""


def check_mjd(mjd: float) -> float:
    """``mjd`` as a float if it is a finite MJD within the years 1..9999; TimeError otherwise."""
    try:
        value = float(mjd)
    except (TypeError, ValueError):
        raise TimeError(f"time {mjd!r} is not a number") from None
    if not math.isfinite(value):
        raise TimeError(f"time is not finite: {mjd!r}")
    if not MJD_MIN <= value <= MJD_MAX:
        raise TimeError(f"time {mjd!r} is not an MJD within the years 1 to 9999 (seconds given as days?)")
    return value


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
    mjd = check_mjd(mjd)
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
    mjd = check_mjd(mjd)
    if mjd < MJD_1972 + 1:
        return _astropy_iso(mjd, "utc")
    day = math.floor(mjd)
    length = _MS_PER_DAY + 1000 if day in _LONG_DAYS else _MS_PER_DAY
    ms_of_day = round((mjd - day) * length)
    if ms_of_day >= length:  # rounded up into the next day
        day, ms_of_day = day + 1, ms_of_day - length
    return _format(day, ms_of_day)


def _in_scale(functions: dict, mjd: float, scale: str):
    try:
        function = functions[scale]
    except KeyError:
        raise TimeError(f"unsupported time scale {scale!r} (tai or utc)") from None
    return function(mjd)


def mjd_to_utc_iso(mjd: float, scale: str) -> str:
    """UTC ISO-8601 of an MJD in ``scale`` ("tai" or "utc")."""
    return _in_scale(_ISO_FROM, mjd, scale)


def tai_minus_utc(mjd_utc: float) -> float:
    """TAI - UTC in seconds at a UTC MJD (since 1972; before that the 1972 value, good to ~10 s)."""
    i = bisect.bisect_right(_UTC_DAYS, math.floor(mjd_utc)) - 1
    return _OFFSETS[max(i, 0)] / 1000.0


def tai_to_utc(mjd_tai: float) -> float:
    """UTC MJD of a TAI MJD (to the microsecond; inside a leap second it gives the second after it)."""
    tai_ms = round(check_mjd(mjd_tai) * _MS_PER_DAY)
    i = max(bisect.bisect_right(_TAI_STARTS, tai_ms) - 1, 0)
    return mjd_tai - _OFFSETS[i] / 1000.0 / 86400.0


def utc_to_tai(mjd_utc: float) -> float:
    """TAI MJD of a UTC MJD."""
    return check_mjd(mjd_utc) + tai_minus_utc(mjd_utc) / 86400.0


def to_utc(mjd: float, scale: str) -> float:
    """UTC MJD of an MJD in ``scale`` ("tai" or "utc")."""
    return _in_scale(_UTC_FROM, mjd, scale)


def to_tai(mjd: float, scale: str) -> float:
    """TAI MJD of an MJD in ``scale`` ("tai" or "utc")."""
    if scale == "tai":  # Rubin's every time; the store asks for ~31 per alert
        return check_mjd(mjd)
    return _in_scale(_TAI_FROM, mjd, scale)


_ISO_FROM = {"tai": tai_mjd_to_utc_iso, "utc": utc_mjd_to_utc_iso}
_UTC_FROM = {"tai": tai_to_utc, "utc": check_mjd}
_TAI_FROM = {"tai": check_mjd, "utc": utc_to_tai}


# ------------------------------------------------------------------------------------- datetimes and ISO-8601 text

_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)


def utcnow() -> datetime:
    """Now, timezone-aware UTC (never naive ``utcnow``)."""
    return datetime.now(timezone.utc)


def datetime_to_mjd(when: datetime) -> float:
    """UTC MJD of a datetime (naive means UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - _MJD_EPOCH).total_seconds() / 86400.0


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date or date-time (``Z``, an offset, or no zone meaning UTC) as an aware UTC datetime."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeError(f"{text!r} is not an ISO-8601 date or time (e.g. 2026-11-30T12:00:00Z)") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def iso_to_mjd(text: str) -> float:
    """UTC MJD of an ISO-8601 date or date-time; a time without a zone is UTC."""
    return datetime_to_mjd(parse_iso(text))


def format_iso(when: Union[datetime, float], digits: int = 3, zone: str = "Z") -> str:
    """UTC ISO-8601 of a datetime (naive means UTC) or POSIX seconds: ``YYYY-MM-DDThh:mm:ss[.fff]`` + ``zone``.

    ``digits``: 0 (whole seconds, as VTP TimeStamps and VOEvent Who/Date) or 3 (milliseconds); ``zone``: "Z"
    (DALI, pyvo) or "" (SQL TIMESTAMP columns).
    """
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, timezone.utc)
    elif when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    text = when.replace(tzinfo=None).isoformat(timespec="milliseconds" if digits else "seconds")
    return text + zone


def optional_iso(when: Optional[Union[datetime, float]], digits: int = 3, zone: str = "Z") -> Optional[str]:
    """:func:`format_iso`, or None for None."""
    return None if when is None else format_iso(when, digits, zone)


def _astropy_iso(mjd: float, scale: str) -> str:
    """The slow, general path (pre-1972 fractional offsets), via astropy.time."""
    from astropy.time import Time

    return Time(mjd, format="mjd", scale=scale).utc.isot


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration written ``90``, ``90s``, ``10m``, ``1.5h``, ``2d`` or ``1w``; TimeError otherwise."""
    value = str(text).strip().lower()
    scale = _DURATION_UNITS.get(value[-1:], None) if value else None
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise TimeError(f"{text!r} is not a duration (e.g. 90s, 10m, 2h, 1d)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise TimeError(f"{text!r} is not a duration of zero or more seconds")
    return seconds
