"""Cutouts beside the alert DB: pack files appended in the writer's transaction, read back by offset (SQLite by
default; PostgreSQL and SQLite wherever ``store.cutouts`` says)."""

import os

import pytest
import pytest_twisted
from postgres import fresh_database
from support import query
from twisted.internet import defer, reactor

from gateway.alerts.files import iter_inputs
from gateway.config import load
from gateway.convert import make_converter
from gateway.resources import SAMPLES
from gateway.store import Database, Store
from gateway.store.packs import CutoutPacks, PackError

EVENTS = [make_converter(load())(alert) for alert in iter_inputs([str(SAMPLES)]) if not isinstance(alert, Exception)]


def test_append_and_read_back(tmp_path):
    packs = CutoutPacks(tmp_path / "packs")
    first = packs.append([(1, "science", b"A" * 10), (1, "template", b"BB")])
    second = packs.append([(2, "science", b"CCC")])
    assert [row[3:] for row in first + second] == [(0, 10), (10, 2), (12, 3)]
    assert {row[2] for row in first + second} == {"cutouts-000001.pack"}
    assert [packs.read(*row[2:]) for row in first + second] == [b"A" * 10, b"BB", b"CCC"]
    packs.close()


def test_a_new_writer_begins_a_pack_of_its_own_and_rolls_over(tmp_path):
    packs = CutoutPacks(tmp_path, pack_bytes=16)
    packs.append([(1, "science", b"x" * 5)])
    packs.close()
    # bytes a crash left without a DB row (written before a commit that never came) only take space
    with open(tmp_path / "cutouts-000001.pack", "ab") as orphan:
        orphan.write(b"orphan")
    again = CutoutPacks(tmp_path, pack_bytes=16)
    (row,) = again.append([(2, "science", b"y" * 5)])
    assert row[2:] == ("cutouts-000002.pack", 0, 5)  # never appended to a pack another writer may still have open
    (row3,) = again.append([(3, "science", b"z" * 12)])
    assert row3[2:] == ("cutouts-000002.pack", 5, 12)  # 5 bytes < 16: the same pack
    (row4,) = again.append([(4, "science", b"w")])
    assert row4[2:] == ("cutouts-000003.pack", 0, 1)  # 17 bytes >= 16: the next one
    assert [again.read(*r[2:]) for r in (row, row3, row4)] == [b"y" * 5, b"z" * 12, b"w"]


def test_writers_side_by_side_never_share_a_pack(tmp_path):
    """The DB's writer thread and every worker process append cutouts at once: each offset must be in its file."""
    writers = [CutoutPacks(tmp_path) for _ in range(4)]
    rows = [w.append([(n, "science", bytes([n]) * (100 + n))]) for n, w in enumerate(writers)]
    rows += [w.append([(10 + n, "template", bytes([10 + n]) * 7)]) for n, w in enumerate(writers)]
    assert len({r[0][2] for r in rows[:4]}) == 4
    reader = CutoutPacks(tmp_path)
    for (row,) in rows:
        assert reader.read(*row[2:]) == bytes([row[0]]) * row[4]


@pytest.mark.parametrize("name", ["../gateway.db", "cutouts-1.pack", "/etc/passwd", ""])
def test_a_row_naming_no_pack_is_refused(tmp_path, name):
    with pytest.raises(PackError, match="is not a cutout pack name"):
        CutoutPacks(tmp_path).read(name, 0, 1)


def test_bytes_lost_from_a_pack_are_an_error_not_other_bytes(tmp_path):
    packs = CutoutPacks(tmp_path)
    (row,) = packs.append([(1, "science", b"FITS" * 100)])
    packs.close()
    os.truncate(tmp_path / row[2], 100)
    with pytest.raises(PackError, match="ends before the cutout"):
        packs.read(*row[2:])
    os.remove(tmp_path / row[2])
    with pytest.raises(PackError, match="is missing"):
        packs.read(*row[2:])


@pytest_twisted.inlineCallbacks
def test_the_store_serves_packed_cutouts_and_those_of_older_dbs(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'alerts.db'}", reactor)
    try:
        store = Store(database)
        yield defer.gatherResults([store.accept(e) for e in EVENTS])
        with_cutouts = [e for e in EVENTS if e.view.cutouts]
        event = with_cutouts[0]
        kind, shipped = next(iter(event.view.cutouts.items()))
        served = yield store.cutout(event.view.alert_id, kind)
        assert served[:6] == b"SIMPLE" and (shipped[:6] == b"SIMPLE") <= (served == shipped)
        assert os.listdir(tmp_path / "alerts.db.cutouts") == ["cutouts-000001.pack"]
        # a DB written before cutouts moved beside it has their bytes in the cutout table: still served
        yield database.write(lambda conn: conn.execute(
            "INSERT INTO cutout (alertid, kind, content) VALUES (?, ?, ?)", (424242, "science", b"SIMPLE  = old")))
        assert (yield store.cutout(424242, "science")) == b"SIMPLE  = old"
        assert (yield store.cutout(424243, "science")) is None
        (pack, offset, length), = query(database, "SELECT pack, byte_offset, byte_length FROM gateway.cutout_pack "
                                                  "WHERE alertid = ? AND kind = ?", (event.view.alert_id, kind))
        os.truncate(tmp_path / "alerts.db.cutouts" / pack, offset)
        with pytest.raises(PackError, match="ends before the cutout"):
            yield store.cutout(event.view.alert_id, kind)
    finally:
        database.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.db'}"
    else:
        with fresh_database("gwpacks") as pg_url:
            yield pg_url


@pytest_twisted.inlineCallbacks
def test_with_store_cutouts_set_each_backend_keeps_the_cutouts_in_packs_there(tmp_path, url):
    """``store.cutouts``: PostgreSQL (by default cutouts in the DB) and SQLite (by default beside its file) both
    append them to packs in that directory, locate them in ``cutout_pack``, and serve them from there."""
    shared = tmp_path / "shared-cutouts"
    database = Database(url, reactor, cutout_dir=str(shared))
    try:
        store = Store(database)
        yield defer.gatherResults([store.accept(e) for e in EVENTS])
        shipped = {(e.view.alert_id, kind): content for e in EVENTS for kind, content in e.view.cutouts.items()}
        assert shipped
        for (alert_id, kind), content in shipped.items():
            served = yield store.cutout(alert_id, kind)
            assert served[:6] == b"SIMPLE" and (content[:6] == b"SIMPLE") <= (served == content)
        mark = database.placeholder
        assert query(database, "SELECT count(*) FROM gateway.cutout") == [(0,)]
        assert query(database, "SELECT count(*) FROM gateway.cutout_pack") == [(len(shipped),)]
        assert os.listdir(shared) == ["cutouts-000001.pack"]
        assert not (tmp_path / "alerts.db.cutouts").exists()
        assert (yield store.cutout(424243, "science")) is None
        (pack,), = query(database, f"SELECT DISTINCT pack FROM gateway.cutout_pack WHERE alertid = {mark}",
                         (next(iter(shipped))[0],))
        os.remove(shared / pack)
        with pytest.raises(PackError, match="is missing"):
            yield store.cutout(*next(iter(shipped)))
    finally:
        database.stop()
