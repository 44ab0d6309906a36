"""The filter language's functions: cone, distance, after, before, xpath, matches, abs, lower.

Each maker takes the compiled arguments (closures over :class:`Facts`) and returns the closure of the call;
arguments that must be literals are checked when the filter is compiled (a ValueError, which names the function).
"""

from __future__ import annotations

import math
import operator
import re

from lxml import etree

from gateway import sky, times
from gateway.voevent.read import number_or_text


def _constant(arg, what: str, kind=(int, float)):
    """The value of an argument that must be a literal (checked at compile time)."""
    try:
        value = arg(None)
    except Exception:
        raise ValueError(f"{what} must be a literal") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{what} must be a {'string' if kind is str else 'number'} literal, got {value!r}")
    return value


def _fn_cone(args):
    ra0, dec0, radius = (_constant(a, w) for a, w in zip(args, ("ra", "dec", "radius")))
    try:
        cone = sky.Cone(ra0, dec0, radius)
    except ValueError:
        raise ValueError("cone(ra, dec, radius): dec within -90..90 and radius >= 0 (deg)") from None

    def run(facts):
        ra, dec = facts.get("ra"), facts.get("dec")
        return isinstance(ra, float) and isinstance(dec, float) and cone.contains(ra, dec)
    return run


def _fn_distance(args):
    ra0, dec0 = (_constant(a, w) for a, w in zip(args, ("ra", "dec")))

    def run(facts):
        ra, dec = facts.get("ra"), facts.get("dec")
        if not isinstance(ra, float) or not isinstance(dec, float):
            return None
        return sky.distance(ra, dec, ra0, dec0)
    return run


def _fn_time(compare):
    def build(args):
        text = _constant(args[0], "the time", str)
        try:
            limit = times.iso_to_mjd(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 date or time: {text!r}") from None

        def run(facts):
            mjd = facts.view.mjd_utc
            return mjd is not None and compare(mjd, limit)
        return run
    return build


def _fn_xpath(args):
    expression = _constant(args[0], "the XPath", str)
    try:
        compiled = etree.XPath(expression)
    except etree.XPathSyntaxError as error:
        raise ValueError(f"invalid XPath {expression!r}: {error}") from None

    def run(facts):
        root = facts.root()
        if root is None:
            return None
        try:
            result = compiled(root)
        except etree.XPathError:
            return None
        if isinstance(result, list):
            if not result:
                return None
            first = result[0]
            if isinstance(first, etree._Element):
                text = (first.text or "").strip()
                return number_or_text(text) if text else True
            return number_or_text(first)
        if isinstance(result, bool):
            return result
        if isinstance(result, float):
            return result if math.isfinite(result) else None
        return number_or_text(result)
    return run


def _fn_matches(args):
    value, pattern = args[0], _constant(args[1], "the pattern", str)
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None

    def run(facts):
        text = value(facts)
        return isinstance(text, str) and regex.search(text) is not None
    return run


def _fn_abs(args):
    inner = args[0]
    return lambda facts: (lambda v: abs(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)(
        inner(facts))


def _fn_lower(args):
    inner = args[0]
    return lambda facts: (lambda v: v.lower() if isinstance(v, str) else None)(inner(facts))


FUNCTIONS = {
    "cone": (3, _fn_cone),
    "distance": (2, _fn_distance),
    "after": (1, _fn_time(operator.ge)),
    "before": (1, _fn_time(operator.lt)),
    "xpath": (1, _fn_xpath),
    "matches": (2, _fn_matches),
    "abs": (1, _fn_abs),
    "lower": (1, _fn_lower),
}
