"""--verify with a name server that does not answer, with the inbox and the webhook on:
``header`` mode accepts and both carry the same temperror verdict; ``enforce`` mode
answers 451 and nothing is stored or handed on anywhere."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable, Iterator

import pytest
from e2e_support import MESSAGE, Gate, Receiver, auth_results, hook_url, wait_until


@pytest.fixture
def silent_dns() -> Iterator[str]:
    """A UDP port on loopback where nothing ever answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{silent.getsockname()[1]}"


def send(running: Gate) -> None:
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=60) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], MESSAGE.format(subject="dns-trouble").encode())


def test_header_mode_accepts_with_temperror_everywhere(
    gate: Callable[..., Gate], webhook: Receiver, silent_dns: str
) -> None:
    running = gate("--deliver", hook_url(webhook), "--verify", "--dns", silent_dns, "--dns-timeout", "0.5")
    send(running)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery")
    ((summary),) = running.inbox()
    verdict = auth_results(running.inbox_raw(summary["ID"]))
    assert "spf=temperror" in verdict
    ((_, _, body),) = webhook.requests
    assert auth_results(body) == verdict


def test_enforce_mode_defers_and_stores_nothing(gate: Callable[..., Gate], webhook: Receiver, silent_dns: str) -> None:
    running = gate(
        "--deliver", hook_url(webhook), "--verify=enforce", "--dns", silent_dns, "--dns-timeout", "0.5", metrics=True
    )
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running)
    code, text = refused.value.recipients["bob@mx.test"]
    assert code == 451 and text.startswith(b"4.7.")
    assert running.inbox() == [] and running.queue_drained() and webhook.requests == []
    metrics = running.metrics()
    assert metrics.get("smtpgate_messages_accepted_total") == 0
    assert metrics["smtpgate_commands_refused_total{code=451,command=RCPT}"] == 1
