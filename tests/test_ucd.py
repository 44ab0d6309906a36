"""Every UCD the gateway emits is valid UCD1+ by the IVOA's own list (tests/data/ucd, UCDList EN 1.6).

astropy's parser (``astropy.io.votable.ucd.check_ucd``: syntax, and which word may stand first and which only
after a ';') is pointed at the vendored list rather than the copy astropy ships, so the test says what the
standard's file says. The UCDs are collected from what the code really emits: the VOEvents built from every
bundled sample alert (Params and Table Fields), and a running TAP service's TAP_SCHEMA.columns and result FIELDs,
read with pyvo.
"""

from pathlib import Path

import pytest
import pyvo
from astropy.io.votable import ucd as astropy_ucd
from lxml import etree
from tap_helpers import fill, serve

from gateway.alerts.files import iter_inputs
from gateway.resources import SAMPLES
from gateway.store.schema import PUBLIC_TABLES, SCHEMA
from gateway.voevent.build import Converter

UCD_DIR = Path(__file__).parent / "data" / "ucd"


class VendoredWords:
    """The words of ``ucd-list.txt`` in the interface astropy's parser asks its word list for.

    Syntax codes as the list's document defines them: P primary only, S secondary only, Q either; E, C, V
    "behave as Q prefix and can be combined as primary or secondary".
    """

    def __init__(self, path: Path):
        self.primary, self.secondary, self.spelling, self.version = set(), set(), {}, None
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith("#"):
                self.version = self.version or line[1:].strip()
                continue
            if not line.strip():
                continue
            code, word, _ = (part.strip() for part in line.split("|"))
            key = word.lower()
            if code in "PQEVC":
                self.primary.add(key)
            if code in "SQEVC":
                self.secondary.add(key)
            self.spelling[key] = word

    def is_primary(self, word):
        return word.lower() in self.primary

    def is_secondary(self, word):
        return word.lower() in self.secondary

    def normalize_capitalization(self, word):
        return self.spelling[word.lower()]


@pytest.fixture(scope="module")
def vocabulary():
    words = VendoredWords(UCD_DIR / "ucd-list.txt")
    assert words.version.startswith("EN-UCDlist-v1.")  # only EN lists are references, says the list's document
    saved, astropy_ucd._ucd_singleton = astropy_ucd._ucd_singleton, words
    yield words
    astropy_ucd._ucd_singleton = saved


def replacements() -> dict[str, str]:
    """Deprecated word -> its replacement, from ``ucd-list-deprecated.txt`` (deprecated words are not in the list)."""
    pairs = [line.split() for line in (UCD_DIR / "ucd-list-deprecated.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {pair[0].lower(): pair[1] for pair in pairs if len(pair) == 2}


def problems(ucds: dict[str, str]) -> list[str]:
    """``where: ucd (why)`` for every UCD the vendored list refuses."""
    out, old = [], replacements()
    for where, ucd in sorted(ucds.items()):
        try:
            astropy_ucd.parse_ucd(ucd, check_controlled_vocabulary=True)
        except ValueError as error:
            hints = [f"; {w} is deprecated, use {old[w.lower()]}" for w in ucd.split(";") if w.lower() in old]
            out.append(f"{where}: {ucd} ({error}{''.join(hints)})")
    return out


def test_the_checker_refuses_what_the_list_refuses(vocabulary):
    """The check can fail: secondary-only words first, unknown and deprecated words are all caught."""
    assert astropy_ucd.check_ucd("meta.id;instr.filter", check_controlled_vocabulary=True)
    assert astropy_ucd.check_ucd("meta.id;obs.field", check_controlled_vocabulary=True)
    assert problems({"a": "instr.filter", "b": "obs.field", "c": "phot.mag;meta.nosuchword",
                     "d": "em.IR.K.Brgamma"}) == [
        "a: instr.filter (Secondary word 'instr.filter' is not valid as a primary word)",
        "b: obs.field (Secondary word 'obs.field' is not valid as a primary word)",
        "c: phot.mag;meta.nosuchword (Unknown word 'meta.nosuchword')",
        "d: em.IR.K.Brgamma (Unknown word 'em.IR.K.Brgamma'; em.IR.K.Brgamma is deprecated, use em.line.Brgamma)",
    ]


def voevent_ucds() -> dict[str, str]:
    """``<survey> <Param or Field name>`` -> UCD, from the VOEvents of every bundled sample."""
    convert = Converter("test.vogateway", "alerts", "http://127.0.0.1:8080")
    found = {}
    for alert in iter_inputs([SAMPLES]):
        root = etree.fromstring(convert(alert).xml)
        for element in root.iter("Param", "Field"):
            found[f"{alert.survey} {element.tag} {element.get('name')}"] = element.get("ucd")
    return found


def test_every_voevent_ucd_is_valid_ucd1plus(vocabulary):
    ucds = voevent_ucds()
    assert len(ucds) > 60 and all(ucds.values()), "every Param and Field says what it is"
    assert problems(ucds) == []
    # the words the audit found misused, as the builder now writes them
    assert ucds["rubin Param band"] == ucds["ztf Param band"] == ucds["rubin Field band"] == "instr.bandpass"
    assert ucds["ztf Param field"] == "meta.id;obs.field"
    assert ucds["rubin Param trail_length"] == "phys.angSize"


@pytest.fixture(scope="module")
def tap(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tap-ucd")
    url = f"sqlite:///{tmp_path}/alerts.db"
    fill(url)
    with serve("sqlite", url, tmp_path) as server:
        yield pyvo.dal.TAPService(server.url)


def test_every_tap_ucd_is_valid_ucd1plus_and_bands_match_the_voevents(vocabulary, tap):
    rows = tap.run_sync("SELECT table_name, column_name, ucd FROM TAP_SCHEMA.columns").to_table()
    published = {f"TAP_SCHEMA {r['table_name']}.{r['column_name']}": str(r["ucd"]) for r in rows
                 if r["ucd"] is not None and str(r["ucd"]) not in ("", "--")}
    assert published["TAP_SCHEMA gateway.diasource.band"] == "instr.bandpass"
    assert published["TAP_SCHEMA gateway.diasource.trail_length"] == "phys.angSize"
    fields = {}
    for table in PUBLIC_TABLES:
        result = tap.run_sync(f"SELECT TOP 1 * FROM {SCHEMA}.{table.name}")
        for field in result.fielddescs:
            if field.ucd:
                fields[f"FIELD {table.name}.{field.name}"] = field.ucd
    assert len(fields) >= 40 and len(published) >= 40
    assert problems({**published, **fields}) == []
    voevent = voevent_ucds()
    assert fields["FIELD diasource.band"] == voevent["rubin Param band"]  # one band UCD, TAP and VOEvent
