"""Sky geometry, written once: distances, cones and polygons on the celestial sphere (ICRS, degrees).

The filters (``cone()``, ``distance()``), the SQLite functions behind the TAP translator (``sky_distance``,
``in_polygon``) and the TAP index boxes (``ra_ranges``, ``bounding_cap``) all use these functions, so a cone means
the same thing wherever a user writes it. PostgreSQL computes the same quantities with q3c.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

#: degrees added to every index box and bounding cap so that rounding never loses a row on the edge
BOX_MARGIN = 1e-6

#: declination zones per degree of SQLite's sky index (zones of 3 arcmin: a cross-match radius fits in one)
ZONES_PER_DEGREE = 20
ZONE_HEIGHT = 1.0 / ZONES_PER_DEGREE


def zone(dec: float) -> int:
    """The declination zone of ``dec`` (deg), as SQL's ``CAST((dec + 90) * 20 AS INTEGER)`` computes it."""
    return int((min(90.0, max(-90.0, dec)) + 90.0) * ZONES_PER_DEGREE)


def zones(dec_lo: float, dec_hi: float) -> range:
    """The zones a declination band (deg) meets."""
    return range(zone(dec_lo), zone(dec_hi) + 1)


def distance(ra1, dec1, ra2, dec2) -> Optional[float]:
    """Great-circle distance in degrees (haversine: exact at small separations); None if any input is None."""
    if ra1 is None or dec1 is None or ra2 is None or dec2 is None:
        return None
    r1, d1, r2, d2 = math.radians(ra1), math.radians(dec1), math.radians(ra2), math.radians(dec2)
    a = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(a))))


class Cone:
    """A circle on the sky, centre (ra, dec) and radius in degrees, with what a membership test needs computed once.

    Raises ValueError when the declination is outside -90..90 or the radius is negative.
    """

    __slots__ = ("ra", "dec", "radius", "_sin_dec", "_cos_dec", "_cos_radius", "_ra_rad")

    def __init__(self, ra: float, dec: float, radius: float):
        if not (-90.0 <= dec <= 90.0) or not radius >= 0:
            raise ValueError("a cone needs dec within -90..90 and radius >= 0 (deg)")
        self.ra, self.dec, self.radius = ra, dec, radius
        d0 = math.radians(dec)
        self._sin_dec, self._cos_dec = math.sin(d0), math.cos(d0)
        self._cos_radius = math.cos(math.radians(radius))
        self._ra_rad = math.radians(ra)

    def contains(self, ra: Optional[float], dec: Optional[float]) -> bool:
        """True when (ra, dec) lies within the cone (edge included); False for a missing position."""
        if ra is None or dec is None:
            return False
        d = math.radians(dec)
        cos_sep = self._sin_dec * math.sin(d) + self._cos_dec * math.cos(d) * math.cos(math.radians(ra) - self._ra_rad)
        return cos_sep >= self._cos_radius

    def ra_ranges(self) -> list[tuple[float, float]]:
        """RA intervals (deg, within [0, 360]) that cover the cone: one, or two across RA 0."""
        return ra_ranges(self.ra, self.dec, self.radius)


def ra_half_width(dec: float, radius: float) -> Optional[float]:
    """Half the RA extent (deg) of a cone at ``dec``, margin included; None when the cone reaches a pole."""
    if abs(dec) + radius >= 89.9 or radius >= 90:
        return None
    return math.degrees(math.asin(min(1.0, math.sin(math.radians(radius)) / math.cos(math.radians(dec))))) + BOX_MARGIN


def ra_ranges(ra: float, dec: float, radius: float) -> list[tuple[float, float]]:
    """RA intervals (deg, within [0, 360]) that cover a cone; one or two (across RA 0)."""
    half = ra_half_width(dec, radius)
    if half is None:
        return [(0.0, 360.0)]
    ra = ra % 360.0
    lo, hi = ra - half, ra + half
    if lo < 0:
        return [(lo + 360.0, 360.0), (0.0, hi)]
    if hi > 360:
        return [(lo, 360.0), (0.0, hi - 360.0)]
    return [(lo, hi)]


def unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    """The Cartesian unit vector of (ra, dec) in degrees."""
    r, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d))


def _angle(a, b) -> float:
    dot = max(-1.0, min(1.0, sum(p * q for p, q in zip(a, b))))
    return math.degrees(math.acos(dot))


def bounding_cap(vertices: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], float]:
    """A cone (centre ra, dec; radius, deg) holding every vertex, hence the (great-circle edged) polygon."""
    vs = [unit_vector(*v) for v in vertices]
    x, y, z = (sum(c) for c in zip(*vs))
    norm = math.sqrt(x * x + y * y + z * z) or 1.0
    cra = math.degrees(math.atan2(y, x)) % 360.0
    cdec = math.degrees(math.asin(max(-1.0, min(1.0, z / norm))))
    radius = max(_angle((x / norm, y / norm, z / norm), v) for v in vs)
    return (cra, cdec), radius + BOX_MARGIN


def in_polygon(ra, dec, *flat) -> Optional[int]:
    """1 when (ra, dec) is inside the polygon whose edges are great circles between the vertices
    (``flat`` = ra1, dec1, ra2, dec2, ... in deg); 0 otherwise; None for a missing position.

    Gnomonic projection about the vertices' centre maps great circles to lines, so a planar test is exact (for
    polygons smaller than a hemisphere, as ADQL's are).
    """
    if ra is None or dec is None:
        return None
    vertices = list(zip(flat[0::2], flat[1::2]))
    (cra, cdec), _ = bounding_cap(vertices)
    centre = unit_vector(cra, cdec)
    # tangent plane basis at the centre
    east = (-math.sin(math.radians(cra)), math.cos(math.radians(cra)), 0.0)
    north = (centre[1] * east[2] - centre[2] * east[1], centre[2] * east[0] - centre[0] * east[2],
             centre[0] * east[1] - centre[1] * east[0])

    def project(v):
        u = unit_vector(*v)
        w = sum(a * b for a, b in zip(u, centre))
        if w <= 0:
            return None
        return (sum(a * b for a, b in zip(u, east)) / w, sum(a * b for a, b in zip(u, north)) / w)

    p = project((ra, dec))
    if p is None:
        return 0
    poly = [project(v) for v in vertices]
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > p[1]) != (y2 > p[1]) and p[0] < x1 + (p[1] - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return int(inside)
