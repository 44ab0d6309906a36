"""What every page of the HTTP side shares."""

from __future__ import annotations


def text_response(request, code: int, message: str) -> bytes:
    """Set ``code`` and a plain-text content type on ``request``; the body to write or return."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode()


class Reply:
    """An answer written later (after a DB read or a thread), and only if the client is still there: writing to a
    request whose connection was lost is an error in Twisted."""

    def __init__(self, request):
        self.request, self.gone = request, False
        request.notifyFinish().addErrback(self._lost)

    def _lost(self, _failure) -> None:
        self.gone = True

    def send(self, body: bytes) -> None:
        if not self.gone:
            self.request.write(body)
            self.request.finish()
