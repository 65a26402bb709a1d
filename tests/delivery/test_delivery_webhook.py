"""Webhooks to a real aiohttp receiver on loopback: failures then success, signatures
checked with the ``standardwebhooks`` package and with smtpgate's own `verify`."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
import trustme
from aiohttp import web
from delivery_services import make_message
from webhook_receiver import Receiver

from smtpgate.deliver.webhook import WebhookDeliverer, WebhookVerificationError, sign, verify
from smtpgate.queue import Delivered, Retry
from smtpgate.queue.local import LocalQueue
from smtpgate.queue.worker import DeliveryWorker
from smtpgate.sinks import MessageInfo

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _queue_one(queue: LocalQueue, body: bytes, recipients: tuple[str, ...] = ("app@example.test",)) -> str:
    delivery = queue.open(MessageInfo(sender="sender@example.org", recipients=recipients))
    await delivery.write(body)
    return await delivery.commit()


async def _deliver_all(queue: LocalQueue, hook: WebhookDeliverer, receiver: Receiver) -> None:
    """Run a worker (quick retries, no jitter) until the queue is empty (30 s at most),
    then stop it, the deliverer and the receiver."""
    worker = DeliveryWorker(queue, hook, retry_min=0.05, jitter=0.0)
    await worker.start()
    try:
        deadline = time.monotonic() + 30
        while (await queue.stats()).queued and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await hook.close()
        await receiver.stop()


BODY = b"From: sender@example.org\r\nTo: app@example.test\r\nSubject: webhook\r\n\r\nHello\r\n"


def test_failures_then_success_with_the_same_id(tmp_path: Path) -> None:
    async def main() -> None:
        receiver = await Receiver(["500", "timeout", "reset", "429:1", "200"]).start()
        queue = LocalQueue(str(tmp_path / "queue"))
        await queue.start()
        message_id = await _queue_one(queue, BODY)
        hook = WebhookDeliverer(f"http://127.0.0.1:{receiver.port}/hook", secret=SECRET, timeout=1.0)
        await _deliver_all(queue, hook, receiver)
        assert (await queue.stats()).queued == 0
        assert (await queue.stats()).dead == 0
        assert len(receiver.requests) == 5
        assert {headers["webhook-id"] for _, headers, _ in receiver.requests} == {message_id}
        # 429 with Retry-After: 1 -> the next attempt about a second later, not 0.4s
        assert receiver.requests[4][0] - receiver.requests[3][0] >= 0.9
        _, headers, body = receiver.requests[-1]
        assert body.startswith(b"Return-Path: <sender@example.org>\r\nX-Original-To: app@example.test\r\n")
        assert body.endswith(BODY)
        assert headers["Content-Type"] == "message/rfc822"
        assert headers["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in headers  # streamed, sized
        assert headers["Smtpgate-Mail-From"] == "sender@example.org"
        assert headers["Smtpgate-Rcpt-To"] == "app@example.test"
        # the published Standard Webhooks library signs the same (its verify() also
        # parses the body as JSON, so it is used whole on the JSON payload below)...
        when = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=timezone.utc)
        library = standardwebhooks.Webhook(SECRET).sign(message_id, when, body.decode())
        assert headers["webhook-signature"] == library
        # ...and so does smtpgate's own check, which refuses a changed body
        verify(SECRET, headers, body)
        with pytest.raises(WebhookVerificationError):
            verify(SECRET, headers, body + b"x")
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SECRET).verify(body + b"x", headers)

    asyncio.run(main())


@pytest.mark.parametrize("status", [406, 410, 413])
def test_permanent_statuses_dead_letter_at_once(tmp_path: Path, status: int) -> None:
    async def main() -> None:
        receiver = await Receiver([str(status)]).start()
        queue = LocalQueue(str(tmp_path / "queue"))
        await queue.start()
        message_id = await _queue_one(queue, BODY)
        hook = WebhookDeliverer(f"http://127.0.0.1:{receiver.port}/hook")
        worker = DeliveryWorker(queue, hook, retry_min=0.05)
        await worker.start()
        try:
            deadline = time.monotonic() + 20
            while not (await queue.stats()).dead and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()
            await hook.close()
            await receiver.stop()
        dead = await queue.messages(dead=True)
        assert [m.id for m in dead] == [message_id]
        assert f"HTTP {status}" in dead[0].dead_reason
        assert len(receiver.requests) == 1
        assert "webhook-signature" not in receiver.requests[0][1]  # no secret, no signature

    asyncio.run(main())


MULTIPART = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: Bob <bob@example.test>, carol@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b'Content-Type: multipart/alternative; boundary="b2"\r\n'
    b"\r\n"
    b"--b2\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"plain text\r\n"
    b"--b2\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>html</p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)


def test_json_payload(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, str], bytes, Any]:
        receiver = await Receiver(["204"]).start()
        hook = WebhookDeliverer(f"http://127.0.0.1:{receiver.port}/hook", secret=SECRET, format="json")
        message = make_message(("bob@example.test", "carol@example.test"), body=MULTIPART)
        try:
            outcome = await hook(message)
        finally:
            await hook.close()
            await receiver.stop()
        assert isinstance(outcome, Delivered)
        _, headers, body = receiver.requests[0]
        return headers, body, message

    headers, body, message = asyncio.run(main())
    standardwebhooks.Webhook(SECRET).verify(body, headers)
    assert headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["id"] == message.id == headers["webhook-id"]
    assert data["envelope"]["mail_from"] == "sender@example.org"
    assert data["envelope"]["rcpt_to"] == ["bob@example.test", "carol@example.test"]
    assert data["subject"] == "café"
    assert data["from"] == ["Ann <ann@example.org>"]
    assert data["to"] == ["Bob <bob@example.test>", "carol@example.test"]
    assert data["message_id"] == "<m1@example.org>"
    assert data["text"].strip() == "plain text"
    assert data["html"].strip() == "<p>html</p>"
    [attachment] = data["attachments"]
    assert attachment["filename"] == "data.bin"
    assert attachment["content_type"] == "application/octet-stream"
    assert base64.b64decode(attachment["content"]) == b"\x00\x01\x02\x03"
    assert ["Subject", "=?utf-8?q?caf=C3=A9?="] in data["headers"] or ["Subject", "café"] in data["headers"]


def test_https_verified_by_default(tmp_path: Path, test_ca: trustme.CA) -> None:
    leaf = test_ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    client_context = ssl.create_default_context()
    test_ca.configure_trust(client_context)

    async def main() -> tuple[object, object]:
        receiver = await Receiver(["200"]).start(server_context)
        url = f"https://127.0.0.1:{receiver.port}/hook"
        untrusting = WebhookDeliverer(url)
        trusting = WebhookDeliverer(url, tls_context=client_context)
        try:
            return await untrusting(make_message()), await trusting(make_message())
        finally:
            await untrusting.close()
            await trusting.close()
            await receiver.stop()

    refused, accepted = asyncio.run(main())
    assert isinstance(refused, Retry)
    assert "certificate" in refused.reason.lower()
    assert isinstance(accepted, Delivered)


def test_sign_matches_the_reference_library() -> None:
    body = b'{"test": 2432232314}'
    when = datetime.fromtimestamp(1614265330, tz=timezone.utc)
    expected = standardwebhooks.Webhook(SECRET).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", when, body.decode())
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_bad_configuration_fails_early() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookDeliverer("https://example.test/hook", secret="whsec_not base64!")
    with pytest.raises(ValueError, match="invalid webhook URL"):
        WebhookDeliverer("ftp://example.test/")
    with pytest.raises(ValueError, match="format"):
        WebhookDeliverer("https://example.test/", format="xml")  # type: ignore[arg-type]


def test_connection_refused_is_temporary() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused

        async def main() -> object:
            hook = WebhookDeliverer(f"http://127.0.0.1:{port}/hook")
            try:
                return await hook(make_message())
            finally:
                await hook.close()

        outcome = asyncio.run(main())
    assert isinstance(outcome, Retry)
    assert "connect" in outcome.reason.lower()


@pytest.mark.parametrize("size", [256 * 1024 - 200, 256 * 1024 + 1, 3 * 1024 * 1024 + 7])
def test_small_bodies_go_whole_large_ones_stream_signed_and_sized_alike(tmp_path: Path, size: int) -> None:
    """Up to 256 KiB the body is read at once; beyond, it is streamed from the queue file
    in two passes (sign, send): the same bytes, length and signature either way."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_____\r\n"
    body = b"Subject: sized\r\n\r\n" + line * (size // len(line))
    body += b"x" * (size - len(body))

    async def main() -> tuple[str, list[Any]]:
        receiver = await Receiver(["200"]).start()
        queue = LocalQueue(str(tmp_path / "queue"))
        await queue.start()
        message_id = await _queue_one(queue, body)
        hook = WebhookDeliverer(f"http://127.0.0.1:{receiver.port}/hook", secret=SECRET)
        await _deliver_all(queue, hook, receiver)
        return message_id, receiver.requests

    message_id, requests = asyncio.run(main())
    assert len(requests) == 1
    _, headers, received = requests[0]
    assert received.endswith(body) and len(received) == len(body) + len(
        b"Return-Path: <sender@example.org>\r\nX-Original-To: app@example.test\r\n"
    )
    assert headers["Content-Length"] == str(len(received)) and "Transfer-Encoding" not in headers
    assert headers["webhook-id"] == message_id
    when = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=timezone.utc)
    assert headers["webhook-signature"] == standardwebhooks.Webhook(SECRET).sign(message_id, when, received.decode())
    verify(SECRET, headers, received)
