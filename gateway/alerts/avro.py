"""Schemaless Avro records of one writer schema, read fast: cavro reads, fastavro judges what cavro refuses.

Decoding is most of what an alert costs (a Rubin alert with 30 prvDiaSources is ~3,300 fields). cavro (MIT,
Cython) makes the same dicts, lists, bytes and str as fastavro, ~5x faster on such an alert
(``scripts/bench/decode.py``). fastavro stays the reference: a record cavro cannot read is read again by fastavro,
whose result or exception stands, so bad data gets the same verdict and the same words
(:func:`gateway.alerts.decode.reason_of`) whichever library read it first; a schema cavro refuses is read by
fastavro alone. ``tests/alerts/test_avro.py`` checks the two agree on every sample alert and on damaged ones.
"""

from __future__ import annotations

import io
from typing import Any, Optional

import cavro
import fastavro

#: cavro's defaults, but accepting the schemas fastavro accepts (ZTF gives unions starting with "float" a null
#: default) and keeping invalid UTF-8 an error (cavro's permissive preset replaces it)
_OPTIONS = cavro.Options(record_decodes_to_dict=True, allow_union_default_any_member=True,
                         allow_invalid_default_values=True, unicode_errors="strict")
#: one byte, read after a record to learn whether anything follows it (cavro's reader does not say where it is)
_ONE_BYTE = cavro.Schema({"type": "fixed", "name": "one_byte", "size": 1})


class RecordReader:
    """Records written with one schema (``definition``: plain JSON form; ``parsed``: fastavro's parse of it)."""

    def __init__(self, definition: Any, parsed: dict):
        self.parsed = parsed
        try:
            self._fast = cavro.Schema(definition, options=_OPTIONS)
        except Exception:  # a schema cavro does not take (fastavro did): fastavro reads it alone
            self._fast = None

    def read(self, data: bytes, offset: int = 0) -> tuple[Any, int]:
        """The record starting at ``offset`` and how many bytes follow it; raises fastavro's error for bad data."""
        if self._fast is not None:
            reader = cavro.MemoryReader(memoryview(data)[offset:])
            try:
                record = self._fast.binary_read(reader)
                if _at_end(reader):
                    return record, 0
            except Exception:
                pass  # fastavro's verdict, below
        stream = io.BytesIO(data)
        stream.seek(offset)
        record = fastavro.schemaless_reader(stream, self.parsed, None)
        return record, len(data) - stream.tell()

    def read_block(self, data: bytes, count: int) -> tuple[list, Optional[Exception]]:
        """The ``count`` records of one container block and None, or the records before the damage and
        fastavro's error for the first record it cannot read."""
        if self._fast is not None:
            reader = cavro.MemoryReader(data)
            try:
                records = [self._fast.binary_read(reader) for _ in range(count)]
                return records, None
            except Exception:
                pass  # read the block again with fastavro, which says where and why
        stream = io.BytesIO(data)
        records = []
        for _ in range(count):
            try:
                records.append(fastavro.schemaless_reader(stream, self.parsed, None))
            except Exception as error:  # fastavro raises assorted types for damaged data
                return records, error
        return records, None


def _at_end(reader) -> bool:
    try:
        _ONE_BYTE.binary_read(reader)
    except EOFError:
        return True
    return False
