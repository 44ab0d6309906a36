"""Files and directories: iter_inputs, and DirectorySource feeding a pipeline once per file, across restarts."""

import json
import os

import pytest_twisted
from twisted.internet import defer, task

from gateway.alerts import Alert, AlertError
from gateway.alerts.decode import write_container
from gateway.alerts.files import CHECKPOINTS, Checkpoints, DirectorySource, is_simulated, iter_inputs
from gateway.resources import SAMPLES

from alertdata import LIBRARY, first_record, rubin_files


class Recorder:
    """A stand-in pipeline: records alerts and rejections; ``answer`` decides what ingest_alert returns."""

    def __init__(self, answer=None):
        self.alerts, self.rejected, self.rechecked = [], [], []
        self.answer = answer or (lambda alert: defer.succeed(None))

    def ingest_alert(self, alert, recheck=False):
        self.alerts.append(alert)
        self.rechecked.append(recheck)
        return self.answer(alert)

    def reject(self, error):
        self.rejected.append(error)


def many(path, count, version="7.4"):
    record, _ = first_record(rubin_files()[version])
    write_container(path, [dict(record, alertId=n) for n in range(count)], LIBRARY.by_version("rubin", version))
    return path


def test_iter_inputs_over_the_bundled_samples():
    items = list(iter_inputs([SAMPLES]))
    assert items and not [i for i in items if isinstance(i, AlertError)]
    for alert in items:
        expected = alert.survey == "rubin" or os.path.basename(alert.source) == "simulated.avro"
        assert alert.simulated is expected, alert.source
    assert {a.survey for a in items} == {"rubin", "ztf"}
    assert iter_inputs([SAMPLES], simulated=False).__next__().simulated is False


def test_is_simulated_from_a_manifest(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"simulated": ["sim/", "fake.avro"]}))
    assert is_simulated(tmp_path / "sim" / "a.avro") and is_simulated(tmp_path / "fake.avro")
    assert not is_simulated(tmp_path / "real.avro") and not is_simulated(tmp_path / "simx.avro")


def test_directory_with_non_avro_files(tmp_path):
    many(tmp_path / "a.avro", 2)
    (tmp_path / "notes.txt").write_text("not an alert\n")
    (tmp_path / "README.rst").write_text("documentation is skipped\n")
    (tmp_path / ".hidden").write_bytes(b"\x00")
    many(tmp_path / "z.avro", 3)
    (tmp_path / "broken.avro").write_bytes(b"Obj\x01 but nothing after the magic")
    left_out = []
    items = list(iter_inputs([tmp_path], not_avro=left_out))
    errors = [i for i in items if isinstance(i, AlertError)]
    assert len([i for i in items if isinstance(i, Alert)]) == 5
    # notes beside the data are left out by their content, and said so; a file that claims to be Avro and is not
    # is still a rejection, as is any file named explicitly
    assert left_out == [tmp_path / "notes.txt"]
    assert len(errors) == 1 and errors[0].source == str(tmp_path / "broken.avro")
    # sorted: a.avro, broken.avro, z.avro
    assert [os.path.basename(i.source) for i in items] == ["a.avro"] * 2 + ["broken.avro"] + ["z.avro"] * 3
    [named] = list(iter_inputs([tmp_path / "notes.txt"]))
    assert named.reason.startswith("not an Avro container file")


def test_missing_input(tmp_path):
    (error,) = iter_inputs([tmp_path / "nope"])
    assert error.reason == "no such file or directory" and "nope" in error.source


@pytest_twisted.inlineCallbacks
def test_each_file_once_across_restarts(tmp_path):
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 4)
    many(inputs / "b.avro", 3)
    (inputs / "bad.txt").write_text("no")
    pipeline = Recorder()
    source = DirectorySource([inputs], pipeline, state)
    source.startService()
    files = yield source.finished
    yield source.stopService()
    assert files == 3 and len(pipeline.alerts) == 7 and len(pipeline.rejected) == 1
    assert pipeline.rejected[0].reason.startswith("not an Avro container file")
    done = Checkpoints(state).finished()
    assert set(done) == {str(inputs / "a.avro"), str(inputs / "b.avro"), str(inputs / "bad.txt")}

    again = Recorder()
    restarted = DirectorySource([inputs], again, state)
    restarted.startService()
    yield restarted.finished
    yield restarted.stopService()
    assert again.alerts == [] and again.rejected == []

    # a file that changed (new size/mtime) is read again
    many(inputs / "a.avro", 5)
    third = Recorder()
    changed = DirectorySource([inputs], third, state)
    changed.startService()
    yield changed.finished
    yield changed.stopService()
    assert len(third.alerts) == 5 and {os.path.basename(a.source) for a in third.alerts} == {"a.avro"}


