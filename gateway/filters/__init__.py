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

from gateway.filters.compile import EVERYTHING, Filter, compile_filter
from gateway.filters.facts import FIELDS, Facts
from gateway.filters.grammar import FilterError
from gateway.filters.paths import known_paths

__all__ = ["EVERYTHING", "FIELDS", "Facts", "Filter", "FilterError", "compile_filter", "known_paths"]
