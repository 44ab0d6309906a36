"""Filters: a small, safe expression language that says which events a route (or a VTP subscriber) wants.

Examples::

    diaSource.reliability > 0.9 and diaSource.snr > 10 and diaObject.nDiaSources < 50 and band in ("g", "r")
    survey == "ztf" and mag < 18.5 and not solar_system
    cone(150.1, 2.2, 0.5) and after("2026-01-01T00:00:00")
    xpath("//Param[@name='mag']/@value") < 19

Grammar: ``and``, ``or``, ``not``, parentheses; comparisons ``== != < <= > >=`` (``=`` means ``==``); ``x in (a, b)``,
``x not in (...)``; ``x is null``, ``x is not null``; arithmetic ``+ - * /``; numbers, "strings" or 'strings',
``true``, ``false``, ``null``.

Names:

- **survey-neutral** fields (:data:`FIELDS`), the same for Rubin and ZTF (from :mod:`gateway.alerts.fields`),
  and, for events that arrived as VOEvent XML, read from the VOEvent (WhereWhen position, the Params of the same
  name);
- **raw record paths** into the Avro alert: ``diaSource.snr``, ``candidate.magpsf``, ``prvDiaSources[0].band``.
  A path that exists in no known alert schema (Rubin versions from lsst-alert-packet when installed, ZTF from
  ``schemas/ztf``) is an error when the filter is compiled; a path missing from a given alert is null.

Functions: ``cone(ra, dec, radius)`` (deg: the event's position within ``radius`` of (ra, dec)),
``distance(ra, dec)`` (deg), ``after(ISO)``, ``before(ISO)`` (observation time, UTC), ``xpath("...")`` (over the
VOEvent: an empty result is null, a node's text or an attribute value is a number when it reads as one),
``matches(value, "regex")``, ``abs(x)``, ``lower(s)``.

Null (a missing value) never compares true: ``mag < 20`` is false for an alert without a magnitude, and so is
``mag >= 20``; test it with ``is null``. Comparing values of different kinds (a string with a number) is false.

Parsed with lark (LALR), never ``eval``; a syntax error names the column of the bad token. A filter compiles once
to a tree of small Python closures, so evaluating it costs a few microseconds per event.
"""

from __future__ import annotations

import math
import operator
import re
from functools import lru_cache
from typing import Any, Callable, Optional

from lark import Lark, Token, Transformer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lxml import etree

from gateway import sky, times
from gateway.event import Event
from gateway.times import datetime_to_mjd, iso_to_mjd

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> not_
         | comparison

?comparison: sum
           | sum COMPARE sum              -> compare
           | sum _IN list                 -> in_
           | sum _NOT _IN list            -> not_in
           | sum _IS _NULL                -> is_null
           | sum _IS _NOT _NULL           -> is_not_null

?sum: product
    | sum ADD product                     -> arith
?product: unary
        | product MUL unary               -> arith
?unary: "-" unary                         -> neg
      | atom

?atom: NUMBER                             -> number
     | STRING                             -> string
     | _TRUE                              -> true
     | _FALSE                             -> false
     | _NULL                              -> null
     | NAME "(" [args] ")"                -> call
     | path
     | "(" or_expr ")"

args: or_expr ("," or_expr)*
list: "(" [literal ("," literal)*] ")"
?literal: NUMBER -> number
        | STRING -> string
        | "-" NUMBER -> neg_number
        | _TRUE -> true
        | _FALSE -> false
        | _NULL -> null

path: NAME (("." NAME) | ("[" INT "]"))*

