"""The JSON form of a message for webhooks: envelope, headers, text, HTML, attachments.

Parsing uses the standard library's `email` package with its modern policy; a malformed
part never stops the payload: what cannot be decoded is given with replacement
characters.
"""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from ..queue.base import QueuedMessage

__all__ = ["message_json"]


def _text_of(part: Message) -> str:
    try:
        if isinstance(part, EmailMessage):
            content = part.get_content()
            if isinstance(content, str):
                return content
    except (LookupError, ValueError, AssertionError, KeyError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _header(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError, AttributeError):
        raw = message.get_all(name, failobj=[])
        value = raw[0] if raw else None
    return None if value is None else str(value)


def _addresses(message: Message, name: str) -> list[str]:
    try:
        values = message.get_all(name, failobj=[])
        out: list[str] = []
        for value in values:
            addresses = getattr(value, "addresses", None)
            if addresses is None:
                out.append(str(value))
            else:
                out.extend(str(address) for address in addresses)
        return out
    except (ValueError, IndexError, AttributeError):
        return []


def _headers(message: Message) -> list[list[str]]:
    out: list[list[str]] = []
    for name, value in message.raw_items():
        try:
            text = str(value)
        except (ValueError, IndexError, AttributeError):  # pragma: no cover - defensive
            text = str(value.encode() if hasattr(value, "encode") else value)
        out.append([name, text])
    return out


def _clean(value: Any) -> Any:
    """Strings without the surrogates `email` uses for undecodable bytes (they become
    U+FFFD), so the payload is valid UTF-8 JSON; lists and dicts cleaned throughout."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


def message_json(message: QueuedMessage, raw: bytes) -> dict[str, Any]:
    """The webhook's JSON payload for ``message`` whose bytes are ``raw``."""
    return _clean(_message_json(message, raw))  # type: ignore[no-any-return]


def _message_json(message: QueuedMessage, raw: bytes) -> dict[str, Any]:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    text_part = html_part = None
    if isinstance(parsed, EmailMessage):
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
    attachments = []
    for part in parsed.walk():
        if part.is_multipart() or part is text_part or part is html_part:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        attachments.append(
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "disposition": part.get_content_disposition(),
                "content_id": _header(part, "Content-ID"),
                "size": len(data),
                "content": base64.b64encode(data).decode("ascii"),
            }
        )
    info = message.info
    return {
        "id": message.id,
        "envelope": {
            "mail_from": info.sender,
            "rcpt_to": list(message.pending),
            "client_address": info.client_address,
            "client_name": info.client_name,
            "user": info.user,
            "secure": info.secure,
            "session_id": info.session_id,
            "received": info.received,
        },
        "headers": _headers(parsed),
        "subject": _header(parsed, "Subject"),
        "from": _addresses(parsed, "From"),
        "to": _addresses(parsed, "To"),
        "cc": _addresses(parsed, "Cc"),
        "reply_to": _addresses(parsed, "Reply-To"),
        "message_id": _header(parsed, "Message-ID"),
        "date": _header(parsed, "Date"),
        "text": None if text_part is None else _text_of(text_part),
        "html": None if html_part is None else _text_of(html_part),
        "attachments": attachments,
        "size": len(raw),
    }
