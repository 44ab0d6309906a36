"""Result writers: VOTable BINARY2/TABLEDATA read back by astropy and checked by votlint, CSV/TSV/JSON, flat memory."""

import csv
import datetime
import decimal
import io
import json
import math
import re
import shutil
import subprocess
import tracemalloc

import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from support import skip_or_fail

from gateway.tap.catalog import ColumnMeta
from gateway.tap.votable import (
    CSVWriter,
    JSONWriter,
    TSVWriter,
    UnknownFormat,
    bench_rows,
    error_document,
    resolve_types,
    write_votable,
    writer_for,
)

COLUMNS = [ColumnMeta("id", "long", ucd="meta.id"), ColumnMeta("n", "int"), ColumnMeta("s", "short"),
           ColumnMeta("x", "double", unit="deg"), ColumnMeta("f", "float"), ColumnMeta("name", "char", "*"),
           ColumnMeta("when", "char", "*", "timestamp"), ColumnMeta("inferred", None),
           ColumnMeta("blob", "unsignedByte", "*")]


def make_rows(count=1000):
    out = []
    for i in range(count):
        out.append((
            i,
            None if i % 5 == 1 else i * 1000,
            None if i % 7 == 2 else i % 300 - 150,
            None if i % 4 == 3 else i * 0.25,
            None if i % 6 == 4 else i / 8,
            None if i % 3 == 0 else ("" if i % 3 == 1 else f"név-{i} <&>"),
            datetime.datetime(2026, 11, 30, 12, 0, i % 60, 123000),
            None if i % 9 == 5 else decimal.Decimal(i) / 4,  # typed from the first batch's values
            None if i % 2 else bytes([i % 256, 7]),
        ))
    return out


def read(content: bytes):
    return parse_single_table(io.BytesIO(content)).to_table(use_names_over_ids=True)


@pytest.mark.parametrize("tabledata", [False, True])
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_votable_round_trip(tabledata, batch):
    data = make_rows(1000)
    out = io.BytesIO()
    n = write_votable(COLUMNS, (data[i:i + batch] for i in range(0, len(data), batch)), out, tabledata=tabledata)
    assert n == len(data)
    table = read(out.getvalue())
    assert (b"<TABLEDATA>" in out.getvalue()) == tabledata
    assert list(table["id"]) == list(range(1000))
    for i, row in enumerate(data):
        for name, value in zip(("n", "s", "x", "f"), row[1:5]):
            if value is None:
                assert table[name].mask[i], (name, i)
            else:
                assert not np.ma.is_masked(table[name][i]) and table[name][i] == pytest.approx(value), (name, i)
        if row[5]:  # non-ASCII in the first batch: the column is unicodeChar, the text arrives exactly; else
            # (batches of 1 row: the first is NULL) it is char, and BINARY2 carries '?' for non-ASCII
            exact = tabledata or batch > 2
            assert table["name"][i] == (row[5] if exact else row[5].encode("ascii", "replace").decode())
        else:
            assert table["name"][i] in ("", None) or table["name"].mask[i]
        assert table["when"][i] == row[6].isoformat()
        if row[7] is None:
            assert table["inferred"].mask[i]
        else:
            assert table["inferred"][i] == float(row[7])
    assert table["x"].unit == "deg"
    assert table.meta == {}  # the TABLE has no name, ID or INFO of its own: QUERY_STATUS sits on the RESOURCE
    field = parse_single_table(io.BytesIO(out.getvalue())).get_field_by_id_or_name("when")
    assert field.xtype == "timestamp" and field.datatype == "char" and field.arraysize == "*"
    assert parse_single_table(io.BytesIO(out.getvalue())).get_field_by_id_or_name("inferred").datatype == "double"


