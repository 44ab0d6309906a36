"""The one error type a TAP request ends in: a message for a person and the HTTP status to answer with."""

from __future__ import annotations

from typing import Optional


class QueryError(Exception):
    """A query failed; ``status`` is the HTTP status to answer with (400: the user can fix it); ``retry_after``:
    seconds after which the same request may succeed (HTTP Retry-After), for 503s."""

    def __init__(self, message: str, status: int = 400, retry_after: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
