"""RFC 3464 bounces for dead letters: the report's parts, and a bounce relayed for real."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delivery_services import BODY, make_message

from smtpgate import ServerThread, SMTPError
from smtpgate.deliver.relay import RelayDeliverer
from smtpgate.queue.bounce import Bouncer, build_dsn
from smtpgate.queue.local import LocalQueue
from smtpgate.queue.worker import DeliveryWorker
from smtpgate.sinks import MessageInfo


def _report_parts(report: bytes) -> tuple[Any, str, str]:
    parsed = email.message_from_bytes(report, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    text, status, headers = parsed.get_payload()
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    assert headers.get_content_type() == "text/rfc822-headers"
    status_text = status.as_bytes().decode()
    return parsed, status_text, headers.as_bytes().decode()


def test_report_lists_each_failed_recipient() -> None:
    message = make_message(("ok@example.test", "gone@example.test"))
    ok, gone = message.recipients
    dead = dataclasses.replace(
        message,
        recipients=(
            dataclasses.replace(ok, status="delivered", detail="250 2.0.0 Ok"),
            dataclasses.replace(gone, status="failed", detail="550 5.1.1 <gone@example.test>: no such user"),
        ),
        last_attempt=time.time(),
        dead_reason="gone@example.test: 550 5.1.1 no such user",
    )
    parsed, status, headers = _report_parts(build_dsn(dead, BODY, "mx.example.test"))
    assert parsed["To"].addresses[0].addr_spec == "sender@example.org"
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    assert "Reporting-MTA: dns; mx.example.test" in status
    assert "Final-Recipient: rfc822; gone@example.test" in status and "Status: 5.1.1" in status
    assert "ok@example.test" not in status
    assert "Subject: delivery test" in headers and "Hello," not in headers


def test_an_expired_message_reports_4_4_7() -> None:
    message = make_message(("slow@example.test",))
    pending = dataclasses.replace(message.recipients[0], detail="451 4.3.0 try later")
    _, status, _ = _report_parts(build_dsn(dataclasses.replace(message, recipients=(pending,)), BODY, "mx.test"))
    assert "Final-Recipient: rfc822; slow@example.test" in status and "Status: 4.4.7" in status


class Smarthost:
    """Accepts everything except ``nobody@`` (550); keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def on_rcpt_to(self, address: Any, session: Any) -> None:
        if address.address.startswith("nobody@"):
            raise SMTPError(550, "No such user here", enhanced="5.1.1")

    async def on_data(self, stream: Any, session: Any) -> None:
        body = await stream.read()
        envelope = session.envelope
        self.messages.append((envelope.mail_from.address, [r.address for r in envelope.rcpt_to], body))


def test_a_dead_letter_bounces_to_its_sender_once(tmp_path: Path, start_server: Callable[..., ServerThread]) -> None:
    smarthost = Smarthost()
    server = start_server(on_rcpt_to=smarthost.on_rcpt_to, on_data=smarthost.on_data, hide_starttls=True)

    async def main() -> None:
        queue = LocalQueue(str(tmp_path))
        await queue.start()
        for sender in ("ann@example.org", ""):  # the second is itself a bounce: it gets none
            delivery = queue.open(MessageInfo(sender=sender, recipients=("nobody@example.test",)))
            await delivery.write(BODY)
            await delivery.commit()
        relay = RelayDeliverer("127.0.0.1", server.port, tls="none")
        worker = DeliveryWorker(queue, relay, retry_min=0.05, on_dead=Bouncer(queue, "mx.example.test"))
        await worker.start()
        try:
            deadline = time.monotonic() + 20
            while (len(smarthost.messages) < 1 or (await queue.stats()).queued) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()
        assert (await queue.stats()).dead == 2

    asyncio.run(main())
    [(mail_from, rcpts, report)] = smarthost.messages
    assert mail_from == "" and rcpts == ["ann@example.org"]
    _, status, headers = _report_parts(report)
    assert "Final-Recipient: rfc822; nobody@example.test" in status and "Status: 5.1.1" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user here" in status
    assert "Subject: delivery test" in headers