@pytest_twisted.inlineCallbacks
def test_a_file_whose_alerts_failed_downstream_is_not_finished(tmp_path):
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 3)
    many(inputs / "b.avro", 2)

    def flaky(alert):
        if alert.source.endswith("a.avro") and alert.position == 1:
            return defer.fail(RuntimeError("store is down"))
        return defer.succeed(None)

    pipeline = Recorder(flaky)
    source = DirectorySource([inputs], pipeline, state)
    source.startService()
    yield source.finished
    yield source.stopService()
    assert len(pipeline.alerts) == 5
    assert set(Checkpoints(state).finished()) == {str(inputs / "b.avro")}

    again = Recorder()
    restarted = DirectorySource([inputs], again, state)
    restarted.startService()
    yield restarted.finished
    yield restarted.stopService()
    assert [(os.path.basename(a.source), a.position) for a in again.alerts] == [("a.avro", 0), ("a.avro", 1), ("a.avro", 2)]
    assert again.rechecked == [True] * 3  # read before and not finished: the store is asked about each


def test_back_pressure_and_checkpoint_after_the_last_deferred(tmp_path):
    clock = task.Clock()
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 30)
    waiting = []

    def later(alert):
        waiting.append(defer.Deferred())
        return waiting[-1]

    pipeline = Recorder(later)
    source = DirectorySource([inputs], pipeline, state, clock=clock, max_in_flight=4)
    source.startService()
    for _ in range(50):
        clock.advance(0)
    assert len(pipeline.alerts) == 4  # no more than 4 unanswered alerts
    for round_ in range(20):
        for d in list(waiting):
            if not d.called:
                d.callback(None)
        for _ in range(10):
            clock.advance(0)
        assert sum(not d.called for d in waiting) <= 4
        if source.finished.called:
            break
    assert len(pipeline.alerts) == 30 and source.finished.called
    assert str(inputs / "a.avro") in Checkpoints(state).finished()
    source.stopService()


def test_checkpoint_waits_for_every_deferred(tmp_path):
    clock = task.Clock()
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 3)
    waiting = []
    pipeline = Recorder(lambda alert: waiting.append(defer.Deferred()) or waiting[-1])
    source = DirectorySource([inputs], pipeline, state, clock=clock)
    source.startService()
    for _ in range(20):
        clock.advance(0)
    assert len(pipeline.alerts) == 3 and not Checkpoints(state).finished()
    waiting[0].callback(None)
    waiting[2].callback(None)
    clock.advance(0)
    assert not Checkpoints(state).finished() and not source.finished.called
    waiting[1].callback(None)
    for _ in range(5):
        clock.advance(0)
    assert Checkpoints(state).finished() and source.finished.called
    source.stopService()


def test_watch_picks_up_new_files_once_they_stop_growing(tmp_path):
    clock = task.Clock()
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 2)
    pipeline = Recorder()
    source = DirectorySource([inputs], pipeline, state, watch=True, interval=2.0, clock=clock)
    source.startService()

    def run(seconds):
        for _ in range(int(seconds / 0.5)):
            clock.advance(0.5)
            for _ in range(5):
                clock.advance(0)

    assert pipeline.alerts == []  # first sight of a.avro: wait one scan to see it is complete
    run(2.0)
    assert len(pipeline.alerts) == 2
    many(inputs / "b.avro", 3)
    run(2.0)
    assert len(pipeline.alerts) == 2
    run(2.0)
    assert len(pipeline.alerts) == 5
    run(6.0)
    assert len(pipeline.alerts) == 5  # each file once
    assert not source.finished.called  # a watching source never finishes
    source.stopService()


