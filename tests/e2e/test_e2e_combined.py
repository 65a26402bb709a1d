"""All parts on at once: --http (inbox) + --deliver (webhook) + --verify (Knot DNS) +
--limit-messages + --metrics, driven by smtplib, swaks and aiosmtplib as a user would."""

from __future__ import annotations

import asyncio
import shutil
import signal
import smtplib
import subprocess
from collections.abc import Callable

import aiosmtplib
import pytest
from e2e_load import Load
from e2e_support import MESSAGE, Gate, KnotServer, Receiver, auth_results, hook_url, subject_of, wait_until


def start_all(gate: Callable[..., Gate], webhook: Receiver, dns: KnotServer, *extra: str) -> Gate:
    return gate(
        "--deliver",
        hook_url(webhook),
        "--retry-min",
        "1",
        "--verify",
        "--dns",
        dns.address,
        *extra,
        metrics=True,
    )


def send(running: Gate, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], MESSAGE.format(subject=subject).encode())


def delivered_bodies(webhook: Receiver) -> dict[str, bytes]:
    """webhook-id -> body of every request answered 200."""
    return {headers["webhook-id"]: body for _, headers, body in list(webhook.requests)}


def test_one_message_reaches_inbox_and_webhook_with_one_verdict(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start_all(gate, webhook, dns_server, "--limit-messages", "10/min")
    send(running, "combined-1")
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the webhook delivery")
    ((inbox_summary),) = running.inbox()
    assert inbox_summary["Subject"] == "combined-1"
    inbox_raw = running.inbox_raw(inbox_summary["ID"])
    (hook_raw,) = delivered_bodies(webhook).values()
    verdict = auth_results(inbox_raw)
    assert verdict.startswith("mx.test;") and "spf=pass smtp.mailfrom=bounce@ok.test" in verdict
    assert "dmarc=pass" in verdict
    assert auth_results(hook_raw) == verdict
    # the webhook carries the envelope on top, then the very message the inbox holds
    assert hook_raw.endswith(inbox_raw)
    wait_until(running.queue_drained, 30, "the queue to drain")
    metrics = running.metrics()
    assert metrics["smtpgate_messages_accepted_total"] == 1
    assert metrics["smtpgate_delivery_attempts_total{outcome=delivered}"] == 1
    queue_gauges = {k: v for k, v in metrics.items() if k.startswith("smtpgate_queue_messages{")}
    assert list(queue_gauges.values()) == [0], queue_gauges  # the --deliver queue, empty again


def test_limited_client_is_refused_and_nothing_is_stored(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start_all(gate, webhook, dns_server, "--limit-messages", "3/min")
    for number in range(3):
        send(running, f"limited-{number}")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(running, "limited-over")
    assert refused.value.smtp_code == 450 and refused.value.smtp_error.startswith(b"4.7.1")
    wait_until(lambda: len(webhook.delivered_ids()) == 3, 30, "three webhook deliveries")
    wait_until(running.queue_drained, 30, "the queue to drain")
    inbox_subjects = sorted(m["Subject"] for m in running.inbox())
    hook_subjects = sorted(subject_of(body) for body in delivered_bodies(webhook).values())
    assert inbox_subjects == hook_subjects == ["limited-0", "limited-1", "limited-2"]
    metrics = running.metrics()
    assert metrics["smtpgate_messages_accepted_total"] == 3
    assert sum(v for k, v in metrics.items() if k.startswith("smtpgate_limit_refusals_total")) >= 1
    assert metrics.get("smtpgate_commands_refused_total{code=450,command=MAIL}") == 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_and_aiosmtplib_agree_with_inbox_queue_and_webhook(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start_all(gate, webhook, dns_server)
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{running.port}", "--helo", "client.ok.test", "--from", "bounce@ok.test"]
        + ["--to", "bob@mx.test", "--header", "Subject: by-swaks", "--header", "From: alice@ok.test"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.6.0 Stored as" in done.stdout

    async def concurrently() -> None:
        async def one(number: int) -> None:
            await aiosmtplib.send(
                MESSAGE.format(subject=f"by-aiosmtplib-{number}").encode(),
                sender="bounce@ok.test",
                recipients=["bob@mx.test"],
                hostname="127.0.0.1",
                port=running.port,
                local_hostname="client.ok.test",
                start_tls=False,
                timeout=30,
            )

        await asyncio.gather(*(one(number) for number in range(8)))

    asyncio.run(concurrently())
    expected = sorted(["by-swaks", *(f"by-aiosmtplib-{n}" for n in range(8))])
    wait_until(lambda: len(webhook.delivered_ids()) == 9, 30, "nine webhook deliveries")
    wait_until(running.queue_drained, 30, "the queue to drain")
    inbox = running.inbox()
    assert sorted(m["Subject"] for m in inbox) == expected
    bodies = delivered_bodies(webhook)
    assert sorted(subject_of(body) for body in bodies.values()) == expected
    for summary in inbox:  # each message: the same verdict in the inbox and at the webhook
        raw = running.inbox_raw(summary["ID"])
        (hook_raw,) = [b for b in bodies.values() if subject_of(b) == summary["Subject"]]
        assert auth_results(raw) == auth_results(hook_raw)
        assert "spf=pass" in auth_results(raw)
    assert running.metrics()["smtpgate_messages_accepted_total"] == 9


def test_connection_limit_under_concurrency(gate: Callable[..., Gate], webhook: Receiver) -> None:
    running = gate("--deliver", hook_url(webhook), "--limit-connections", "2", metrics=True)

    async def scenario() -> list[int]:
        tried = 0
        everyone_tried = asyncio.Event()

        async def hold() -> int:
            nonlocal tried
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.port, start_tls=False, timeout=30)
            try:
                await client.connect()
            except aiosmtplib.SMTPConnectResponseError as error:
                return error.code
            finally:
                tried += 1
                if tried == 6:
                    everyone_tried.set()
            await asyncio.wait_for(everyone_tried.wait(), 30)  # all six try while these are open
            await client.quit()
            return 220

        return sorted(await asyncio.gather(*(hold() for _ in range(6))))

    codes = asyncio.run(scenario())
    assert codes == [220, 220, 421, 421, 421, 421], codes
    assert running.metrics()["smtpgate_limit_refusals_total{limit=connections}"] == 4
    send(running, "after-the-crowd")  # the limit counts open connections: free again
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery")
    assert [m["Subject"] for m in running.inbox()] == ["after-the-crowd"]


def test_inbox_retention_does_not_touch_the_queue(gate: Callable[..., Gate], webhook: Receiver) -> None:
    running = gate("--deliver", hook_url(webhook), "--inbox-max-messages", "3")
    for number in range(8):
        send(running, f"kept-{number}")
    wait_until(lambda: len(webhook.delivered_ids()) == 8, 30, "eight deliveries")
    assert sorted(subject_of(body) for _, _, body in webhook.requests) == [f"kept-{n}" for n in range(8)]
    wait_until(lambda: len(running.inbox()) == 3, 30, "the inbox pruned to three")
    assert sorted(m["Subject"] for m in running.inbox()) == ["kept-5", "kept-6", "kept-7"]


def test_sighup_under_load_loses_nothing(gate: Callable[..., Gate], webhook: Receiver) -> None:
    running = gate("--deliver", hook_url(webhook), "--retry-min", "1")
    assert running.process is not None
    with Load(running.port, threads=3) as load:
        for _ in range(5):
            load.wait_acked(5, timeout=10)
            running.process.send_signal(signal.SIGHUP)
    assert running.process.poll() is None, running.stderr
    wait_until(lambda: load.acked <= {subject_of(b) for _, _, b in list(webhook.requests)}, 60, "every delivery")
    assert load.acked <= {m["Subject"] for m in running.inbox()}
