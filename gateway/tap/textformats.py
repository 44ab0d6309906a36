"""Result writers for text formats: CSV, TSV, JSON, written batch by batch like the VOTable writers
(``header(columns)``, ``rows(batch)`` per batch, ``footer(overflow, error)``)."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
from typing import Optional

from gateway.tap.catalog import ColumnMeta


def as_text(value) -> str:
    """A non-numeric value as text (timestamps ISO 8601 without a zone, as DALI wants)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return " ".join(str(b) for b in bytes(value))
    return str(value)


def as_numbers(values: tuple) -> str:
    return " ".join(repr(float(v)) for v in values)



class CSVWriter:
    content_type = "text/csv; charset=utf-8"
    delimiter = ","

    def header(self, columns: list[ColumnMeta]) -> bytes:
        self.columns = columns
        return self._lines([[c.name for c in columns]])

    def _lines(self, rows) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\r\n" if self.delimiter == "," else "\n")
        writer.writerows(rows)
        return out.getvalue().encode("utf-8")

    def rows(self, batch: list[tuple]) -> bytes:
        return self._lines([["" if v is None else repr(v) if isinstance(v, float) else as_numbers(v)
                             if isinstance(v, tuple) else as_text(v) for v in row] for row in batch])

    def footer(self, overflow: bool = False, error: Optional[str] = None) -> bytes:
        return b""


class TSVWriter(CSVWriter):
    content_type = "text/tab-separated-values; charset=utf-8"
    delimiter = "\t"


class JSONWriter:
    """``{"metadata": [...], "data": [[...], ...], "overflow": bool}``; NaN becomes null."""
    content_type = "application/json"

    def header(self, columns: list[ColumnMeta]) -> bytes:
        self.columns = columns
        self._first = True
        meta = [{k: v for k, v in (("name", c.name), ("datatype", c.datatype), ("arraysize", c.arraysize),
                                   ("xtype", c.xtype), ("unit", c.unit), ("ucd", c.ucd),
                                   ("description", c.description)) if v is not None} for c in columns]
        return ('{"metadata": ' + json.dumps(meta) + ', "data": [\n').encode("utf-8")

    def rows(self, batch: list[tuple]) -> bytes:
        text = ",\n".join(json.dumps([_json(v) for v in row]) for row in batch)
        if not text:
            return b""
        if not self._first:
            text = ",\n" + text
        self._first = False
        return text.encode("utf-8")

    def footer(self, overflow: bool = False, error: Optional[str] = None) -> bytes:
        tail = {"overflow": overflow}
        if error is not None:
            tail["error"] = error
        return ("\n], " + json.dumps(tail)[1:] + "\n").encode("utf-8")


def _json(v):
    if v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, tuple):
        return [_json(p) for p in v]
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, decimal.Decimal):
        return float(v)
    return as_text(v)
