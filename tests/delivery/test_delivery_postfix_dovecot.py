"""Relay through a real Postfix and LMTP into a real Dovecot, per-recipient outcomes."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from delivery_services import BODY, Dovecot, Postfix, make_message

from smtpgate.deliver.lmtp import LMTPDeliverer
from smtpgate.deliver.relay import RelayDeliverer
from smtpgate.queue import Delivered, Failed, Retry

pytestmark = pytest.mark.slow


def _wait_for(fetch, count: int, timeout: float = 30.0) -> list[bytes]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found: list[bytes] = fetch()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _client_context(test_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    test_ca.configure_trust(context)
    return context


def test_relay_through_postfix_per_recipient(postfix: Postfix, test_ca: trustme.CA) -> None:
    relay = RelayDeliverer("127.0.0.1", postfix.port, tls_context=_client_context(test_ca), local_name="client.test")
    message = make_message(("alice@example.test", "refused@example.test", "later@example.test"))
    outcomes = asyncio.run(relay(message))
    assert isinstance(outcomes, dict)
    assert isinstance(outcomes["alice@example.test"], Delivered)
    assert isinstance(outcomes["refused@example.test"], Failed)
    assert "550 5.1.1" in outcomes["refused@example.test"].reason
    assert isinstance(outcomes["later@example.test"], Retry)
    assert "450 4.2.0" in outcomes["later@example.test"].reason
    delivered = _wait_for(lambda: postfix.maildir("alice"), 1)
    assert len(delivered) == 1
    assert b"Subject: delivery test" in delivered[0]
    assert b"\n.a line that starts with a dot" in delivered[0]  # dot-stuffing undone by Postfix
    assert b"(using TLS" in delivered[0]  # Postfix's Received header: the relay used STARTTLS


def test_relay_refuses_an_unverified_certificate(postfix: Postfix) -> None:
    relay = RelayDeliverer("127.0.0.1", postfix.port, tls_context=ssl.create_default_context())
    outcome = asyncio.run(relay(make_message(("bob@example.test",))))
    assert isinstance(outcome, Retry)
    assert "certificate" in outcome.reason


def test_lmtp_into_dovecot_per_recipient(dovecot: Dovecot) -> None:
    lmtp = LMTPDeliverer("127.0.0.1", dovecot.port, local_name="client.test")
    outcomes = asyncio.run(lmtp(make_message(("alice", "nobody-here", "bob"))))
    assert isinstance(outcomes, dict)
    assert isinstance(outcomes["alice"], Delivered)
    assert isinstance(outcomes["bob"], Delivered)
    assert isinstance(outcomes["nobody-here"], Failed)
    assert "550" in outcomes["nobody-here"].reason
    for user in ("alice", "bob"):
        stored = _wait_for(lambda user=user: dovecot.maildir(user), 1)
        assert len(stored) == 1
        assert b"Subject: delivery test" in stored[0]
        assert b"\n.a line that starts with a dot" in stored[0]


def _serve_and_send(tmp_path: Path, args: list[str], recipients: list[str]) -> subprocess.Popen[bytes]:
    port = _free_port()
    log = open(tmp_path / "smtpgate.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "smtpgate", "--port", str(port), "--queue", str(tmp_path / "queue"), *args],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C to stop" not in (tmp_path / "smtpgate.log").read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "smtpgate.log").read_text()
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("sender@example.org", recipients, BODY)
    except BaseException:
        _stop(process)  # the caller never gets it: stop it here
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_command_relays_through_postfix(postfix: Postfix, test_ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(ca_file))
    process = _serve_and_send(
        tmp_path,
        ["--deliver", f"smtp://127.0.0.1:{postfix.port}", "--deliver-ca-file", str(ca_file), "--retry-min", "0.5"],
        ["bob@example.test", "refused@example.test"],
    )
    try:
        delivered = _wait_for(lambda: postfix.maildir("bob"), 1)
        log = tmp_path / "smtpgate.log"
        deadline = time.monotonic() + 30
        while "dead-lettered" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        _stop(process)
    assert len(delivered) == 1 and b"Subject: delivery test" in delivered[0]
    text = log.read_text()
    assert "bob@example.test delivered" in text and "refused@example.test failed (550 5.1.1" in text


def test_command_delivers_into_dovecot_over_lmtp(dovecot: Dovecot, tmp_path: Path) -> None:
    before = len(dovecot.maildir("bob"))
    process = _serve_and_send(tmp_path, ["--deliver", f"lmtp://127.0.0.1:{dovecot.port}"], ["bob@example.test"])
    try:
        stored = _wait_for(lambda: dovecot.maildir("bob"), before + 1)
    finally:
        _stop(process)
    assert len(stored) == before + 1
    assert all(b"Subject: delivery test" in message for message in stored)
    assert "1 recipient(s) delivered (250 2.0.0 <bob@example.test>" in (tmp_path / "smtpgate.log").read_text()
