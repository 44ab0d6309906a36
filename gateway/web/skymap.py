"""The sky map of the status page: an Aitoff projection of ICRS positions (RA increasing to the left, as on the
sky), the galactic plane, and colours per band. Coordinates are SVG user units in a WIDTH x HEIGHT box."""

from __future__ import annotations

import math

WIDTH, HEIGHT = 720, 360

#: colours by filter band (Rubin u g r i z y; ZTF g r i), from blue to red; anything else grey
BAND_COLOURS = {"u": "#7b3fc4", "g": "#2e9e44", "r": "#d62728", "i": "#e07b00", "z": "#8c2d04", "y": "#4a1f00"}
OTHER_COLOUR = "#777777"

# the galactic north pole and the galactic longitude of the celestial north pole (J2000, IAU 1958 on FK5)
_POLE_RA, _POLE_DEC, _NCP_L = math.radians(192.85948), math.radians(27.12825), math.radians(122.93192)


def band_colour(band: str) -> str:
    return BAND_COLOURS.get(band, OTHER_COLOUR)


def project(ra: float, dec: float) -> tuple[float, float]:
    """(x, y) on the map of a position in degrees (Aitoff, centred on RA 0)."""
    lon = math.radians(((ra + 180.0) % 360.0) - 180.0)
    lat = math.radians(max(-90.0, min(90.0, dec)))
    alpha = math.acos(max(-1.0, min(1.0, math.cos(lat) * math.cos(lon / 2))))
    sinc = math.sin(alpha) / alpha if alpha > 1e-12 else 1.0
    x = 2 * math.cos(lat) * math.sin(lon / 2) / sinc  # -pi .. pi
    y = math.sin(lat) / sinc  # -pi/2 .. pi/2
    return round(WIDTH / 2 - x / math.pi * WIDTH / 2, 1), round(HEIGHT / 2 - y / (math.pi / 2) * HEIGHT / 2, 1)


def galactic_to_icrs(l_deg: float, b_deg: float) -> tuple[float, float]:
    """(ra, dec) in degrees of a galactic position (the standard rotation; good to arcseconds, plenty for a map)."""
    b, dl = math.radians(b_deg), _NCP_L - math.radians(l_deg)
    dec = math.asin(math.sin(b) * math.sin(_POLE_DEC) + math.cos(b) * math.cos(_POLE_DEC) * math.cos(dl))
    ra = _POLE_RA + math.atan2(math.cos(b) * math.sin(dl),
                               math.sin(b) * math.cos(_POLE_DEC) - math.cos(b) * math.sin(_POLE_DEC) * math.cos(dl))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def _path(points: list[tuple[float, float]]) -> str:
    """An SVG path through ``points``, broken where it wraps from one edge of the map to the other."""
    parts, previous = [], None
    for x, y in points:
        jump = previous is None or abs(x - previous[0]) > WIDTH / 4
        parts.append(f"{'M' if jump else 'L'}{x},{y}")
        previous = (x, y)
    return " ".join(parts)


def galactic_plane_path() -> str:
    return _path([project(*galactic_to_icrs(longitude, 0.0)) for longitude in range(0, 361, 2)])


def graticule_paths() -> list[str]:
    """The outline, and meridians every 60 deg of RA and parallels every 30 deg of Dec."""
    paths = [_path([project(179.9999, d) for d in range(-90, 91, 3)] + [project(180.0001, d)
                                                                        for d in range(90, -91, -3)])]
    paths += [_path([project(ra, d) for d in range(-90, 91, 3)]) for ra in range(60, 360, 60)]
    paths += [_path([project(ra / 2, d) for ra in range(-359, 360, 4)]) for d in range(-60, 61, 30)]
    return paths


GALACTIC_PLANE = galactic_plane_path()
GRATICULE = graticule_paths()
