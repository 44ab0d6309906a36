"""TAP_UPLOAD refuses a VOTable that declares a DTD, as the VTP side refuses one: no entity is ever expanded."""

import pytest

from gateway.tap.errors import QueryError
from gateway.tap.uploads import parse_upload
from gateway.tap.settings import TapSettings

VOTABLE = """<?xml version="1.0" encoding="UTF-8"?>{doctype}
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="ra" datatype="double"/><FIELD name="note" datatype="char" arraysize="*"/>
<DATA><TABLEDATA><TR><TD>10.0</TD><TD>{text}</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"""
LAUGHS = ('<!DOCTYPE VOTABLE [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
          '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')


def test_a_plain_upload_is_read():
    columns, rows = parse_upload("mine", VOTABLE.format(doctype="", text="hello").encode(), TapSettings())
    assert [c.name for c in columns] == ["ra", "note"] and rows == [(10.0, "hello")]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_doctype_with_entities_is_refused_in_one_sentence(encoding):
    document = VOTABLE.format(doctype=LAUGHS, text="&c;").replace('encoding="UTF-8"', f'encoding="{encoding.upper()}"')
    with pytest.raises(QueryError) as refused:
        parse_upload("laughs", document.encode(encoding), TapSettings())
    assert "has a DOCTYPE: refused" in str(refused.value)
