"""SIGTERM while many clients send: every acknowledged message is stored, nothing else is,
and the command exits within its close timeout."""

from __future__ import annotations

import mailbox
import signal
import smtplib
import threading
import time

import pytest

from support import wait_until

CLIENTS = 30
CLOSE_TIMEOUT = 8


def _client(port: int, number: int, acked: list[str], attempted: list[str], stop: threading.Event) -> None:
    """Send messages over one connection after another until the server goes away."""
    sequence = 0
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
                for _ in range(20):
                    subject = f"client{number}-message{sequence}"
                    sequence += 1
                    attempted.append(subject)
                    body = f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\n" + "x" * 2000 + "\r\n"
                    smtp.sendmail("load@example.com", ["sink@example.com"], body.encode())
                    acked.append(subject)  # the 250 arrived
        except (OSError, smtplib.SMTPException):
            if stop.is_set():
                return
            time.sleep(0.05)  # refused (shutting down) or cut: never acknowledged


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_sigterm_under_load_loses_and_invents_nothing(smtpgate_cli, tmp_path, workers):
    args = ["--close-timeout", str(CLOSE_TIMEOUT), "--max-clients", "200"]
    if workers > 1:
        command = smtpgate_cli(*args, "--workers", str(workers), marker=f"ready: {workers} workers")
    else:
        command = smtpgate_cli(*args)
    acked: list[str] = []
    attempted: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(command.port, n, acked, attempted, stop), daemon=True)
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 200, timeout=60, what="200 acknowledged messages")
    signalled = time.monotonic()
    command.signal(signal.SIGTERM)
    assert command.wait(CLOSE_TIMEOUT + 15) == 0, command.stderr
    took = time.monotonic() - signalled
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)

    box = mailbox.Maildir(tmp_path / "maildir", create=False)
    stored = [str(message["Subject"]) for message in box]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    missing = set(acked) - set(stored)
    invented = set(stored) - set(acked)
    assert not missing, f"acknowledged but not stored: {sorted(missing)[:5]}"
    assert not invented, f"stored but never acknowledged: {sorted(invented)[:5]}"
    assert set(stored) <= set(attempted)
    assert not list((tmp_path / "maildir" / "tmp").iterdir()), "a half-written message was left behind"
    assert took < CLOSE_TIMEOUT + 10
    assert "Traceback" not in command.stderr
    print(f"attempted={len(attempted)} acknowledged={len(acked)} stored={len(stored)} exit={took:.2f}s")
