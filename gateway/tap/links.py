"""The DataLink service descriptor a TAP result with alert ids carries (the {links} service is
:mod:`gateway.tap.datalink`)."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

LINKS_STANDARD = "ivo://ivoa.net/std/DataLink#links-1.1"


def service_descriptor(links_url: str, id_columns: list[int]) -> str:
    """The VOTable RESOURCE describing the {links} service for the first alert-id column (index in the FIELDs)."""
    if not id_columns:
        return ""
    return ('<RESOURCE type="meta" utype="adhoc:service" name="alert_links">\n'
            '<DESCRIPTION>DataLink: the cutouts, VOEvent and light curve of each alert</DESCRIPTION>\n'
            f'<PARAM name="standardID" datatype="char" arraysize="*" value="{LINKS_STANDARD}"/>\n'
            f'<PARAM name="accessURL" datatype="char" arraysize="*" value={quoteattr(links_url)}/>\n'
            '<GROUP name="inputParams">'
            f'<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id" ref="col{id_columns[0]}" value=""/>'
            '</GROUP>\n</RESOURCE>\n')
