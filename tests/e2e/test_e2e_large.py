"""A large message within --max-size through every part: --verify, the inbox and the
webhook get it whole and identical."""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Callable

import pytest
from e2e_support import Gate, KnotServer, Receiver, auth_results, hook_url, large_webhook, wait_until

SIZE_MB = 30


def peak_rss_mb(running: Gate) -> float:
    assert running.process is not None
    for line in open(f"/proc/{running.process.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_30_mb_message_through_verify_inbox_and_webhook(gate: Callable[..., Gate], dns_server: KnotServer) -> None:
    with large_webhook(64 * 1024 * 1024) as webhook:
        check_large(gate, webhook, dns_server)


def check_large(gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer) -> None:
    running = gate("--deliver", hook_url(webhook), "--verify", "--dns", dns_server.address, "--max-size", "50M")
    line = b"0123456789abcdef" * 62 + b"\r\n"
    message = b"From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: large\r\n\r\n" + line * (
        SIZE_MB * 1024 * 1024 // 994
    )
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=120) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], message)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 120, "the delivery")
    ((summary),) = running.inbox()
    raw = running.inbox_raw(summary["ID"])
    assert raw.endswith(message) and "spf=pass" in auth_results(raw)
    ((_, _, body),) = webhook.requests
    assert hashlib.sha256(body[-len(raw) :]).digest() == hashlib.sha256(raw).digest()
    print(f"peak RSS of the command: {peak_rss_mb(running):.0f} MB for a {SIZE_MB} MB message")
