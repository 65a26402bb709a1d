"""Relay through a smarthost over SMTP: STARTTLS (verified) or TLS from the start, AUTH,
the envelope pipelined, one outcome per recipient.

A recipient the smarthost refuses with 5xx fails for good (and only that recipient); a
4xx is retried for that recipient alone; the others count as delivered once the
smarthost accepted the data.
"""

from __future__ import annotations

import socket
import ssl
from typing import Literal

from ..queue.base import DeliveryResult, QueuedMessage, Retry
from .client import MailClient, MailClientError, hand_over

__all__ = ["RelayDeliverer", "TLSMode"]

TLSMode = Literal["starttls", "implicit", "opportunistic", "none"]
"""``starttls`` (default: required, the certificate verified), ``implicit`` (TLS from the
first byte, ``smtps://``), ``opportunistic`` (STARTTLS when offered) or ``none``."""


class RelayDeliverer:
    """Delivers queued messages to a smarthost.

    ``tls_context`` defaults to `ssl.create_default_context` (system CAs, host name
    checked); pass one built with ``cafile=`` for a private CA. ``username`` and
    ``password`` turn on AUTH (after TLS unless ``tls="none"``)."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        tls: TLSMode = "starttls",
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        local_name: str | None = None,
    ) -> None:
        if tls not in ("starttls", "implicit", "opportunistic", "none"):
            raise ValueError(f"invalid TLS mode {tls!r}")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_context = tls_context or ssl.create_default_context()
        self.username = username
        self.password = password
        self.timeout = timeout
        self.local_name = local_name or socket.getfqdn()

    def describe(self) -> str:
        """``smtp://HOST:PORT`` or ``smtps://HOST:PORT``."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    async def __call__(self, message: QueuedMessage) -> DeliveryResult:
        implicit = self.tls_context if self.tls == "implicit" else None
        try:
            client = await MailClient.connect(self.host, self.port, tls=implicit, timeout=self.timeout)
        except MailClientError as error:
            return Retry(str(error))
        return await hand_over(client, self._prepare, message)

    async def _prepare(self, client: MailClient) -> None:
        """EHLO, STARTTLS and EHLO again, AUTH: as configured."""
        await client.hello(self.local_name)
        offered = "STARTTLS" in client.extensions
        if self.tls == "starttls" and not offered:
            raise MailClientError("the smarthost does not offer STARTTLS (required)")
        if self.tls in ("starttls", "opportunistic") and offered:
            await client.starttls(self.tls_context, self.host)
            await client.hello(self.local_name)
        if self.username is not None and self.password is not None:
            await client.auth(self.username, self.password)
