"""VOEvent 2.0 validation against the official XSD shipped in ``xml/`` (offline, no network).

``validate(xml)`` returns a list of problems, each naming the line and what is wrong; an empty list means
valid. Besides the XSD it checks what the XSD cannot: the document is parsed safely (no DTD, no entities,
a size limit) and the IVORN names one event (:mod:`gateway.voevent.ivorn`).

Thread safety: the VTP receiver calls this through ``deferToThread``. An lxml ``XMLSchema`` keeps its error
log on the object, so each thread gets its own schema, built lazily from the schema document parsed once.
"""

from __future__ import annotations

import threading

from lxml import etree

from gateway.resources import resource
from gateway.voevent.ivorn import FORMS, is_event_ivorn
from gateway.voevent.parse import VOEVENT_NAMESPACES, VOEventError, safe_fromstring

#: The official IVOA VOEvent 2.0 schema (see xml/README.rst)
SCHEMA_FILE = "VOEvent-v2.0.xsd"
#: Largest document ``validate`` looks at (a VOEvent is normally a few kB; VTP caps frames at 99,999 bytes)
MAX_BYTES = 10_000_000

_lock = threading.Lock()
_schema_doc = None
_local = threading.local()


def _schema() -> etree.XMLSchema:
    global _schema_doc
    schema = getattr(_local, "schema", None)
    if schema is None:
        with _lock:
            if _schema_doc is None:
                parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
                _schema_doc = etree.parse(str(resource("xml", SCHEMA_FILE)), parser)
            schema = _local.schema = etree.XMLSchema(_schema_doc)
    return schema


def validate(xml: bytes, max_bytes: int = MAX_BYTES) -> list[str]:
    """Problems with ``xml`` as a VOEvent 2.0 document ("line N: what"), or ``[]`` if it is valid."""
    try:
        root = safe_fromstring(xml, max_bytes)
    except VOEventError as error:
        return [f"line {error.line or 1}: {error.reason}"]
    return validate_tree(root)


def validate_tree(root) -> list[str]:
    """:func:`validate` for a document already parsed (safely), so a receiver does not parse it twice."""
    schema = _schema()
    problems = []
    if root.tag != f"{{{VOEVENT_NAMESPACES[0]}}}VOEvent":
        problems.append(f"line {root.sourceline}: root element is {root.tag!r}, expected a VOEvent 2.0 root "
                        f"({{{VOEVENT_NAMESPACES[0]}}}VOEvent)")
        return problems
    if not schema.validate(root.getroottree()):
        problems.extend(f"line {e.line}: {e.message}" for e in schema.error_log)
    ivorn = root.get("ivorn")
    if ivorn is not None and not is_event_ivorn(ivorn):
        problems.append(f"line {root.sourceline}: ivorn {ivorn!r} is not of the form {FORMS}")
    return problems


def is_valid(xml: bytes) -> bool:
    """True when :func:`validate` finds nothing wrong."""
    return not validate(xml)
