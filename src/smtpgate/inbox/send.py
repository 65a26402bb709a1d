"""Mailpit's ``POST /api/v1/send``: a message described in JSON, built with `email`.

The body is Mailpit's ``SendRequest``: ``From`` (``{"Email", "Name"}``, required), ``To``,
``Cc`` and ``ReplyTo`` (lists of those), ``Bcc`` (addresses), ``Subject``, ``Text``,
``HTML``, ``Attachments`` (``{"Content": base64, "Filename", "ContentType", "ContentID"}``;
a ``ContentID`` makes it inline), ``Headers`` (``{"Name": "value"}``) and ``Tags``. The
envelope recipients are the ``To``, ``Cc`` and ``Bcc`` addresses.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any

__all__ = ["SendError", "build_message"]


class SendError(ValueError):
    """A request that cannot be made into a message; ``str()`` names the field."""


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SendError(f"{key} must be a string")
    return value


def _line(value: str, field: str) -> str:
    if "\r" in value or "\n" in value:
        raise SendError(f"{field} must not contain line breaks")
    return value


def _address(value: object, field: str) -> tuple[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("Email"), str) or "@" not in value["Email"]:
        raise SendError(f'{field} must be {{"Email": "a@b", "Name": "..."}} with an email address')
    name = value.get("Name", "")
    if not isinstance(name, str):
        raise SendError(f"{field}: Name must be a string")
    return _line(name, field), _line(value["Email"].strip(), field)


def _addresses(data: dict[str, Any], key: str) -> list[tuple[str, str]]:
    values = data.get(key) or []
    if not isinstance(values, list):
        raise SendError(f"{key} must be a list")
    return [_address(value, f"{key}[{index}]") for index, value in enumerate(values)]


def build_message(data: object) -> tuple[bytes, str, list[str]]:
    """(the message in wire format, the envelope sender, the envelope recipients)."""
    if not isinstance(data, dict):
        raise SendError("expected a JSON object")
    sender = _address(data.get("From"), "From")
    to, cc, reply_to = _addresses(data, "To"), _addresses(data, "Cc"), _addresses(data, "ReplyTo")
    bcc = data.get("Bcc") or []
    if not isinstance(bcc, list) or not all(isinstance(b, str) and "@" in b for b in bcc):
        raise SendError("Bcc must be a list of email addresses")
    recipients = [address for _, address in to + cc] + [_line(b.strip(), "Bcc") for b in bcc]
    if not recipients:
        raise SendError("give at least one recipient in To, Cc or Bcc")
    message = EmailMessage()
    message["From"] = formataddr(sender)
    if to:
        message["To"] = ", ".join(formataddr(a) for a in to)
    if cc:
        message["Cc"] = ", ".join(formataddr(a) for a in cc)
    if reply_to:
        message["Reply-To"] = ", ".join(formataddr(a) for a in reply_to)
    message["Subject"] = _line(_text(data, "Subject"), "Subject")
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="smtpgate.send")
    tags = data.get("Tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SendError("Tags must be a list of strings")
    if tags:
        message["X-Tags"] = _line(", ".join(tags), "Tags")
    headers = data.get("Headers") or {}
    if not isinstance(headers, dict):
        raise SendError('Headers must be an object {"Name": "value"}')
    for name, value in headers.items():
        if not isinstance(value, str) or not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
            raise SendError(f"Headers: invalid header {name!r}")
        message[name] = _line(value, f"Headers[{name}]")
    message.set_content(_text(data, "Text") or ("" if data.get("HTML") else "\n"))
    if data.get("HTML"):
        message.add_alternative(_text(data, "HTML"), subtype="html")
    for index, attachment in enumerate(data.get("Attachments") or []):
        _attach(message, attachment, f"Attachments[{index}]")
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), sender[1], recipients


def _attach(message: EmailMessage, attachment: object, field: str) -> None:
    if not isinstance(attachment, dict):
        raise SendError(f"{field} must be an object")
    filename = _line(_text(attachment, "Filename"), f"{field}.Filename")
    if not filename:
        raise SendError(f"{field}.Filename is required")
    try:
        content = base64.b64decode(_text(attachment, "Content"), validate=True)
    except (binascii.Error, ValueError):
        raise SendError(f"{field}.Content must be base64") from None
    content_type = _text(attachment, "ContentType") or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    maintype, _, subtype = content_type.partition("/")
    if not maintype or not subtype:
        raise SendError(f"{field}.ContentType must be like type/subtype")
    content_id = _line(_text(attachment, "ContentID"), f"{field}.ContentID").strip().strip("<>")
    if content_id:
        message.add_attachment(
            content, maintype, subtype, filename=filename, disposition="inline", cid=f"<{content_id}>"
        )
    else:
        message.add_attachment(content, maintype, subtype, filename=filename)
