"""Exceptions said in words: what a person reads in a rejection reason or a log line, never a repr or a traceback."""

from __future__ import annotations

import re


def in_words(error: BaseException) -> str:
    """``error`` as a phrase for a person: its message, or its kind in words when the message alone says nothing
    (an empty one; a KeyError's bare key)."""
    text = str(error).strip()
    if isinstance(error, KeyError):
        return f"missing key {text}" if text else "missing key"
    if not text:
        return _kind(error)
    return text


def _kind(error: BaseException) -> str:
    """``ZeroDivisionError`` -> "zero division error"."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type(error).__name__).lower()
