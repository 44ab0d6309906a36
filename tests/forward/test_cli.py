"""``vogateway routes`` and ``vogateway outbox``: what an operator types."""

import re


from forward.kit import sample_events
from gateway.cli import main
from gateway.forward import outbox
from gateway.filters import compile_filter


def test_routes_test_lists_what_a_filter_selects(capsys):
    assert main(["routes", "test", "survey == 'ztf' and mag < 19"]) == 0
    out, err = capsys.readouterr()
    f = compile_filter("survey == 'ztf' and mag < 19")
    chosen = [e.ivorn for e in sample_events() if f(e)]
    assert chosen and [line.split()[1] for line in out.splitlines()] == chosen
    assert f"{len(chosen)} of {len(sample_events())} events selected" in err


def test_routes_test_on_voevent_files_and_bad_inputs(tmp_path, capsys):
    event = sample_events()[0]
    (tmp_path / "one.xml").write_bytes(event.xml)
    (tmp_path / "broken.xml").write_bytes(b"<VOEvent")
    assert main(["routes", "test", "mag is not null or mag is null", str(tmp_path / "one.xml"),
                 str(tmp_path / "broken.xml")]) == 0
    out, err = capsys.readouterr()
    assert f"selected    {event.ivorn}" in out and "unreadable  " in out and "broken.xml" in out
    assert "1 of 1 events selected; 1 unreadable" in err


def test_routes_test_with_a_bad_filter_says_where(capsys):
    assert main(["routes", "test", "mag < 20 and bnad == 'g'"]) == 2
    err = capsys.readouterr().err
    assert "column 14: unknown field 'bnad'" in err and "did you mean band" in err and "^" in err


def test_routes_list_and_fields(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text('[[forward.routes]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:9/"\n'
                      'filter = "mag < 19"\nrate = 2.5\n')
    assert main(["routes", "list", "--config", str(config)]) == 0
    assert "hook: webhook, 2.5/s" in capsys.readouterr().out
    config.write_text('[[forward.routes]]\nname = "hook"\nkind = "webhook"\nfilter = "mag < 19"\n')
    assert main(["routes", "list", "--config", str(config)]) == 2
    assert "forward.routes #1 (hook): missing 'url'" in capsys.readouterr().err
    assert main(["routes", "fields"]) == 0
    assert "reliability" in capsys.readouterr().out


def test_outbox_list_retry_drop(tmp_path, capsys):
    from gateway.store.db import Database

    url = f"sqlite:///{tmp_path}/gw.db"
    database = Database(url)
    outbox.create_tables(database)
    database.run_write(lambda conn: [conn.execute(
        f"INSERT INTO {outbox.TABLE} (key, route, kind, ivorn, status, stage, attempts, next_attempt, last_error, "
        f"created, updated) VALUES (?, 'hook', 'webhook', ?, ?, 'send', 3, 0, ?, 0, 0)",
        (f"hook:ivo://a.b/c#{i}", f"ivo://a.b/c#{i}", status, error))
        for i, (status, error) in enumerate([("failed", "HTTP 400"), ("pending", None), ("sent", None)], 1)])
    database.stop()
    assert main(["outbox", "--db", url]) == 0
    captured = capsys.readouterr()
    assert "hook  failed/send  attempts 3  hook:ivo://a.b/c#1  error: HTTP 400" in captured.out
    assert "c#2" in captured.out and "c#3" not in captured.out
    assert "hook failed 1, hook pending 1, hook sent 1" in captured.err
    assert main(["outbox", "retry", "--db", url]) == 2
    assert main(["outbox", "retry", "--failed", "--db", url]) == 0
    assert "1 item queued again" in capsys.readouterr().out
    assert main(["outbox", "drop", "2", "--db", url]) == 0
    assert "1 item dropped" in capsys.readouterr().out
    assert main(["outbox", "list", "--status", "dropped", "--db", url]) == 0
    assert "c#2" in capsys.readouterr().out
    assert main(["outbox", "--db", "mysql://nope"]) == 2


def test_every_destination_kind_and_its_keys_are_documented():
    from gateway.config import DEFAULTS
    from gateway.forward.routes import COMMON, KINDS

    kinds_line = next(line for line in DEFAULTS.splitlines() if line.startswith("#   kind = "))
    assert kinds_line.split("#", 2)[2].split() == " | ".join(KINDS).split()
    forward_docs = DEFAULTS[DEFAULTS.index("[forward]"):]
    for kind in KINDS.values():
        for key in {**COMMON, **kind.keys}:
            assert re.search(rf"\b{key}\b", forward_docs), key


def test_routes_list_names_a_bad_kind_in_one_line(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text('[[forward.routes]]\nname = "p"\nkind = "pigeon"\n')
    assert main(["routes", "list", "--config", str(config)]) == 2
    assert capsys.readouterr().err == ("vogateway: config error: forward.routes #1 (p): kind 'pigeon' is not one of "
                                       "gcn-kafka, voevent-kafka, vtp, tns, webhook, command\n")
