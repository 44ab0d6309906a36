"""The filter language's grammar (lark, LALR) and its parser: text -> tree, or a FilterError naming the column."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

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

KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}



class FilterError(ValueError):
    """A filter that cannot be compiled: ``column`` (1-based) points at the bad token when there is one."""

    def __init__(self, message: str, text: str = "", column: Optional[int] = None):
        self.reason, self.text, self.column = message, text, column
        if column is not None and text and "\n" not in text:
            message = f"column {column}: {message}\n  {text}\n  {' ' * (column - 1)}^"
        super().__init__(message)


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


def parse(text: str) -> Tree:
    """The parse tree of a filter (one line: the caller folds newlines); FilterError at the bad token."""
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
    return tree
