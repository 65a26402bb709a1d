"""Bounces: a delivery status notification (RFC 3464) to the sender of a dead letter.

`build_dsn` writes the report (``multipart/report; report-type=delivery-status``: a
human-readable part, a ``message/delivery-status`` part with one block per failed
recipient, and the original message's headers). `Bouncer` queues it, with the null
sender, to the original sender, for the same deliverer to take on. A message that has the
null sender itself (a bounce) never gets one, so bounces cannot loop.
"""

from __future__ import annotations

import email.utils
import os
import re
import time

from ..sinks import MessageInfo
from .base import MessageQueue, QueuedMessage

__all__ = ["Bouncer", "build_dsn"]

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_HEADERS_LIMIT = 64 * 1024


def _status(detail: str, expired: bool) -> str:
    """The recipient's status code: the reply's enhanced code, else a generic one."""
    if expired:
        return "4.4.7"  # delivery time expired
    found = _ENHANCED.search(detail)
    if found and found.group(1) == "5":
        return found.group(0)
    return "5.0.0"


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    headers = raw[: end + 2] if end >= 0 else raw[:_HEADERS_LIMIT]
    return headers[:_HEADERS_LIMIT]


def _clean(text: str) -> str:
    return " ".join(text.split())


def build_dsn(message: QueuedMessage, original: bytes, reporting_mta: str, *, now: float | None = None) -> bytes:
    """The RFC 3464 report for ``message`` (moved to the dead-letter area), whose bytes
    are ``original``: every failed recipient, and every pending one if it expired."""
    now = time.time() if now is None else now
    expired = any(r.status == "pending" for r in message.recipients)
    failed = [r for r in message.recipients if r.status == "failed" or (expired and r.status == "pending")]
    boundary = f"=_smtpgate_dsn_{os.urandom(8).hex()}"
    date = email.utils.formatdate(now, localtime=False, usegmt=True)
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{message.info.sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {date}",
        f"Message-ID: <{message.id}.dsn@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a delivery status notification (RFC 3464).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "It is attached below (its headers only).",
        "",
    ]
    lines.extend(f"<{r.address}>: {_clean(r.detail) or 'delivery failed'}" for r in failed)
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Smtpgate-Queue-ID: {message.id}",
        f"Arrival-Date: {email.utils.formatdate(message.queued, usegmt=True)}",
    ]
    for recipient in failed:
        lines += [
            "",
            f"Final-Recipient: rfc822; {recipient.address}",
            "Action: failed",
            f"Status: {_status(recipient.detail, recipient.status == 'pending')}",
        ]
        if recipient.detail:
            lines.append(f"Diagnostic-Code: smtp; {_clean(recipient.detail)}")
        if message.last_attempt is not None:
            lines.append(f"Last-Attempt-Date: {email.utils.formatdate(message.last_attempt, usegmt=True)}")
    lines += ["", f"--{boundary}", "Content-Type: text/rfc822-headers", "", ""]
    head = "\r\n".join(lines).encode("utf-8")
    return head + _header_block(original) + f"\r\n--{boundary}--\r\n".encode()


class Bouncer:
    """Queues a bounce to the sender of each dead letter (pass it as the worker's
    ``on_dead``). ``reporting_mta`` is the host name the report gives as its author."""

    def __init__(self, queue: MessageQueue, reporting_mta: str) -> None:
        self.queue = queue
        self.reporting_mta = reporting_mta

    async def __call__(self, message: QueuedMessage, reason: str) -> str | None:
        """The bounce's queue ID, or None when the message gets none (null sender, or no
        recipient failed)."""
        if not message.info.sender or not any(r.status != "delivered" for r in message.recipients):
            return None
        stored = await self.queue.get(message.id)  # where the dead letter's body is now
        report = build_dsn(message, await (stored or message).read_body(), self.reporting_mta)
        info = MessageInfo(sender="", recipients=(message.info.sender,), session_id=f"dsn-{message.id}")
        delivery = self.queue.open(info)
        try:
            await delivery.write(report)
            return await delivery.commit()
        except BaseException:
            delivery.abort()
            raise