@pytest_twisted.inlineCallbacks
def test_a_big_file_does_not_freeze_the_reactor(tmp_path):
    from twisted.internet import reactor

    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "big.avro", 4000, version="11.1")
    ticks = []
    ticker = task.LoopingCall(lambda: ticks.append(reactor.seconds()))
    ticker.start(0.01)
    pipeline = Recorder()
    source = DirectorySource([inputs], pipeline, state)
    source.startService()
    yield source.finished
    ticker.stop()
    yield source.stopService()
    assert len(pipeline.alerts) == 4000
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 3 and max(gaps) < 0.5, (len(ticks), max(gaps, default=None))


def test_missing_directory_is_reported_once(tmp_path):
    clock = task.Clock()
    pipeline = Recorder()
    source = DirectorySource([tmp_path / "nope"], pipeline, tmp_path / "state", watch=True, interval=1.0, clock=clock)
    source.startService()
    clock.advance(1.0)
    clock.advance(1.0)
    assert len(pipeline.rejected) == 1 and pipeline.rejected[0].reason == "no such file or directory"
    source.stopService()


def test_checkpoint_log_survives_a_damaged_line_and_compacts(tmp_path):
    log = Checkpoints(tmp_path)
    for n in range(300):
        log.mark(tmp_path / "a.avro", (n, n))  # the same file changing: 300 lines, one entry
    with open(tmp_path / CHECKPOINTS, "a") as handle:
        handle.write('{"path": "/x", "si')  # a crash mid-write
    again = Checkpoints(tmp_path)
    assert again.finished() == {str(tmp_path / "a.avro"): (299, 299)}
    assert len((tmp_path / CHECKPOINTS).read_text().splitlines()) == 1  # compacted
    assert again.done(tmp_path / "a.avro", (299, 299)) and not again.done(tmp_path / "a.avro", (298, 298))


def test_the_source_leaves_notes_in_its_directory_out_without_rejecting_them(tmp_path):
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 2)
    (inputs / "notes.txt").write_text("what this directory holds\n")
    clock = task.Clock()
    pipeline = Recorder()
    source = DirectorySource([inputs], pipeline, state, watch=True, interval=1.0, clock=clock)
    source.startService()
    for _ in range(5):
        clock.advance(1.0)
    assert len(pipeline.alerts) == 2 and pipeline.rejected == []
    assert source._not_avro == {inputs / "notes.txt"}  # logged once, however many scans see it
    source.stopService()


@pytest_twisted.inlineCallbacks
def test_only_a_file_whose_reading_was_cut_short_is_checked_against_the_store(tmp_path):
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    many(inputs / "a.avro", 3)
    many(inputs / "b.avro", 2)
    Checkpoints(state).mark_started((inputs / "a.avro").resolve())  # what a crash in the middle of a.avro leaves
    pipeline = Recorder()
    source = DirectorySource([inputs], pipeline, state)
    source.startService()
    yield source.finished
    yield source.stopService()
    assert [(os.path.basename(a.source), r) for a, r in zip(pipeline.alerts, pipeline.rechecked)] == [
        ("a.avro", True), ("a.avro", True), ("a.avro", True), ("b.avro", False), ("b.avro", False)]
    after = Checkpoints(state)
    assert not after.started(inputs / "a.avro") and not after.started(inputs / "b.avro")
    assert set(after.finished()) == {str(inputs / "a.avro"), str(inputs / "b.avro")}


def test_started_files_survive_compaction_and_a_finished_one_is_no_longer_started(tmp_path):
    log = Checkpoints(tmp_path)
    for n in range(300):
        log.mark(tmp_path / "done.avro", (n, n))
    log.mark_started(tmp_path / "cut.avro")
    log.mark_started(tmp_path / "cut.avro")  # once is enough: no second line
    log.mark_started(tmp_path / "done.avro")  # changed and started again ...
    log.mark(tmp_path / "done.avro", (300, 300))  # ... and finished
    assert (tmp_path / CHECKPOINTS).read_text().count('"started": true') == 2
    again = Checkpoints(tmp_path)
    assert len((tmp_path / CHECKPOINTS).read_text().splitlines()) == 2  # compacted: one line per file
    assert again.started(tmp_path / "cut.avro") and not again.started(tmp_path / "done.avro")
    assert again.finished() == {str(tmp_path / "done.avro"): (300, 300)}
