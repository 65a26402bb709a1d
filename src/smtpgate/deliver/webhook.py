"""Deliver queued messages to an HTTP endpoint, signed per Standard Webhooks.

Two payloads:

* ``raw`` (default): the message as ``message/rfc822``, with ``Return-Path`` and one
  ``X-Original-To`` per recipient prepended (what Postfix's ``pipe`` adds, and where
  Rails' Action Mailbox looks for envelope recipients) and the envelope in the HTTP
  headers ``Smtpgate-Mail-From`` and ``Smtpgate-Rcpt-To``. Credentials in the URL
  (``https://actionmailbox:PASSWORD@app.example/rails/action_mailbox/relay/inbound_emails``)
  become HTTP Basic authentication.
* ``json``: envelope, headers, text, HTML and attachments (base64), see
  `smtpgate.deliver.parsed.message_json`.

Every request carries ``webhook-id`` (the message's stable queue ID: the same on every
retry, so receivers can drop duplicates), ``webhook-timestamp`` and, with a secret,
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``).

Replies: 2xx delivered; `PERMANENT_STATUSES` failed for good; anything else (5xx, 408,
429, other 4xx, 3xx), a timeout or a connection error is retried, after ``Retry-After``
when the server sends it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import quote, urlsplit

from ..queue.base import Delivered, DeliveryResult, Failed, QueuedMessage, Retry
from .http1 import Body, CertificateError, HTTPClient, HTTPError
from .parsed import message_json

__all__ = ["WebhookDeliverer", "PERMANENT_STATUSES", "sign", "verify", "WebhookFormat", "WebhookVerificationError"]

WebhookFormat = Literal["raw", "json"]

PERMANENT_STATUSES = frozenset({400, 406, 410, 413, 415, 422})
"""HTTP statuses that end delivery at once: bad request, not acceptable (Mailgun's "do
not retry"), gone, too large, unsupported media type, unprocessable. Every other
non-2xx status is retried."""

_REASON_BODY = 300  # bytes of a refusal's body in the reason
_IN_MEMORY = 256 * 1024  # bodies up to this size are read whole and sent in one piece


class WebhookVerificationError(Exception):
    """A webhook's signature or timestamp does not check out."""


def _secret_key(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_") :]
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("the webhook secret must be 'whsec_' followed by base64") from None


def _signer(secret: str, message_id: str, timestamp: int) -> hmac.HMAC:
    """The HMAC-SHA256 keyed with the secret (``whsec_`` + base64), fed ``{id}.{timestamp}.``:
    the body follows, in one piece or several."""
    return hmac.new(_secret_key(secret), f"{message_id}.{timestamp}.".encode(), hashlib.sha256)


def _signature(mac: hmac.HMAC) -> str:
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of
    ``{id}.{timestamp}.{body}`` keyed with the secret (``whsec_`` + base64)."""
    mac = _signer(secret, message_id, timestamp)
    mac.update(body)
    return _signature(mac)


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float = 300.0) -> None:
    """Check a received webhook (case-insensitive ``headers``); raises
    `WebhookVerificationError`. For receivers written in Python without the
    ``standardwebhooks`` package."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    if abs(time.time() - timestamp) > tolerance:
        raise WebhookVerificationError("the timestamp is too old or too new")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("no matching signature")


def _header_value(text: str) -> str:
    """HTTP header values are ASCII here: non-ASCII (SMTPUTF8) addresses are
    percent-encoded (UTF-8)."""
    return text if text.isascii() else quote(text, safe="@!#$&'*+-/=?^_`{|}~.")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class WebhookDeliverer:
    """POSTs each queued message to ``url``.

    ``secret`` (``whsec_…``) signs the requests; ``tls_context`` replaces the default
    (system CAs, verified); ``timeout`` bounds a whole request; ``concurrency`` bounds the
    connections kept to the endpoint. Call `close` when done."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        format: WebhookFormat = "raw",
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        concurrency: int = 10,
    ) -> None:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"invalid webhook URL {url!r}: expected http(s)://HOST/PATH")
        if format not in ("raw", "json"):
            raise ValueError(f"invalid webhook format {format!r}: expected raw or json")
        if secret is not None:
            _secret_key(secret)  # fail now, not at the first message
        self.url = url
        self.secret = secret
        self.format = format
        self.timeout = timeout
        self.tls_context = tls_context
        self.concurrency = concurrency
        self._http: HTTPClient | None = self._new_client()  # checks the URL now, not at the first message

    def describe(self) -> str:
        """The URL without its credentials."""
        parsed = urlsplit(self.url)
        return parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl()

    def _new_client(self) -> HTTPClient:
        return HTTPClient(self.url, tls=self.tls_context, limit=self.concurrency, timeout=self.timeout)

    def _client(self) -> HTTPClient:
        if self._http is None:
            self._http = self._new_client()
        return self._http

    async def close(self) -> None:
        """Close the connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _headers(self, message: QueuedMessage) -> dict[str, str]:
        info = message.info
        headers = {
            "webhook-id": message.id,
            "Smtpgate-Mail-From": _header_value(info.sender),
            "Smtpgate-Rcpt-To": ", ".join(_header_value(r) for r in message.pending),
        }
        if info.client_address:
            headers["Smtpgate-Client-Address"] = info.client_address
        return headers

    @staticmethod
    def _envelope(message: QueuedMessage) -> bytes:
        """``Return-Path`` and one ``X-Original-To`` per recipient, for the raw format."""
        lines = [f"Return-Path: <{message.info.sender}>"]
        lines.extend(f"X-Original-To: {address}" for address in message.pending)
        return "".join(line + "\r\n" for line in lines).encode("utf-8")

    async def _raw(self, message: QueuedMessage, headers: dict[str, str], timestamp: int) -> tuple[Body, int]:
        """The raw body and its length: read whole when small, else as a stream (never
        whole in memory): a first pass over the file signs it and counts its bytes, the
        request sends it in a second."""
        prefix = self._envelope(message)
        headers["Content-Type"] = "message/rfc822"
        if message.size <= _IN_MEMORY:
            data = prefix + await message.read_body()
            if self.secret is not None:
                headers["webhook-signature"] = sign(self.secret, message.id, timestamp, data)
            return data, len(data)
        mac = None
        if self.secret is not None:
            mac = _signer(self.secret, message.id, timestamp)
            mac.update(prefix)
        length = len(prefix)
        async for chunk in message.iter_body():
            length += len(chunk)
            if mac is not None:
                mac.update(chunk)
        if mac is not None:
            headers["webhook-signature"] = _signature(mac)

        async def stream() -> AsyncIterator[bytes]:
            yield prefix
            async for chunk in message.iter_body():
                yield chunk

        return stream, length

    async def __call__(self, message: QueuedMessage) -> DeliveryResult:
        timestamp = int(time.time())
        headers = self._headers(message)
        headers["webhook-timestamp"] = str(timestamp)
        data: Body
        if self.format == "json":
            raw = await message.read_body()
            data = json.dumps(message_json(message, raw), ensure_ascii=False).encode("utf-8")
            length = len(data)
            headers["Content-Type"] = "application/json"
            if self.secret is not None:
                headers["webhook-signature"] = sign(self.secret, message.id, timestamp, data)
        else:
            data, length = await self._raw(message, headers, timestamp)
        try:
            response = await self._client().post(headers, data, length, keep=_REASON_BODY)
        except (asyncio.TimeoutError, TimeoutError):
            return Retry(f"no response within {self.timeout:g} seconds")
        except CertificateError as error:
            return Retry(f"TLS certificate not accepted: {error}")
        except HTTPError as error:
            return Retry(str(error))
        status = response.status
        if 200 <= status < 300:
            return Delivered(f"HTTP {status}")
        text = response.body.decode("utf-8", "replace")
        reason = f"HTTP {status} {response.reason}".rstrip()
        if text.strip():
            reason += ": " + " ".join(text.split())
        if status in PERMANENT_STATUSES:
            return Failed(reason)
        return Retry(reason, _retry_after(response.headers.get("retry-after")))