def test_overflow_and_error_infos():
    out = io.BytesIO()
    write_votable(COLUMNS[:2], [[(1, 2)]], out, overflow=True)
    text = out.getvalue().decode()
    assert text.index('value="OK"') < text.index("</TABLE>") < text.index('value="OVERFLOW"')
    doc = error_document("unknown table 'x' <here> & there")
    assert re.search(rb'<INFO name="QUERY_STATUS" value="ERROR">unknown table \'x\' &lt;here&gt; &amp; there</INFO>',
                     doc)
    from astropy.io.votable import parse
    infos = {i.name: i for i in parse(io.BytesIO(doc)).resources[0].infos}
    assert infos["QUERY_STATUS"].value == "ERROR"


def test_votlint_finds_no_errors(tmp_path):
    stilts = shutil.which("stilts")
    if stilts is None:
        skip_or_fail("stilts is not installed (apt-get install stilts)")
    for tabledata in (False, True):
        path = tmp_path / f"t{tabledata}.vot"
        with open(path, "wb") as f:
            write_votable(COLUMNS, [make_rows(50)], f, tabledata=tabledata, overflow=True)
        run = subprocess.run([stilts, "votlint", f"location={path}"], capture_output=True, text=True, timeout=60)
        problems = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line]
        assert not problems, problems


def test_csv_tsv_json():
    data = [row[:6] for row in make_rows(20)]
    columns = resolve_types(COLUMNS[:6], data)
    for writer, sep in ((CSVWriter(), ","), (TSVWriter(), "\t")):
        text = (writer.header(columns) + writer.rows(data[:9]) + writer.rows(data[9:]) + writer.footer()).decode()
        parsed = list(csv.reader(io.StringIO(text), delimiter=sep))
        assert parsed[0] == [c.name for c in columns] and len(parsed) == 21
        assert parsed[3] == ["2", "2000", "", "0.5", "0.25", "név-2 <&>"]
        assert parsed[2][5] == "" and parsed[4][5] == ""  # NULL and the empty string alike
    writer = JSONWriter()
    doc = json.loads(writer.header(columns) + writer.rows(data[:3]) + writer.rows([]) + writer.rows(data[3:])
                     + writer.footer(True))
    assert doc["overflow"] is True and len(doc["data"]) == 20
    assert doc["data"][1] == [1, None, 1 - 150, 0.25, 0.125, ""]
    assert doc["data"][0][5] is None and doc["data"][2][5] == "név-2 <&>"
    assert doc["metadata"][3] == {"name": "x", "datatype": "double", "unit": "deg"}


def test_unknown_format_names_the_choices():
    with pytest.raises(UnknownFormat, match="csv.*votable"):
        writer_for("fits")
    assert writer_for(None).content_type == "application/x-votable+xml"
    assert writer_for("application/x-votable+xml;serialization=TABLEDATA").serialization == "TABLEDATA"


def test_streaming_memory_stays_flat():
    """Memory while streaming is about one batch, however many rows go through."""
    columns, template = bench_rows(1000)

    class Counter(io.RawIOBase):
        size = 0

        def write(self, b):
            self.size += len(b)
            return len(b)

    def batches(n_batches):
        for _ in range(n_batches):
            yield list(template)

    peaks = []
    for n_batches in (3, 60):
        sink = Counter()
        tracemalloc.start()
        write_votable(columns, batches(n_batches), sink)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert sink.size > 10e6  # 60 k rows went through
    assert peaks[1] < peaks[0] * 1.5 + 0.5e6, peaks  # twenty times the rows, about the same peak
    assert peaks[1] < sink.size / 5
    assert not math.isnan(peaks[0])


# -- coordinate and time systems (VOTable 1.4 COOSYS, TIMESYS) ----------------------------------------------------

STANDARDS = __import__("pathlib").Path(__file__).parent / "standards"


def votable_schema():
    from lxml import etree
    return etree.XMLSchema(etree.parse(str(STANDARDS / "VOTable-1.4.xsd")))


def assert_valid(document: bytes):
    from lxml import etree
    schema = votable_schema()
    assert schema.validate(etree.fromstring(document)), schema.error_log


