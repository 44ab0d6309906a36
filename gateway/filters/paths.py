"""Raw record paths (``diaSource.snr``, ``prvDiaSources[0].band``): checked against every known alert schema."""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from typing import Any, Callable

from gateway.alerts.schemas import SchemaLibrary
from gateway.filters.facts import FIELDS, Facts
from gateway.filters.grammar import FilterError


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


def check_path(dotted: str, column: int, text: str) -> None:
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
    return difflib.get_close_matches(word, options, n=3, cutoff=0.75)


def raw_getter(steps: tuple) -> Callable[[Facts], Any]:
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
