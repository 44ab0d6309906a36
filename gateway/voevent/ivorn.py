"""IVORNs: reading every form the standards allow, and the names of the gateway's own event streams.

VOEvent 2.0 (section 2.2) writes event identifiers ``ivo://authorityID/resourceKey#local_ID`` and shows forms
without a resource key (``ivo://uraniborg.hven#1572-11-11/0001``); IVOA Identifiers 2.0 (section 4.1, taken up by
VOEvent 2.1 section 2.2) puts the local part in the query instead: ``ivo://example.org/catot?100407``. So an event
IVORN here is ``ivo://`` + authority + an optional resource key + a non-empty ``?query`` and/or ``#fragment``:

- authority: at least three characters, the first alphanumeric, then alphanumerics and ``-_.~`` (Identifiers 2.0),
  and ``!*'()`` as Identifiers 1.x allowed, so that older identifiers stay readable;
- resource key: ``/``-separated segments, none empty, without whitespace, ``?`` or ``#``;
- the local id: the fragment when there is one, else the query. No whitespace anywhere.

The gateway writes ``ivo://<authority>/<stream>/<survey>#<local id>`` (:func:`event_stream`): one stream per survey
below the configured base (``gateway.stream``), so a Rubin and a ZTF alert with the same number cannot share an
IVORN; the author is the base, ``ivo://<authority>/<stream>``. IVORNs of earlier versions
(``ivo://<authority>/<stream>#<alert id>``) are still IVORNs of this form, and read as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_AUTHORITY = r"[A-Za-z0-9][A-Za-z0-9\-_.~!*'()]{2,}"
_SEGMENT = r"[^\s?#/]+"
_IVOID = re.compile(rf"ivo://(?P<authority>{_AUTHORITY})(?P<key>(?:/{_SEGMENT})*)"
                    r"(?:\?(?P<query>[^\s#]*))?(?:#(?P<fragment>\S*))?\Z")

#: the forms accepted, for messages
FORMS = "ivo://authority/path#localID (the /path may be left out; ?localID for #localID is allowed too)"


@dataclass(frozen=True)
class Ivorn:
    """The parts of an IVORN: ``authority``, ``key`` (the resource key, "" or "/a/b"), ``query``, ``fragment``
    (None when absent)."""

    authority: str
    key: str
    query: Optional[str]
    fragment: Optional[str]

    @property
    def stream(self) -> str:
        """The identifier without its local part: the event stream (VOEvent 2.0 section 2.2)."""
        return f"ivo://{self.authority}{self.key}"

    @property
    def local_id(self) -> str:
        """The local id in the stream: the fragment if there is one, else the query ("" when neither)."""
        return self.fragment or self.query or ""


def parse_ivorn(text: str) -> Optional[Ivorn]:
    """The parts of ``text`` if it is an IVOA identifier (with or without a local part), else None."""
    match = _IVOID.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return Ivorn(match["authority"], match["key"], match["query"], match["fragment"])


def is_event_ivorn(text: str) -> bool:
    """True when ``text`` identifies one event: an IVOA identifier with a non-empty local id."""
    ivorn = parse_ivorn(text)
    return ivorn is not None and bool(ivorn.local_id)


def author_ivorn(authority: str, stream: str) -> str:
    """``ivo://<authority>/<stream>``: the gateway's author IVORN and the base of its event streams."""
    return f"ivo://{authority}/{stream.strip('/')}"


def event_stream(authority: str, stream: str, survey: str) -> str:
    """``ivo://<authority>/<stream>/<survey>``: the stream of the events built from one survey's alerts."""
    return f"{author_ivorn(authority, stream)}/{survey}"