@pytest.mark.parametrize("tabledata", [False, True])
def test_positions_and_times_refer_to_their_systems(tabledata):
    """ra/dec refer to a COOSYS ICRS, every MJD column to a TIMESYS TAI with the MJD origin, timestamps to UTC."""
    from astropy.io.votable import parse

    from gateway.tap.catalog import Catalog

    columns, data = bench_rows(20)
    received = [c for c in Catalog.default().get("gateway", "alert").columns if c.name in ("mjd", "received")]
    columns = columns + received
    data = [row + (60000.5, datetime.datetime(2026, 12, 4, 1, 2, 3)) for row in data]
    out = io.BytesIO()
    write_votable(columns, [data], out, tabledata=tabledata)
    assert_valid(out.getvalue())
    document = parse(io.BytesIO(out.getvalue()))
    resource = document.resources[0]
    systems = {s.ID: s for s in resource.time_systems}
    coosys = {s.ID: s for s in resource.coordinate_systems}
    fields = {f.name: f for f in resource.tables[0].fields}
    assert coosys[fields["ra"].ref].system == "ICRS" and coosys[fields["dec"].ref].system == "ICRS"
    mjd = systems[fields["mjd"].ref]
    assert (mjd.timescale, mjd.timeorigin, mjd.refposition) == ("TAI", "MJD-origin", "TOPOCENTER")
    assert systems[fields["received"].ref].timescale == "UTC" and systems[fields["received"].ref].timeorigin is None
    assert fields["ra_err"].ref is None and fields["diasourceid"].ref is None


def test_error_document_is_valid():
    assert_valid(error_document("nothing here"))


@pytest.mark.parametrize("tabledata", [False, True])
def test_unicode_text_is_unicodechar(tabledata):
    """Non-ASCII text is declared unicodeChar (VOTable 1.4 char is ASCII) and arrives exactly, in both
    serializations; a column declared unicodeChar by the catalog stays so for ASCII text too."""
    from astropy.io.votable import parse

    columns = [ColumnMeta("plain", "char", "*"), ColumnMeta("name", "char", "*"), ColumnMeta("computed", None),
               ColumnMeta("xml", "unicodeChar", "*")]
    data = [("abc", "Ångström øre", "日本語 – ok", "<a/>"), ("x", None, "plain", None),
            ("y", "z", "emoji \U0001F600 here", "é")]
    out = io.BytesIO()
    write_votable(columns, [data[:2], data[2:]], out, tabledata=tabledata)
    assert_valid(out.getvalue())
    fields = {f.name: f for f in parse(io.BytesIO(out.getvalue())).resources[0].tables[0].fields}
    assert [fields[n].datatype for n in ("plain", "name", "computed", "xml")] == ["char"] + ["unicodeChar"] * 3
    table = read(out.getvalue())
    assert list(table["plain"]) == ["abc", "x", "y"]
    assert table["name"][0] == "Ångström øre" and table["computed"][1] == "plain" and table["xml"][2] == "é"
    # UCS-2 has no room for characters beyond the BMP: BINARY2 carries U+FFFD; TABLEDATA (XML) the character
    assert table["computed"][2] == ("emoji \U0001F600 here" if tabledata else "emoji \ufffd here")


def test_late_non_ascii_in_a_char_column_is_replaced():
    """A char column whose first batch was ASCII cannot change its declaration: later non-ASCII becomes '?' in
    BINARY2 (the header is out; a catalog column that may hold Unicode is declared unicodeChar up front)."""
    out = io.BytesIO()
    write_votable([ColumnMeta("s", "char", "*")], [[("ascii",)], [("név",)]], out)
    assert list(read(out.getvalue())["s"]) == ["ascii", "n?v"]


def test_catalog_declares_free_text_columns_unicodechar():
    from gateway.tap.catalog import Catalog

    voevent = Catalog.default().get("gateway", "voevent")
    assert voevent.column("xml").datatype == "unicodeChar" and voevent.column("author").datatype == "unicodeChar"
    assert Catalog.default().get("gateway", "diasource").column("band").datatype == "char"
