"""Citations of a VOEvent built here: which earlier events it cites, and how (VOEvent 2.0 section 3.7).

- ``supersedes``: an earlier issue of the *same detection* (a re-issued alert: same source id, new alert id; a
  reprocessed Rubin diaSource: same diaSourceId, new processing time). The standard's case: "A prior VOEvent may be
  superseded, for example, if reprocessing of the original observation has resulted in different values"; "it is
  assumed that all of the previous information is superseded", which holds: every packet is complete.
- ``followup``: the latest earlier event on the same *object* (a new detection of it), unless that is the one
  superseded. "if a later observation has simply resulted in different measurements to report, this would
  typically be issued as a followup".

Each Citations block carries a Description saying why, as the standard asks for splitting, merging, retracting.
"""

from __future__ import annotations

from typing import Optional
from xml.sax.saxutils import escape

from gateway.voevent.history import History, MemoryHistory
from gateway.voevent.ivorn import parse_ivorn

#: a Citations block at most (two IVORNs, an object key, a source key and the words): kept free in every packet
CITATION_ROOM = 1_500
#: the marker of a token issue id (``fields.issue_id``: ``<source id>-p<processing MJD>``)
_TOKEN = "-p"


class Citer:
    """Decides, in arrival order, what each new event cites; remembers the latest issue per object and per
    detection. ``history`` is the object history (kept across restarts by the store); issues of detections and
    recently issued IVORNs are remembered in memory, as many as the history keeps objects (``max_objects``, else
    ``max_sources``), so a replay cites nothing and changes nothing."""

    def __init__(self, history: History, max_sources: int = 200_000):
        self.history = history
        max_sources = getattr(history, "max_objects", max_sources)
        self.sources = MemoryHistory(max_sources)  # "<survey>:<source id>" -> latest IVORN issued for it
        self.issued = MemoryHistory(max_sources)  # IVORN -> "" : the events issued lately

    def citations(self, ivorn: str, object_key: str, source_key: Optional[str]) -> list[tuple[str, str]]:
        """[(cite, IVORN)] for the event ``ivorn`` on ``object_key`` (from detection ``source_key``), recording it."""
        if self.issued.previous(ivorn) is not None:  # seen lately: a replay (dropped later by the IVORN dedup)
            return []
        self.issued.remember(ivorn, "")
        earlier = self.sources.previous(source_key) if source_key else None
        if source_key:
            self.sources.remember(source_key, ivorn)
        latest = self.history.previous(object_key)
        self.history.remember(object_key, ivorn)
        if earlier is None and latest is not None and same_detection(latest, ivorn):
            earlier = latest  # known from the object history only (e.g. after a restart)
        out = []
        if earlier is not None and earlier != ivorn:
            out.append(("supersedes", earlier))
        if latest is not None and latest not in (ivorn, earlier):
            out.append(("followup", latest))
        return out


def same_detection(a: str, b: str) -> bool:
    """True when IVORNs ``a`` and ``b`` are two issues of one detection in one stream, as their token issue ids
    (``<source id>-p<processing time>``) show."""
    first, second = parse_ivorn(a), parse_ivorn(b)
    if first is None or second is None or first.stream != second.stream:
        return False
    x, y = first.local_id, second.local_id
    return _TOKEN in x and _TOKEN in y and x.partition(_TOKEN)[0] == y.partition(_TOKEN)[0] and x != y


def cite(xml: bytes, citations: list[tuple[str, str]], object_key: str, source_key: Optional[str] = None) -> bytes:
    """A VOEvent built here with a Citations block before its closing Description, as VOEvent 2.0 orders them (the
    root's Description is its last child), indented as the rest of the packet."""
    if not citations:
        return xml
    lines = [f'    <EventIVORN cite="{how}">{escape(ivorn)}</EventIVORN>' for how, ivorn in citations]
    why = []
    for how, ivorn in citations:
        if how == "supersedes":
            why.append(f"Supersedes {ivorn}: the same detection ({source_key}) issued again (re-issued or "
                       f"reprocessed); this packet repeats all of its information")
        else:
            why.append(f"New detection of {object_key}, earlier announced in {ivorn}")
    block = ("<Citations>\n" + "\n".join(lines) + f"\n    <Description>{escape('. '.join(why))}</Description>\n"
             "  </Citations>\n  ")
    at = xml.rindex(b"<Description>")
    return xml[:at] + block.encode() + xml[at:]
