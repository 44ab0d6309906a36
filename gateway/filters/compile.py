"""Filter text -> a tree of small closures over :class:`Facts`, checked once: names, functions, constants."""

from __future__ import annotations

import operator
import re
from typing import Any, Callable

from lark import Token, Transformer
from lark.exceptions import VisitError

from gateway.event import Event
from gateway.filters.facts import FIELDS, Facts
from gateway.filters.functions import FUNCTIONS
from gateway.filters.grammar import FilterError, parse
from gateway.filters.paths import check_path, raw_getter


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
        check_path(dotted, first.column, self.text)
        self.names.add(dotted)
        return raw_getter(steps)

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
        maker = FUNCTIONS.get(str(name).lower())
        if maker is None:
            raise FilterError(f"unknown function {str(name)!r} (known: {', '.join(sorted(FUNCTIONS))})",
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
    tree = parse(text)
    compiler = _Compiler(text)
    try:
        run = compiler.transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, FilterError):
            raise error.orig_exc from None
        raise FilterError(f"cannot compile: {error.orig_exc}", text) from None
    return Filter(text, run, frozenset(compiler.names), compiler.uses_xml)
