"""The directory sink: one file per event, named after the whole IVORN."""

from datetime import datetime, timezone

import pytest_twisted

from gateway.event import Event
from gateway.sinks import DirectorySink, file_name


def event(ivorn: str) -> Event:
    return Event(ivorn=ivorn, role="observation", received=datetime(2026, 12, 7, tzinfo=timezone.utc),
                 xml=f"<voe:VOEvent ivorn='{ivorn}'/>".encode())


def test_a_file_name_is_the_whole_ivorn_made_safe():
    assert file_name(event("ivo://example.org/gateway/rubin#170123-p61000.5")) == \
        "example.org_gateway_rubin_170123-p61000.5.xml"
    assert file_name(event("ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1234-567")) == \
        "nasa.gsfc.gcn_SWIFT_BAT_GRB_Pos_1234-567.xml"
    assert "/" not in file_name(event("ivo://a/b#../../etc/passwd"))  # nothing leaves the directory


@pytest_twisted.inlineCallbacks
def test_events_of_different_streams_with_the_same_local_id_are_both_kept(tmp_path):
    sink = DirectorySink(tmp_path)
    ivorns = ["ivo://example.org/gateway/rubin#1234", "ivo://example.org/gateway/ztf#1234",
              "ivo://other.org/author#1234"]
    for ivorn in ivorns:
        yield sink.accept(event(ivorn))
    written = {path.read_bytes() for path in tmp_path.glob("*.xml")}
    assert written == {event(ivorn).xml for ivorn in ivorns}
    assert not list(tmp_path.glob("*.part"))
