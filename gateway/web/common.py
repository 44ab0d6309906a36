"""What every page of the HTTP side shares."""

from __future__ import annotations


def text_response(request, code: int, message: str) -> bytes:
    """Set ``code`` and a plain-text content type on ``request``; the body to write or return."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode()
