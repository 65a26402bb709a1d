"""Deliverers: where the delivery worker hands queued messages on.

* `webhook.WebhookDeliverer`: HTTP POST, signed per Standard Webhooks (its own small
  HTTP/1.1 client: no extra package);
* `relay.RelayDeliverer`: SMTP to a smarthost;
* `lmtp.LMTPDeliverer`: LMTP to a mailbox server;
* `sink.SinkDeliverer`: into any sink;
* `function.FunctionDeliverer`: a plain Python function.

`parse_deliverer` builds one from a URL, as ``smtpgate --deliver URL`` does.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from ..queue.base import Deliverer

__all__ = ["parse_deliverer", "DELIVER_FORMS"]

DELIVER_FORMS = "http(s)://..., smtp://HOST:PORT, smtps://HOST:PORT, lmtp://HOST:PORT or lmtp:/PATH"


def parse_deliverer(
    url: str,
    *,
    webhook_secret: str | None = None,
    webhook_format: str = "raw",
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    concurrency: int = 10,
) -> Deliverer:
    """A deliverer for ``url``; raises ``ValueError`` (one line) when it is wrong.

    ``smtp://`` requires STARTTLS unless the URL ends in ``?starttls=opportunistic`` or
    ``?starttls=no``; ``tls_context`` (default: system CAs, verified) serves HTTPS,
    STARTTLS and ``smtps://``; ``username``/``password`` turn on AUTH for the relay."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if scheme in ("http", "https"):
        from .webhook import WebhookDeliverer

        if webhook_format not in ("raw", "json"):
            raise ValueError(f"invalid webhook format {webhook_format!r}: expected raw or json")
        return WebhookDeliverer(
            url.strip(),
            secret=webhook_secret,
            format="json" if webhook_format == "json" else "raw",
            tls_context=tls_context,
            concurrency=concurrency,
            **extra,
        )
    if scheme in ("smtp", "smtps", "lmtp") and parts.netloc:
        try:
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise ValueError(f"invalid delivery URL {url!r}: {error}") from None
        if not host or port is None:
            raise ValueError(f"invalid delivery URL {url!r}: expected {scheme}://HOST:PORT")
        if scheme == "lmtp":
            from .lmtp import LMTPDeliverer

            return LMTPDeliverer(host, port, **extra)
        from .relay import RelayDeliverer, TLSMode

        tls: TLSMode = "implicit" if scheme == "smtps" else "starttls"
        query = parts.query.lower()
        if scheme == "smtp" and query:
            choices: dict[str, TLSMode] = {
                "starttls=opportunistic": "opportunistic",
                "starttls=no": "none",
                "starttls=yes": "starttls",
            }
            if query not in choices:
                raise ValueError(f"invalid delivery URL {url!r}: expected ?starttls=yes, opportunistic or no")
            tls = choices[query]
        if parts.username is not None and username is None:
            username, password = unquote(parts.username), unquote(parts.password or "")
        return RelayDeliverer(
            host, port, tls=tls, tls_context=tls_context, username=username, password=password, **extra
        )
    if scheme == "lmtp" and parts.path:
        from .lmtp import LMTPDeliverer

        return LMTPDeliverer(path=parts.path, **extra)
    raise ValueError(f"invalid delivery URL {url!r}: expected {DELIVER_FORMS}")
