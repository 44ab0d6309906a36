"""MJD -> UTC ISO-8601 with the leap-second table agrees with astropy.time to 1 ms, leap seconds included."""

import math
import random
from datetime import datetime

import erfa
import pytest
from astropy.time import Time
from astropy.utils import iers

from gateway.times import MJD_1972, mjd_to_utc_iso, tai_mjd_to_utc_iso, utc_mjd_to_utc_iso

iers.conf.auto_download = False


def ms_since_2000(iso: str) -> int:
    """Milliseconds from 2000-01-01T00:00:00 as written (second 60 counts as one more second of the day)."""
    day, clock = iso.split("T")
    hours, minutes, seconds = clock.split(":")
    days = (datetime.fromisoformat(day) - datetime(2000, 1, 1)).days
    return days * 86_400_000 + (int(hours) * 3600 + int(minutes) * 60) * 1000 + round(float(seconds) * 1000)


def astropy_iso(mjd: float, scale: str) -> str:
    return Time(mjd, format="mjd", scale=scale).utc.isot


@pytest.mark.parametrize("scale", ["tai", "utc"])
def test_random_times_since_1972_agree_with_astropy(scale):
    rng = random.Random(20261124)
    mjds = [rng.uniform(MJD_1972 + 1, 61500.0) for _ in range(3000)]
    ours = [mjd_to_utc_iso(m, scale) for m in mjds]
    theirs = Time(mjds, format="mjd", scale=scale).utc.isot
    for m, a, b in zip(mjds, ours, theirs):
        assert abs(ms_since_2000(a) - ms_since_2000(b)) <= 1, (m, a, b)


def leap_seconds():
    """UTC MJD of every day that starts with a new (larger) TAI-UTC, since 1972."""
    table = erfa.leap_seconds.get()
    days = []
    for (y0, m0, d0), (y1, m1, d1) in zip(table[:-1], table[1:]):
        if y1 >= 1972 and d1 > d0 and y0 >= 1972:
            days.append(Time(f"{y1:04d}-{m1:02d}-01", scale="utc").mjd)
    return days


def test_every_leap_second_since_1972_is_handled_like_astropy():
    days = leap_seconds()
    assert len(days) >= 27  # 1972-07 ... 2017-01
    for day in days:
        start = Time(day - 3 / 86400, format="mjd", scale="utc").tai.mjd
        # TAI from 3 s before the leap second to 2 s after it, every 0.1 s: 23:59:57 ... 23:59:60.x ... 00:00:01
        mjds = [start + k * 0.1 / 86400 for k in range(60)]
        theirs = Time(mjds, format="mjd", scale="tai").utc.isot
        for m, b in zip(mjds, theirs):
            a = tai_mjd_to_utc_iso(m)
            assert abs(ms_since_2000(a) - ms_since_2000(b)) <= 1, (m, a, b)
        assert any(":60." in tai_mjd_to_utc_iso(m) for m in mjds)


def test_a_utc_day_with_a_leap_second_is_86401_s_long():
    day = Time("2016-12-31", scale="utc").mjd
    for fraction in (0.5, 0.99999, 0.999995, 0.9999999):
        a, b = utc_mjd_to_utc_iso(day + fraction), astropy_iso(day + fraction, "utc")
        assert abs(ms_since_2000(a) - ms_since_2000(b)) <= 1, (fraction, a, b)
    assert utc_mjd_to_utc_iso(day + 0.9999999).startswith("2016-12-31T23:59:60.")


def test_format_and_rounding():
    assert tai_mjd_to_utc_iso(60000.0) == "2023-02-24T23:59:23.000"  # 37 s TAI-UTC
    assert utc_mjd_to_utc_iso(60000.0) == "2023-02-25T00:00:00.000"
    assert utc_mjd_to_utc_iso(60000.0 - 1e-10) == "2023-02-25T00:00:00.000"  # rounds up into the next day
    assert utc_mjd_to_utc_iso(58940.32312696008) == astropy_iso(58940.32312696008, "utc")


def test_before_1972_uses_astropy():
    for m in (40000.25, 37000.5):
        assert tai_mjd_to_utc_iso(m) == astropy_iso(m, "tai")
        assert utc_mjd_to_utc_iso(m) == astropy_iso(m, "utc")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_times_raise(bad):
    with pytest.raises(ValueError, match="not finite"):
        tai_mjd_to_utc_iso(bad)
    with pytest.raises(ValueError, match="not finite"):
        utc_mjd_to_utc_iso(bad)


def test_unknown_scale_raises():
    with pytest.raises(ValueError, match="time scale"):
        mjd_to_utc_iso(60000.0, "tt")
