"""`vogateway serve` end to end, as a user runs it: a real process, real sockets on loopback, real files."""

import signal
import subprocess
import sys

from gateway.alerts.files import iter_inputs
from gateway.resources import SAMPLES
from support import counted, free_port, wait_for


def start(tmp_path, *extra):
    ports = {name: free_port() for name in ("http", "broadcast", "receive")}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--state-dir", str(tmp_path / "var"),
               "--db", f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", "--output", str(tmp_path / "out"),
               "--http", f"127.0.0.1:{ports['http']}", "--broadcast", f"127.0.0.1:{ports['broadcast']}",
               "--receive", f"127.0.0.1:{ports['receive']}", *extra]
    log = open(tmp_path / "serve.log", "ab")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    return process, ports


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_serve_with_defaults_replays_samples_into_every_sink_and_resumes(tmp_path):
    expected = sum(1 for item in iter_inputs([str(SAMPLES)]) if not isinstance(item, Exception))
    process, ports = start(tmp_path)
    try:
        wait_for(lambda: "replay done" in (tmp_path / "serve.log").read_text(), 120, what="sample replay")
        assert len(list((tmp_path / "out").glob("*.xml"))) == expected

        # an author submits a VOEvent to our receiver: acked, routed to the sinks
        event = next((tmp_path / "out").glob("*.xml")).read_bytes()
        submitted = tmp_path / "submitted.xml"
        submitted.write_bytes(event.replace(b"#", b"#resubmitted-", 1))
        send = subprocess.run([sys.executable, "-m", "gateway.cli", "send", f"127.0.0.1:{ports['receive']}",
                               str(submitted)], capture_output=True, timeout=60)
        assert send.returncode == 0, send.stdout + send.stderr
        wait_for(lambda: len(list((tmp_path / "out").glob("*.xml"))) == expected + 1, 30, what="submitted event")
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert "replay done" in log and counted(log, f"{expected} converted"), log[-3000:]

    # a restart does not redo finished files
    process, ports = start(tmp_path)
    try:
        wait_for(lambda: "replay done" in (tmp_path / "serve.log").read_text().split("replay done", 1)[1], 60,
                 what="second replay")
    finally:
        stop(process)
    second_run = (tmp_path / "serve.log").read_text().split("replay done", 1)[1]
    assert counted(second_run, "0 converted"), second_run


def vogateway(*args, **options):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=60, **options)


def test_send_has_one_parser_with_the_tls_flags():
    result = vogateway("send", "--help")
    assert result.returncode == 0
    for flag in ("--tls-cert", "--tls-key", "--tls-ca", "--local-ivo", "--timeout", "tls:HOST:PORT"):
        assert flag in result.stdout, flag


def test_send_to_a_bad_address_says_what_it_expected(tmp_path):
    event = tmp_path / "event.xml"
    event.write_text("<VOEvent/>")
    for address, message in [("nowhere", "expected HOST:PORT, got 'nowhere'"),
                             ("localhost:port", "expected HOST:PORT, got 'localhost:port'"),
                             ("tls:nowhere", "'tls:nowhere': expected tls:HOST:PORT")]:
        result = vogateway("send", address, event)
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"vogateway send: {message}\n"
    result = vogateway("send", f"tls:127.0.0.1:{free_port()}", event, "--tls-ca", tmp_path / "missing-ca.pem")
    assert result.returncode == 2 and result.stderr.startswith("vogateway send: ") and "missing-ca.pem" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_bad_listener_is_a_one_line_config_error(tmp_path):
    for flags, message in [(["--broadcast", "nowhere"], "vtp.broadcast: expected HOST:PORT, got 'nowhere'"),
                           (["--http", "8080"], "http.listen: expected HOST:PORT, got '8080'")]:
        result = vogateway("serve", "--state-dir", tmp_path / "var", "--db", f"sqlite:///{tmp_path}/gw.db",
                           "--receive", "", *flags, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.endswith(f"vogateway: config error: {message}\n"), result.stderr
        assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_naming_the_flag_and_a_non_zero_exit(tmp_path):
    import socket

    for flag in ("--http", "--broadcast", "--receive"):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            process, _ = start(tmp_path, flag, f"127.0.0.1:{port}")  # the later flag wins over start()'s own
            assert process.wait(timeout=60) == 2
        log = (tmp_path / "serve.log").read_text()
        line = f"vogateway: cannot listen on 127.0.0.1:{port} for {flag} (config "
        assert line in log and "address already in use" in log, log
        assert "Traceback" not in log and "Unhandled Error" not in log and "vogateway running" not in log, log
        (tmp_path / "serve.log").unlink()


def test_an_alert_db_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--state-dir", str(tmp_path / "var"),
                             "--db", "postgresql://postgres:secret@127.0.0.1:1/test", "--http", "", "--broadcast", "",
                             "--receive", ""], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "vogateway: cannot connect to PostgreSQL 'postgresql://postgres:***@127.0.0.1:1/test'" in result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_a_cutout_directory_that_cannot_be_made_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    config = tmp_path / "gateway.toml"
    config.write_text(f'[store]\ncutouts = "{tmp_path / "a-file" / "cutouts"}"\n')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--state-dir",
                             str(tmp_path / "var"), "--http", "", "--broadcast", "", "--receive", ""],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"vogateway: cannot make the cutout directory {tmp_path / 'a-file' / 'cutouts'}: "
                                     "Not a directory"), result.stderr
