"""Reading TAP requests (parameters from the query string and form or multipart bodies, UPLOAD) and answering
them (VOTable error documents, XML documents, redirects); the base resource every TAP resource derives from.

Request bodies are parsed here with the ``multipart`` package, because Twisted's own multipart parsing rejects the
boundary STILTS uses (``<<<---...--->>>``) with a 400 before any resource runs: mount the tree in a Site made with
``parsePOSTFormSubmission=False``.
"""

from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import parse_qs

import multipart
from twisted.logger import Logger
from twisted.web import resource as web_resource

from gateway import __version__
from gateway.tap.query import QueryError
from gateway.tap.votable import error_document
from twisted import version as twisted_version

log = Logger()

#: largest request body or multipart part read (bytes)
MAX_BODY = 64 * 1024 * 1024
#: the software identification TAP validators look for (IVOA SoftID note)
SERVER = f"vogateway/{__version__} IVOA-TAP/1.1 TwistedWeb/{twisted_version.short()}".encode()


def read_params(request) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    """(parameters by lower-case name, multipart file parts by name) from the query string and the body."""
    params: dict[str, list[str]] = {}
    parts: dict[str, bytes] = {}

    def add(name, value):
        params.setdefault(name.lower(), []).append(value)

    def add_query(text):
        for name, values in parse_qs(text, keep_blank_values=True).items():
            for v in values:
                add(name, v)

    uri = request.uri.decode("latin-1")
    if "?" in uri:
        add_query(uri.split("?", 1)[1])
    if request.method in (b"POST", b"PUT") and request.content is not None:
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        kind, options = multipart.parse_options_header(ctype)
        request.content.seek(0)
        if kind == "multipart/form-data":
            boundary = options.get("boundary")
            if not boundary:
                raise QueryError("multipart/form-data body without a boundary")
            try:
                for part in multipart.MultipartParser(request.content, boundary, memory_limit=MAX_BODY,
                                                      partsize_limit=MAX_BODY, part_limit=1000):
                    if part.filename is not None or (part.content_type or "").startswith(
                            ("application/x-votable", "text/xml", "application/xml")):
                        parts[part.name] = part.raw
                        parts[part.name.lower()] = part.raw
                    else:
                        add(part.name, part.value)
            except multipart.MultipartError as e:
                raise QueryError(f"cannot read the multipart/form-data body: {e}") from None
        elif kind == "application/x-www-form-urlencoded" or (kind == "" and request.content.getvalue()):
            add_query(request.content.read().decode("utf-8", "replace"))
        request.content.seek(0)
    return params, parts


def first(params: dict[str, list[str]], name: str) -> Optional[str]:
    values = params.get(name)
    return values[0] if values else None


def single(params: dict[str, list[str]]) -> dict[str, str]:
    """The first value of each parameter."""
    return {name: values[0] for name, values in params.items() if values}


def resolve_uploads(value: Optional[str], parts: dict[str, bytes]) -> dict[str, bytes | str]:
    """UPLOAD=name,param:part[;name2,http://...] -> {name: VOTable bytes, or the URL to fetch it from}."""
    uploads = {}
    if not value:
        return uploads
    for item in value.split(";"):
        if not item.strip():
            continue
        if "," not in item:
            raise QueryError(f"UPLOAD {item!r}: expected table_name,param:part_name")
        name, uri = (s.strip() for s in item.split(",", 1))
        if uri.startswith(("http://", "https://")):
            uploads[name] = uri  # fetched by the query's worker thread
            continue
        if not uri.startswith("param:"):
            raise QueryError(f"UPLOAD {name}: use param:PART (the table in a multipart part) or an http(s) URL, "
                             f"not {uri!r}")
        part = uri[len("param:"):]
        data = parts.get(part, parts.get(part.lower()))
        if data is None:
            raise QueryError(f"UPLOAD {name}: the request has no multipart part named {part!r}")
        uploads[name] = data
    return uploads


def send_error(request, message: str, status: int = 400, retry_after: Optional[int] = None) -> bytes:
    request.setResponseCode(status)
    if retry_after is not None:
        request.setHeader(b"retry-after", str(retry_after).encode())
    request.setHeader(b"content-type", b"application/x-votable+xml")
    return error_document(message)


def send_xml(request, body: bytes, content_type: bytes = b"text/xml") -> bytes:
    request.setHeader(b"content-type", content_type)
    return body


def redirect(request, url: str) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"location", url.encode("utf-8"))
    request.setHeader(b"content-type", b"text/plain")
    return f"See {url}\n".encode("utf-8")


class TapResource(web_resource.Resource):
    """A resource whose errors and unsupported methods are VOTable error documents, never HTML."""

    def render(self, request):
        request.setHeader(b"server", SERVER)
        try:
            return super().render(request)
        except web_resource.UnsupportedMethod:
            return send_error(request, f"{request.method.decode()} is not supported on {request.path.decode()}",
                              405)
        except QueryError as e:
            return send_error(request, e.message, e.status, e.retry_after)
        except Exception as e:  # noqa: BLE001 - a TAP client gets a VOTable, never Twisted's HTML traceback
            log.failure("TAP request {path} failed", path=request.path)
            return send_error(request, f"internal error: {type(e).__name__}: {e}", 500)

    def getChild(self, path, request):
        return ErrorResource(f"no such resource: {request.path.decode('utf-8', 'replace')}", 404)


class ErrorResource(TapResource):
    """Answers every request with one error document."""

    isLeaf = True

    def __init__(self, message: str, status: int):
        super().__init__()
        self.message, self.status = message, status

    def render(self, request):
        return send_error(request, self.message, self.status)


class DocumentResource(TapResource):
    """Answers GET with the document ``make(request)`` returns (VOSI documents, DALI examples)."""

    isLeaf = True

    def __init__(self, make: Callable[[object], bytes], content_type: bytes = b"text/xml"):
        super().__init__()
        self.make, self.content_type = make, content_type

    def render_GET(self, request):
        return send_xml(request, self.make(request), self.content_type)