_OR: "or"i
_AND: "and"i
_NOT: "not"i
_IN: "in"i
_IS: "is"i
_NULL: "null"i
_TRUE: "true"i
_FALSE: "false"i
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">" | "="
ADD: "+" | "-"
MUL: "*" | "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9]+/
NUMBER: /[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?/ | /\.[0-9]+([eE][+-]?[0-9]+)?/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/

%import common.WS
%ignore WS
"""

#: The survey-neutral names, with what they mean (shown by ``vogateway routes fields`` and in errors).
FIELDS = {
    "survey": "rubin or ztf (VOEvent: the survey Param)",
    "schema": "alert schema version, e.g. 7.4, 3.3",
    "simulated": "true for simulated/test alerts",
    "role": "VOEvent role: observation, test, ...",
    "ivorn": "the event's IVORN",
    "origin": "where the event came from (file, kafka://..., vtp://...)",
    "object": "object key: diaObject:<id>, ssObject:<id>, or the ZTF objectId",
    "ra": "right ascension of the detection, deg (ICRS)",
    "dec": "declination of the detection, deg (ICRS)",
    "mjd": "time of the detection, MJD (TAI for Rubin, UTC for ZTF)",
    "age": "days from the detection to when the gateway received the event",
    "band": "filter band: u g r i z y",
    "mag": "difference-image AB magnitude",
    "mag_err": "its uncertainty, mag",
    "flux": "difference-image PSF flux, nJy",
    "flux_err": "its uncertainty, nJy",
    "snr": "signal-to-noise ratio (Rubin)",
    "reliability": "real/bogus score 0-1 (Rubin reliability, ZTF drb or rb)",
    "is_negative": "true when the difference flux is negative",
    "is_dipole": "true when fit as a dipole (Rubin)",
    "trail_length": "trail length, arcsec (Rubin)",
    "solar_system": "true when associated with a known solar-system object",
    "n_detections": "detections of the object so far, as the survey counts them",
    "n_previous": "earlier detections shipped in the alert",
}


KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}


class FilterError(ValueError):
    """A filter that cannot be compiled: ``column`` (1-based) points at the bad token when there is one."""

    def __init__(self, message: str, text: str = "", column: Optional[int] = None):
        self.reason, self.text, self.column = message, text, column
        if column is not None and text and "\n" not in text:
            message = f"column {column}: {message}\n  {text}\n  {' ' * (column - 1)}^"
        super().__init__(message)


# ------------------------------------------------------------------------------------------------ the event view


class Facts:
    """One event as filters see it: each neutral field computed at most once, on first use.

    Build one per event and evaluate every route's filter on it.
    """

    __slots__ = ("event", "_cache", "_root", "_params", "_det")

    def __init__(self, event: Event, root=None):
        """``root``: the event's VOEvent already parsed (safely), if the caller has it."""
        self.event = event
        self._cache: dict[str, Any] = {}
        self._root = root
        self._params = None
        self._det = None

    # -- the alert side

    def detection(self):
        if self._det is None:
            self._det = self.event.detection
            if self._det is None:
                from gateway.alerts import fields

                self._det = fields.detection(self.event.alert)
        return self._det

    def record(self) -> Optional[dict]:
        alert = self.event.alert
        return None if alert is None else alert.record

    # -- the XML side

    def root(self):
        """The parsed VOEvent (safely: no DTD, no network), or None if it does not parse."""
        if self._root is None:
            from gateway.voevent.parse import VOEventError, safe_fromstring

            try:
                self._root = safe_fromstring(self.event.xml)
            except VOEventError:
                self._root = False
        return self._root if self._root is not False else None

    def param(self, name: str):
        """The first ``<Param name=...>`` of the VOEvent's What, as a number when it reads as one."""
        if self._params is None:
            self._params = {}
            root = self.root()
            if root is not None:
                for element in root.iterfind("What//Param"):
                    key = element.get("name")
                    if key and key not in self._params:
                        self._params[key] = _number_or_text(element.get("value"))
        return self._params.get(name)

    def get(self, name: str):
        try:
            return self._cache[name]
        except KeyError:
            pass
        value = self._cache[name] = _NEUTRAL[name](self)
        return value


def _number_or_text(value):
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else None


def _from_alert_or_xml(alert_fn: Callable, param: Optional[str] = None):
    def get(facts: Facts):
        if facts.event.alert is not None:
            return alert_fn(facts)
        return facts.param(param) if param else None
    return get


def _position(index: int, param: str):
    def from_xml(facts: Facts):
        root = facts.root()
        if root is None:
            return None
        found = root.find("WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Position2D/Value2")
        if found is not None and len(found) > index:
            value = _number_or_text(found[index].text)
            return value if isinstance(value, float) else None
        return facts.param(param)

    def get(facts: Facts):
        if facts.event.alert is not None:
            det = facts.detection()
            return det.ra if index == 0 else det.dec
        return from_xml(facts)
    return get


def _mjd(facts: Facts):
    if facts.event.alert is not None:
        return facts.detection().mjd
    for name in ("mjd_tai", "mjd_utc", "mjd"):
        value = facts.param(name)
        if isinstance(value, float):
            return value
    root = facts.root()
    if root is not None:
        iso = root.findtext("WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Time/TimeInstant/ISOTime")
        if iso:
            try:
                return iso_to_mjd(iso)
            except ValueError:
                return None
    return None


def _age(facts: Facts):
    mjd = facts.get("mjd")
    if not isinstance(mjd, float):
        return None
    return datetime_to_mjd(facts.event.received) - mjd


def _alert_fields():
    from gateway.alerts import fields

    return fields


def _summary_value(key: str):
    def get(facts: Facts):
        return _alert_fields().object_summary(facts.event.alert).get(key)
    return get


_NEUTRAL: dict[str, Callable[[Facts], Any]] = {
    "survey": _from_alert_or_xml(lambda f: f.event.alert.survey, "survey"),
    "schema": _from_alert_or_xml(lambda f: f.event.alert.schema, "schema_version"),
    "simulated": lambda f: f.event.alert.simulated if f.event.alert is not None else f.event.role == "test",
    "role": lambda f: f.event.role,
    "ivorn": lambda f: f.event.ivorn,
    "origin": lambda f: f.event.origin,
    "object": _from_alert_or_xml(lambda f: _alert_fields().object_key(f.event.alert), "object_key"),
    "ra": _position(0, "ra"),
    "dec": _position(1, "dec"),
    "mjd": _mjd,
    "age": _age,
    "band": _from_alert_or_xml(lambda f: f.detection().band, "band"),
    "mag": _from_alert_or_xml(lambda f: f.detection().mag, "mag"),
    "mag_err": _from_alert_or_xml(lambda f: f.detection().mag_err, "mag_err"),
    "flux": _from_alert_or_xml(lambda f: f.detection().psf_flux, "psf_flux"),
    "flux_err": _from_alert_or_xml(lambda f: f.detection().psf_flux_err, "psf_flux_err"),
    "snr": _from_alert_or_xml(lambda f: f.detection().snr, "snr"),
    "reliability": _from_alert_or_xml(lambda f: f.detection().reliability, "reliability"),
    "is_negative": _from_alert_or_xml(lambda f: f.detection().is_negative, "is_negative"),
    "is_dipole": _from_alert_or_xml(lambda f: f.detection().is_dipole, "is_dipole"),
    "trail_length": _from_alert_or_xml(lambda f: f.detection().trail_length, "trail_length"),
    "solar_system": _from_alert_or_xml(lambda f: _alert_fields().is_solar_system(f.event.alert), "solar_system"),
    "n_detections": _from_alert_or_xml(_summary_value("n_detections"), "n_detections"),
    "n_previous": _from_alert_or_xml(lambda f: _alert_fields().n_previous(f.event.alert), "n_previous"),
}
assert set(_NEUTRAL) == set(FIELDS)


# ------------------------------------------------------------------------------------------------ time helpers

def _utc_mjd(facts: Facts) -> Optional[float]:
    mjd = facts.get("mjd")
    if not isinstance(mjd, float):
        return None
    scale = "tai" if (facts.event.alert is not None and facts.event.alert.survey == "rubin") else "utc"
    if facts.event.alert is None and facts.param("mjd_tai") is not None:
        scale = "tai"
    return times.tai_to_utc(mjd) if scale == "tai" else mjd


# ------------------------------------------------------------------------------------------------ raw paths


def _walk_schema(schema, prefix: str, out: set[str], named: dict, depth: int = 0) -> None:
    """Every dotted path of records reachable from ``schema`` (arrays are walked into, as ``[i]`` is).

    ``named``: record definitions seen so far by full name (a parsed schema refers to a named type by its name
    after defining it once)."""
    if depth > 8:
        return
    if isinstance(schema, str):
        schema = named.get(schema)
    if isinstance(schema, list):  # a union
        for branch in schema:
            _walk_schema(branch, prefix, out, named, depth)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "record":
        name = schema.get("name", "")
        if schema.get("namespace") and "." not in name:
            name = f"{schema['namespace']}.{name}"
        named.setdefault(name, schema)
        for field_def in schema.get("fields", ()):
            path = f"{prefix}.{field_def['name']}" if prefix else field_def["name"]
            out.add(path)
            _walk_schema(field_def["type"], path, out, named, depth + 1)
    elif kind == "array":
        _walk_schema(schema.get("items"), prefix, out, named, depth)
    elif isinstance(kind, (dict, list, str)) and kind not in _PRIMITIVES:
        _walk_schema(kind, prefix, out, named, depth)


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string", "enum", "fixed", "map"}


@lru_cache(maxsize=1)
def known_paths() -> tuple[frozenset[str], frozenset[str]]:
    """(every raw path in the known alert schemas, the surveys whose schemas were available to read)."""
    from gateway.alerts.schemas import SchemaLibrary

    library = SchemaLibrary()
    paths: set[str] = set()
    surveys = set()
    for survey in ("rubin", "ztf"):
        for version in library.versions(survey):
            try:
                _walk_schema(library.by_version(survey, version).parsed, "", paths, {})
                surveys.add(survey)
            except Exception:  # an unreadable schema file must not make every filter fail
                continue
    return frozenset(paths), frozenset(surveys)


def _check_path(dotted: str, column: int, text: str) -> None:
    paths, surveys = known_paths()
    if dotted in paths:
        return
    if surveys != {"rubin", "ztf"}:
        return  # some schemas could not be read (no lsst-alert-packet): not knowable, accept
    head = dotted.split(".")[0]
    hint = ""
    if head in paths:
        options = sorted(p for p in paths if p.startswith(head + ".") and p.count(".") == dotted.count("."))
        close = [p for p in options if p.lower() == dotted.lower()] or _similar(dotted, options)
        if close:
            hint = f" (did you mean {', '.join(close[:3])}?)"
    else:
        close = _similar(dotted, list(FIELDS) + sorted(p for p in paths if "." not in p))
        if close:
            hint = f" (did you mean {', '.join(close[:3])}?)"
    raise FilterError(f"unknown field {dotted!r}: not a neutral field ({', '.join(FIELDS)}) nor a path in any "
                      f"known Rubin or ZTF alert schema{hint}", text, column)


def _similar(word: str, options: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(word, options, n=3, cutoff=0.75)


def _raw_getter(steps: tuple) -> Callable[[Facts], Any]:
    def get(facts: Facts):
        value: Any = facts.record()
        for step in steps:
            if value is None:
                return None
            if isinstance(step, int):
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return None
                value = value[step]
            else:
                if not isinstance(value, dict):
                    return None
                value = value.get(step)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return get


# ------------------------------------------------------------------------------------------------ compiling


def _compare(op: Callable):
    def run(a, b):
        if a is None or b is None:
            return False
        try:
            return bool(op(a, b))
        except TypeError:
            return False
    return run


_COMPARE = {"==": _compare(operator.eq), "=": _compare(operator.eq), "!=": _compare(operator.ne),
            "<": _compare(operator.lt), "<=": _compare(operator.le), ">": _compare(operator.gt),
            ">=": _compare(operator.ge)}


def _arith(op: Callable):
    def run(a, b):
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except (TypeError, ZeroDivisionError, OverflowError):
            return None
    return run


_ARITH = {"+": _arith(operator.add), "-": _arith(operator.sub), "*": _arith(operator.mul),
          "/": _arith(operator.truediv)}


def _const(value):
    return lambda facts: value


def _truth(value) -> bool:
    return value is not None and value is not False and value != 0 and value != ""


def _string_literal(token: Token) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


class _Compiler(Transformer):
    """Lark tree -> closure ``fn(facts) -> value``. Checks names, function arity and constant arguments."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.names: set[str] = set()
        self.uses_xml = False

    # literals
    def number(self, items):
        return _const(float(items[0]) if any(c in items[0] for c in ".eE") else int(items[0]))

    def neg_number(self, items):
        return _const(-(float(items[0]) if any(c in items[0] for c in ".eE") else int(items[0])))

    def string(self, items):
        return _const(_string_literal(items[0]))

    def true(self, _):
        return _const(True)

    def false(self, _):
        return _const(False)

    def null(self, _):
        return _const(None)

    # names
    def path(self, items):
        first: Token = items[0]
        steps = tuple(int(t) if t.type == "INT" else str(t) for t in items)
        dotted = ".".join(s for s in steps if isinstance(s, str))
        if len(steps) == 1 and first in FIELDS:
            self.names.add(str(first))
            name = str(first)
            return lambda facts: facts.get(name)
        _check_path(dotted, first.column, self.text)
        self.names.add(dotted)
        return _raw_getter(steps)

    # operators
    def or_expr(self, items):
        parts = tuple(items)
        return lambda facts: any(_truth(p(facts)) for p in parts)

    def and_expr(self, items):
        parts = tuple(items)
        return lambda facts: all(_truth(p(facts)) for p in parts)

    def not_(self, items):
        inner = items[0]
        return lambda facts: not _truth(inner(facts))

    def compare(self, items):
        left, op, right = items
        run = _COMPARE[str(op)]
        return lambda facts: run(left(facts), right(facts))

    def in_(self, items):
        left, values = items
        return lambda facts: (value := left(facts)) is not None and value in values

    def not_in(self, items):
        left, values = items
        return lambda facts: (value := left(facts)) is not None and value not in values

    def is_null(self, items):
        inner = items[0]
        return lambda facts: inner(facts) is None

    def is_not_null(self, items):
        inner = items[0]
        return lambda facts: inner(facts) is not None

    def list(self, items):
        return frozenset(item(None) for item in items if item is not None)

    def arith(self, items):
        left, op, right = items
        run = _ARITH[str(op)]
        return lambda facts: run(left(facts), right(facts))

    def neg(self, items):
        inner = items[0]
        return lambda facts: (lambda v: -v if isinstance(v, (int, float)) and not isinstance(v, bool) else None)(
            inner(facts))

    def args(self, items):
        return list(items)

    def call(self, items):
        name: Token = items[0]
        args = items[1] if len(items) > 1 else []
        maker = _FUNCTIONS.get(str(name).lower())
        if maker is None:
            raise FilterError(f"unknown function {str(name)!r} (known: {', '.join(sorted(_FUNCTIONS))})",
                              self.text, name.column)
        arity, build = maker
        if len(args) != arity:
            raise FilterError(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}, got {len(args)}",
                              self.text, name.column)
        if str(name).lower() == "xpath":
            self.uses_xml = True
        try:
            return build(args)
        except ValueError as error:
            raise FilterError(f"{name}(): {error}", self.text, name.column) from None


def _constant(arg, what: str, kind=(int, float)):
    """The value of an argument that must be a literal (checked at compile time)."""
    try:
        value = arg(None)
    except Exception:
        raise ValueError(f"{what} must be a literal") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{what} must be a {'number' if kind != str else 'string'} literal, got {value!r}")
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
            limit = iso_to_mjd(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 date or time: {text!r}") from None

        def run(facts):
            mjd = _utc_mjd(facts)
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
                return _number_or_text(text) if text else True
            return _number_or_text(first)
        if isinstance(result, bool):
            return result
        if isinstance(result, float):
            return result if math.isfinite(result) else None
        return _number_or_text(result)
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


_FUNCTIONS = {
    "cone": (3, _fn_cone),
    "distance": (2, _fn_distance),
    "after": (1, _fn_time(operator.ge)),
    "before": (1, _fn_time(operator.lt)),
    "xpath": (1, _fn_xpath),
    "matches": (2, _fn_matches),
    "abs": (1, _fn_abs),
    "lower": (1, _fn_lower),
}


class _Keyword(Exception):
    def __init__(self, token):
        self.token = token


def _no_keyword_names(token: Token) -> Token:
    # where no keyword fits, the contextual lexer would take "and" as a name: it is a misplaced keyword
    if token.lower() in KEYWORDS:
        raise _Keyword(token)
    return token


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", maybe_placeholders=False, propagate_positions=False,
                lexer_callbacks={"NAME": _no_keyword_names})


_FRIENDLY = {"COMPARE": "a comparison (== != < <= > >=)", "NAME": "a name", "NUMBER": "a number",
             "STRING": "a string", "RPAR": "')'", "LPAR": "'('", "$END": "the end of the filter", "COMMA": "','"}


def _describe(token) -> str:
    if token is None or getattr(token, "type", None) == "$END":
        return "the end of the filter"
    return repr(str(token))


class Filter:
    """A compiled filter: ``filter(event)`` or ``filter.matches(facts)`` -> bool. ``text`` is the source."""

    def __init__(self, text: str, run: Callable[[Facts], Any], names: frozenset[str], uses_xml: bool):
        self.text, self._run, self.names, self.uses_xml = text, run, names, uses_xml

    def matches(self, facts: Facts) -> bool:
        try:
            return _truth(self._run(facts))
        except Exception:  # a malformed alert (missing record, odd types) is "not selected", never a crash
            return False

    def __call__(self, event: Event) -> bool:
        return self.matches(Facts(event))

    def __repr__(self):
        return f"Filter({self.text!r})"


#: a filter that selects everything (an empty filter text)
EVERYTHING = Filter("", lambda facts: True, frozenset(), False)


def compile_filter(text: str) -> Filter:
    """Compile a filter; :class:`FilterError` (a ValueError) says what is wrong and at which column."""
    if not isinstance(text, str):
        raise FilterError(f"a filter is text, got {type(text).__name__}")
    if not text.strip():
        return EVERYTHING
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    try:
        tree = _parser().parse(text)
    except _Keyword as error:
        raise FilterError(f"unexpected {str(error.token)!r}", text, error.token.column) from None
    except UnexpectedCharacters as error:
        raise FilterError(f"unexpected character {text[error.pos_in_stream]!r}", text, error.column) from None
    except UnexpectedEOF:
        raise FilterError("the filter ends too early", text, len(text) + 1) from None
    except UnexpectedToken as error:
        if error.token.type == "$END":
            raise FilterError("the filter ends too early", text, len(text) + 1) from None
        expected = sorted(_FRIENDLY.get(t, t.strip("_").lower()) for t in error.expected if not t.startswith("__"))
        hint = f"; expected {', '.join(expected[:6])}" if expected else ""
        raise FilterError(f"unexpected {_describe(error.token)}{hint}", text, error.column) from None
    except UnexpectedInput as error:
        raise FilterError(f"syntax error: {error}", text, getattr(error, "column", None)) from None
    compiler = _Compiler(text)
    try:
        run = compiler.transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, FilterError):
            raise error.orig_exc from None
        raise FilterError(f"cannot compile: {error.orig_exc}", text) from None
    return Filter(text, run, frozenset(compiler.names), compiler.uses_xml)
