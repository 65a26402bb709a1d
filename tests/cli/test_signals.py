"""Signals: SIGTERM/SIGINT close gracefully, SIGHUP reloads the certificate, and
``--workers`` restarts a worker that dies."""

from __future__ import annotations

import mailbox
import os
import re
import signal
import smtplib
import ssl
import subprocess
import threading

import pytest
import trustme
from cli_support import MESSAGE

from support import wait_until


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\r\n\r\nbody\r\n".encode())


def _stored_subjects(path) -> set[str]:
    return {str(message["Subject"]) for message in mailbox.Maildir(path, create=False)}


def test_sigterm_under_light_load_exits_cleanly_and_keeps_every_accepted_message(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--close-timeout", "5")
    accepted: list[str] = []
    stop_sending = threading.Event()

    def client(number: int) -> None:
        for i in range(50):
            if stop_sending.is_set():
                return
            subject = f"c{number}-m{i}"
            try:
                _send(command.port, subject)
            except (OSError, smtplib.SMTPException):
                return  # refused or cut off during shutdown: never acknowledged
            accepted.append(subject)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(accepted) >= 6, what="a few messages")
    command.signal(signal.SIGTERM)
    assert command.wait(30) == 0
    stop_sending.set()
    for thread in threads:
        thread.join(15)
    assert set(accepted) <= _stored_subjects(tmp_path / "maildir")
    assert "shutting down" in command.stderr and "Traceback" not in command.stderr
    assert not list((tmp_path / "maildir" / "tmp").iterdir())  # nothing half-written


def test_sigint_stops_like_ctrl_c(smtpgate_cli):
    command = smtpgate_cli()
    _send(command.port, "one")
    command.signal(signal.SIGINT)
    assert command.wait(20) == 0
    assert command.stderr.rstrip().endswith("stopped")


def _leaf_pem(output: str) -> str:
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", output, re.S)
    assert match, output
    return match.group(0)


def _certificate_seen(port: int, timeout: float = 15) -> str:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp", "-servername", "localhost"],
        input=b"",
        capture_output=True,
        timeout=timeout,
    )
    return _leaf_pem(result.stdout.decode("ascii", "replace"))


def _write_certificate(tmp_path) -> str:
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    return leaf.cert_chain_pems[0].bytes().decode("ascii")


@pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="needs the openssl command")
def test_sighup_rotates_the_certificate_without_dropping_connections(smtpgate_cli, tmp_path):
    first = _write_certificate(tmp_path)
    command = smtpgate_cli("--tls-cert", "cert.pem", "--tls-key", "key.pem")
    assert _certificate_seen(command.port) == first

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    open_session = command.smtp()
    open_session.starttls(context=context)

    second = _write_certificate(tmp_path)
    command.signal(signal.SIGHUP)
    command.wait_for_output("certificate reloaded")
    assert _certificate_seen(command.port) == second

    (tmp_path / "cert.pem").write_text("not a certificate\n")
    command.signal(signal.SIGHUP)
    command.wait_for_output("certificate not reloaded")
    assert _certificate_seen(command.port) == second  # a bad file keeps the old certificate

    assert open_session.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}  # still connected
    open_session.quit()
    assert command.process.poll() is None


def _worker_pids(stderr: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"worker (\d+) listening", stderr)]


def test_workers_share_the_port_and_a_dead_worker_is_restarted(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--workers", "2", "--sink", "maildir:box", marker="ready: 2 workers")
    first_pids = _worker_pids(command.stderr)
    assert len(first_pids) == 2 and command.process.pid not in first_pids
    for i in range(4):
        _send(command.port, f"before-{i}")

    os.kill(first_pids[0], signal.SIGKILL)
    command.wait_for_output(f"worker {first_pids[0]} was killed by SIGKILL; restarting")
    wait_until(lambda: len(_worker_pids(command.stderr)) == 3, what="a new worker")
    for i in range(4):
        _send(command.port, f"after-{i}")
    assert _stored_subjects(tmp_path / "box") == {f"{when}-{i}" for when in ("before", "after") for i in range(4)}

    command.signal(signal.SIGTERM)
    assert command.wait(30) == 0
    for pid in _worker_pids(command.stderr)[1:]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="needs the openssl command")
def test_starttls_with_sni_on_the_default_event_loop(smtpgate_cli, tmp_path):
    leaf = _write_certificate(tmp_path)
    command = smtpgate_cli("--tls-cert", "cert.pem", "--tls-key", "key.pem")
    try:
        assert _certificate_seen(command.port, timeout=5) == leaf
    except subprocess.TimeoutExpired:
        pytest.fail("STARTTLS handshake hung")
