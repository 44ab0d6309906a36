"""TAP_UPLOAD tables: VOTables given inline or by URL (TAP upload-http), read into (columns, rows).

An upload by URL makes this server fetch from wherever a client says, so it is off unless ``http_uploads`` is on,
and even then a URL whose host resolves to a loopback, private, link-local or otherwise non-public address is
refused (the server must not become a client's way into the networks it sits in) unless the host or address is
listed in ``upload_allow_hosts``. The name is resolved once, every address it resolves to is checked, and the
connection goes to the checked address (a second lookup could answer differently); redirects are not followed.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import math
import re
import socket
import ssl
from urllib.parse import urlsplit

from gateway.tap.catalog import ColumnMeta
from gateway.tap.errors import QueryError
from gateway.tap.settings import TapSettings

UPLOAD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: seconds an UPLOAD given by URL may take to connect and for each read
UPLOAD_FETCH_TIMEOUT = 30.0


def _declares_a_dtd(data: bytes) -> bool:
    """Whether an uploaded document declares a DTD (internal entities expand: billion laughs), in UTF-8 or UTF-16."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data.decode("utf-16", "replace").encode("utf-8")
    return b"<!DOCTYPE" in data or b"<!ENTITY" in data


def parse_upload(name: str, data: bytes, settings: TapSettings) -> tuple[tuple[ColumnMeta, ...], list[tuple]]:
    """A VOTable upload -> (columns, rows). Raises QueryError with what is wrong."""
    from astropy.io.votable import parse_single_table  # astropy is slow to import; only uploads need it

    if not UPLOAD_NAME.match(name):
        raise QueryError(f"upload table name {name!r} is not valid: use letters, digits and _ (starting with a letter)")
    if len(data) > settings.upload_max_bytes:
        raise QueryError(f"upload {name!r} is {len(data)} bytes; the limit is {settings.upload_max_bytes}")
    if _declares_a_dtd(data):
        raise QueryError(f"upload {name!r} has a DOCTYPE: refused (no DTDs or entity declarations are accepted, as on "
                         "the VTP side)")
    try:
        table = parse_single_table(io.BytesIO(data), verify="ignore")
    except Exception as e:  # noqa: BLE001 - astropy raises many kinds for bad VOTables
        raise QueryError(f"upload {name!r} is not a readable VOTable: {e}") from None
    array = table.array
    if len(array) > settings.upload_max_rows:
        raise QueryError(f"upload {name!r} has {len(array)} rows; the limit is {settings.upload_max_rows}")
    columns = []
    seen = set()
    for f in table.fields:
        col_name = (f.name or f.ID or "").lower()
        if not UPLOAD_NAME.match(col_name) or col_name in seen:
            raise QueryError(f"upload {name!r}: column name {f.name!r} is not a valid, unique ADQL name")
        seen.add(col_name)
        kind = array.dtype[f.ID or f.name].kind if (f.ID or f.name) in array.dtype.names else "O"
        if f.datatype in ("char", "unicodeChar"):
            columns.append(ColumnMeta(col_name, "char", "*", f.xtype, f.unit and str(f.unit), f.ucd))
        elif f.arraysize not in (None, "1") or kind not in "fiub":
            raise QueryError(f"upload {name!r}: column {f.name!r} ({f.datatype}[{f.arraysize}]) is an array; "
                             "only scalar numbers and strings can be uploaded")
        else:  # numbers keep their VOTable type; booleans and bytes become short
            datatype = f.datatype if f.datatype in ("short", "int", "long", "float", "double") else (
                "double" if kind == "f" else "short" if f.datatype in ("boolean", "unsignedByte") else "long")
            columns.append(ColumnMeta(col_name, datatype, None, None, f.unit and str(f.unit), f.ucd))
    rows = []
    for record in array.tolist():  # masked values come out as None
        row = []
        for c, v in zip(columns, record):
            if v is None:
                pass
            elif c.datatype == "char":
                v = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            elif c.datatype in ("double", "float"):
                v = float(v)
                v = None if math.isnan(v) else v
            else:
                v = int(v)
            row.append(v)
        rows.append(tuple(row))
    return tuple(columns), rows


# -- by URL ------------------------------------------------------------------------------------------------------

def is_public(address: str) -> bool:
    """Whether ``address`` (IPv4 or IPv6 text) is a public unicast address (not loopback, private, link-local,
    multicast, reserved or unspecified; IPv4-mapped IPv6 judged as its IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, address: str, allow: tuple[str, ...]) -> bool:
    """Whether ``upload_allow_hosts`` lets ``host`` (as written in the URL) or ``address`` through: entries are
    host names (exact, case-insensitive), addresses or networks (``10.0.0.0/8``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    for entry in allow:
        entry = entry.strip()
        if entry.lower() == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name that is not this one
    return False


def checked_address(name: str, host: str, port: int, settings: TapSettings) -> tuple:
    """The socket address to fetch an upload from: ``host`` resolved once, every address it has checked.
    QueryError when it does not resolve or any address is not public and not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise QueryError(f"UPLOAD {name}: the host {host!r} does not resolve ({e.strerror or e})") from None
    if not infos:
        raise QueryError(f"UPLOAD {name}: the host {host!r} does not resolve")
    for *_, sockaddr in infos:
        address = sockaddr[0]
        if not is_public(address) and not _allowed(host, address, settings.upload_allow_hosts):
            raise QueryError(f"UPLOAD {name}: {host} is {address}, a loopback, private or link-local address; "
                             "uploads are fetched only from public addresses unless [tap] upload_allow_hosts "
                             "lists the host")
    return infos[0][0], infos[0][4]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand, whatever the host name resolves to now."""

    def __init__(self, host, port, family, sockaddr, timeout):
        super().__init__(host, port, timeout=timeout)
        self._family, self._sockaddr = family, sockaddr

    def connect(self):
        self.sock = socket.socket(self._family, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._sockaddr)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def connect(self):
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


def fetch_upload(name: str, url: str, settings: TapSettings) -> bytes:
    """An upload given by URL: fetched here (blocking: a worker thread) with a time and size limit, from a
    public address or one ``upload_allow_hosts`` allows. QueryError saying why not."""
    if not settings.http_uploads:
        raise QueryError(f"UPLOAD {name}: uploads by URL are switched off here ([tap] http_uploads); send the table "
                         f"inline (UPLOAD={name},param:PART with a multipart part)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError(f"UPLOAD {name}: {url!r} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise QueryError(f"UPLOAD {name}: {url!r} has an invalid port") from None
    family, sockaddr = checked_address(name, parts.hostname, port, settings)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = kind(parts.hostname, port, family, sockaddr, UPLOAD_FETCH_TIMEOUT)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "vogateway TAP upload"})
        response = conn.getresponse()
        if response.status != 200:
            raise QueryError(f"UPLOAD {name}: {url} answered HTTP {response.status} {response.reason} "
                             "(redirects are not followed)")
        data = response.read(settings.upload_max_bytes + 1)
    except QueryError:
        raise
    except (OSError, http.client.HTTPException) as e:
        raise QueryError(f"UPLOAD {name}: cannot fetch {url}: {e.strerror if getattr(e, 'strerror', None) else e}"
                         ) from None
    finally:
        conn.close()
    if len(data) > settings.upload_max_bytes:
        raise QueryError(f"UPLOAD {name}: {url} is larger than the limit of {settings.upload_max_bytes} bytes")
    return data
