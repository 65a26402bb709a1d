"""Relay through a real Postfix and LMTP into a real Dovecot, per-recipient outcomes."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
import trustme
from delivery_services import Dovecot, Postfix, make_message

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
